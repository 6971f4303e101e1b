"""Copying memory task, as in Arjovsky, Shah & Bengio (2016), sec. 4.1, restated by
Tallec & Ollivier (2018), "Can recurrent neural networks warp time?".

Alphabet of 10 (one-hot inputs, 10 channels): symbols 0-7 are data, 8 is the
blank, 9 is the delimiter.
Input, length T + 20: 10 random data symbols, T - 1 blanks, the delimiter, 10 blanks.
Target, length T + 20: T + 10 blanks, then the same 10 data symbols.
Loss: cross-entropy averaged over all T + 20 steps.
Memoryless baseline (blanks, then uniform over the 8 data symbols for the last 10
steps): 10 ln 8 / (T + 20).
Solved: accuracy >= 0.99 on the 10 answer steps (the last 10).

Worked example, T = 3 (total length 23; data 1 2 3 4 5 6 7 0 1 2), asserted in
tests/test_tasks.py ('.' is the blank 8, ':' the delimiter 9):

    input   1 2 3 4 5 6 7 0 1 2  . .  :  . . . . . . . . . .
    target  . . . . . . . . . .  . .  .  1 2 3 4 5 6 7 0 1 2

Symbol i (input step i) is asked for at step T + 10 + i: every answer has lag T + 10.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check_int
from .base import Batch, Task

N_DATA, BLANK, DELIM, N_SYMBOLS, N_COPY = 8, 8, 9, 10, 10


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, device="cpu") -> Batch:
    """Copy-task batch: inputs (B, T+20, 10) one-hot, targets (B, T+20) long."""
    data = torch.randint(0, N_DATA, (batch_size, N_COPY), generator=generator, device=device)
    return from_data(data, seq_len)


def from_data(data: torch.Tensor, seq_len: int) -> Batch:
    """Build the batch from the 10 data symbols per sequence, data: (B, 10) long."""
    B, T = data.shape[0], seq_len
    symbols = torch.full((B, T + 2 * N_COPY), BLANK, dtype=torch.long, device=data.device)
    symbols[:, :N_COPY] = data
    symbols[:, T + N_COPY - 1] = DELIM
    targets = torch.full_like(symbols, BLANK)
    targets[:, T + N_COPY :] = data
    inputs = F.one_hot(symbols, N_SYMBOLS).float()  # (B, T+20, 10)
    return Batch(inputs, targets)


@dataclass(frozen=True)
class Copy(Task):
    seq_len: int  # T: number of blanks between the data and the recall is T - 1

    name = "copy"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 2)

    input_size = property(lambda self: N_SYMBOLS)
    output_size = property(lambda self: N_SYMBOLS)
    total_len = property(lambda self: self.seq_len + 2 * N_COPY)
    loss_steps = property(lambda self: torch.arange(self.total_len))
    answer_steps = property(lambda self: torch.arange(self.seq_len + N_COPY, self.total_len))
    lag = property(lambda self: self.seq_len + N_COPY)
    baseline = property(lambda self: N_COPY * math.log(N_DATA) / self.total_len)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, device)
