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
test length generalization; seqlab trains at one T (sweep seq_len to compare), or, with
``train_min_len=m``, on lengths L drawn uniformly from m..T per training example (Grazzi et
al. 2025 train on 3..40): the model is causal, so its output at step L - 1 of a T-bit string
is its answer to the first L bits, and the one target at step L - 1 (the batch's loss mask)
is the parity of a string of length L. Held-out sets (``eval_batch``, ``eval_lengths``) keep
the one answer at the last step, the whole string's parity. Baseline ln 2 (every L >= 2).

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


def variable_length(bits: torch.Tensor, lengths: torch.Tensor | None) -> Batch:
    """Every step can answer; example i answers at step lengths[i] - 1 (the parity of its first
    lengths[i] bits) and nowhere else; ``lengths`` None: at the last step (the held-out form)."""
    B, T = bits.shape
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=bits.device)
    steps = torch.arange(T, device=bits.device)
    mask = steps.unsqueeze(0) == (lengths - 1).unsqueeze(1)  # (B, T): one True per example
    lags = torch.where(mask, steps.unsqueeze(0).expand(B, T), torch.full_like(mask, -1, dtype=torch.long))
    return Batch(F.one_hot(bits, 2).float(), bits.cumsum(1) % 2, mask=mask, lags=lags)


@dataclass(frozen=True)
class Parity(Task):
    seq_len: int  # T bits
    every_step: bool = False  # false: parity at the last step only; true: running parity at every step
    train_min_len: int | None = None  # training lengths drawn from train_min_len..T per example (None: T only)

    name = "parity"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 2)
        check(isinstance(self.every_step, bool), "task.every_step", self.every_step, "must be true or false")
        if self.train_min_len is not None:
            check(isinstance(self.train_min_len, int) and not isinstance(self.train_min_len, bool)
                  and 2 <= self.train_min_len <= self.seq_len, "task.train_min_len", self.train_min_len,
                  f"must be null or an integer in 2..seq_len ({self.seq_len})")
            check(not self.every_step, "task.train_min_len", self.train_min_len,
                  "needs task.every_step=false (every_step already trains every prefix length at once)")

    input_size = property(lambda self: 2)
    output_size = property(lambda self: 2)
    total_len = property(lambda self: self.seq_len)
    lag = property(lambda self: self.seq_len - 1)

    @property
    def answer_steps(self) -> torch.Tensor:
        return torch.arange(self.seq_len) if self.train_min_len else torch.tensor([self.seq_len - 1])

    @property
    def loss_steps(self) -> torch.Tensor:
        return torch.arange(self.seq_len) if self.every_step or self.train_min_len else torch.tensor([self.seq_len - 1])

    @property
    def baseline(self) -> float:
        return (self.seq_len - 1) / self.seq_len * math.log(2) if self.every_step else math.log(2)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        if self.train_min_len:
            bits = torch.randint(0, 2, (batch_size, self.seq_len), generator=generator, device=device)
            lengths = torch.randint(self.train_min_len, self.seq_len + 1, (batch_size,), generator=generator,
                                    device=device)
            return variable_length(bits, lengths)
        return make_batch(batch_size, self.seq_len, generator, self.every_step, device)

    def eval_batch(self, size: int, generator: torch.Generator, device="cpu") -> Batch:
        """Held out: the whole string's parity at the last step, whatever the training lengths."""
        if self.train_min_len:
            return variable_length(torch.randint(0, 2, (size, self.seq_len), generator=generator, device=device), None)
        return self.make_batch(size, generator, device)
