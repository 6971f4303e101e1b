"""Flip-flop language, Liu, Ash, Goel, Krishnamurthy & Zhang (2023), "Exposing
Attention Glitches with Flip-Flop Language Modeling" (NeurIPS 2023), Definition 1
(the flip-flop language FFL(T, p)); checked against a public generator of it.

A string of T tokens (T even) is T/2 (instruction, bit) pairs over the alphabet
{w, r, i, 0, 1}: the first instruction is always w (write), the last always r
(read), the others i.i.d. w / r / i with probabilities (p_w, p_r, p_i); here
p_w = p_r = (1 - p_i)/2 as in the paper's FFL(p_i) family (its canonical
FFL(0.8): T = 512, p_i = 0.8; "sparse" p_i = 0.98 and "dense" p_i = 0.1).
The bit after w or i is uniform; the bit after r is the bit of the most recent w.
Language modelling of this string has exactly one kind of deterministic token,
the bit after each r, and that is what the paper scores: here the model reads
the tokens (one-hot, 5 channels: w r i 0 1) and at each r step outputs the bit
that comes next, cross-entropy at the r steps only (a per-example loss mask over
the instruction steps 2, 4, ..., T-2; the random bits carry no loss).
Baseline ln 2 per read (the bit of the last write is uniform and, without memory,
nothing at the read step predicts it). Solved: accuracy >= 0.99 on the reads (the
paper's subject is the rarer errors left after that: read its error rate off
eval/accuracy).

Lag of a read at step t: t minus the step of the last w. p_i sets its distribution
(pairs since the last write are roughly geometric with mean 1/p_w, capped by t);
summary.json records it and ``lag`` is its median.

Worked example, T = 10, the string w1 i0 r1 w0 r0, asserted in tests/test_new_tasks.py:

    t          0  1  2  3  4  5  6  7  8  9
    input      w  1  i  0  r  1  w  0  r  0
    loss step        .     x     .     x          mask at t = 2, 4, 6, 8: 0 1 0 1
    target                 1           0          lags 4 - 0 = 4, 8 - 6 = 2
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from ..checks import check, check_int, is_number
from .base import Batch, Task, median_lag

W, R, I, BIT0, N_TOKENS = 0, 1, 2, 3, 5  # tokens w r i 0 1 -> one-hot channels 0..4


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, p_ignore: float = 0.8,
               device="cpu") -> Batch:
    """Flip-flop batch: inputs (B, T, 5) one-hot, targets (B, T/2 - 1) long at the instruction steps 2, 4, ..."""
    B, P = batch_size, seq_len // 2
    p_write = (1 - p_ignore) / 2
    probs = torch.tensor([p_write, p_write, p_ignore], dtype=torch.float64, device=device)
    middle = torch.multinomial(probs.expand(B * max(P - 2, 0), 3), 1, replacement=True,
                               generator=generator).view(B, max(P - 2, 0))
    instructions = torch.cat([torch.full((B, 1), W, device=device), middle,
                              torch.full((B, 1), R, device=device)], 1)  # (B, P)
    bits = torch.randint(0, 2, (B, P), generator=generator, device=device)  # the r bits are overwritten
    return from_instructions(instructions, bits)


def from_instructions(instructions: torch.Tensor, bits: torch.Tensor) -> Batch:
    """Build the batch from the instructions (B, P) in {W, R, I} (first W) and the bits (B, P);
    the bit of every read is replaced by the bit of the last write."""
    B, P = instructions.shape
    j = torch.arange(P, device=instructions.device)
    last_write = torch.where(instructions == W, j, -1).cummax(1).values  # (B, P)
    written = bits.gather(1, last_write.clamp(min=0))  # (B, P): the bit of the last write at or before j
    is_read = instructions == R
    bits = torch.where(is_read, written, bits)
    tokens = torch.stack([instructions, BIT0 + bits], 2).view(B, 2 * P)  # (B, T)
    lags = torch.where(is_read, 2 * (j - last_write), -1)[:, 1:]  # (B, P-1) at instruction steps 2, 4, ...
    return Batch(F.one_hot(tokens, N_TOKENS).float(), written[:, 1:].clone(), mask=is_read[:, 1:].clone(),
                 lags=lags)


@dataclass(frozen=True)
class FlipFlop(Task):
    seq_len: int  # T: tokens (even): T/2 instruction-bit pairs (the paper: T = 512)
    p_ignore: float = 0.8  # p_i; p_w = p_r = (1 - p_i)/2 (the paper's FFL(0.8))

    name = "flip_flop"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 4)
        check(self.seq_len % 2 == 0, "seq_len", self.seq_len, "must be even for task=flip_flop "
              "(instruction-bit pairs)")
        check(is_number(self.p_ignore) and 0 <= self.p_ignore < 1, "task.p_ignore", self.p_ignore,
              "must be a number in [0, 1)")

    input_size = property(lambda self: N_TOKENS)
    output_size = property(lambda self: 2)
    total_len = property(lambda self: self.seq_len)
    loss_steps = property(lambda self: torch.arange(2, self.seq_len, 2))
    baseline = property(lambda self: math.log(2))

    @cached_property
    def lag(self) -> int:
        return median_lag(self)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, self.p_ignore, device)
