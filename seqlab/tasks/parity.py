"""Parity, as in Deletang et al. (2023), "Neural Networks and the Chomsky Hierarchy"
(ICLR 2023; its regular-language task "parity check") and the formal-language set
of xLSTM (Beck et al. 2024): a string of T bits; the target is the parity of its
number of 1s.

Input: T bits, one-hot (2 channels). Target: parity of the whole string at the
last step only (``every_step=false``, the reference's setting) or, with
``every_step=true``, the running parity b_0 xor ... xor b_t at every step t.
Cross-entropy at those steps. Solved: accuracy >= 0.99 on the last step (the
answer that needs all T bits; in every-step mode the loss still covers all steps).
Baseline: the parity of any prefix longer than one bit is uniform and independent
of the current bit, so a memoryless model can do no better than chance there:
ln 2 at the last step; every-step mode: ((T - 1)/T) ln 2, since step 0's parity is
its own bit (loss 0 for a memoryless predictor).
Lag: T - 1 (the answer needs the first bit). Both references vary T per batch to
test length generalization; seqlab trains at one T (sweep seq_len to compare).

Worked example, T = 5, bits 1 0 1 1 0, asserted in tests/test_new_tasks.py:

    t             0  1  2  3  4
    input         1  0  1  1  0
    target                    1     (every_step: 1 1 0 1 1)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check, check_int
from .base import Batch, Task


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, every_step: bool = False,
               device="cpu") -> Batch:
    """Parity batch: inputs (B, T, 2) one-hot, targets (B, 1) or (B, T) long."""
    return from_bits(torch.randint(0, 2, (batch_size, seq_len), generator=generator, device=device), every_step)


def from_bits(bits: torch.Tensor, every_step: bool = False) -> Batch:
    """Build the batch from the bits (B, T) in {0, 1}."""
    running = bits.cumsum(1) % 2  # (B, T) parity of each prefix
    targets = running if every_step else running[:, -1:]
    return Batch(F.one_hot(bits, 2).float(), targets.clone())


@dataclass(frozen=True)
class Parity(Task):
    seq_len: int  # T bits
    every_step: bool = False  # false: parity at the last step only; true: running parity at every step

    name = "parity"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 2)
        check(isinstance(self.every_step, bool), "task.every_step", self.every_step, "must be true or false")

    input_size = property(lambda self: 2)
    output_size = property(lambda self: 2)
    total_len = property(lambda self: self.seq_len)
    answer_steps = property(lambda self: torch.tensor([self.seq_len - 1]))
    lag = property(lambda self: self.seq_len - 1)

    @property
    def loss_steps(self) -> torch.Tensor:
        return torch.arange(self.seq_len) if self.every_step else torch.tensor([self.seq_len - 1])

    @property
    def baseline(self) -> float:
        return (self.seq_len - 1) / self.seq_len * math.log(2) if self.every_step else math.log(2)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, self.every_step, device)
