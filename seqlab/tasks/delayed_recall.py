"""Delayed recall: one cue at the start, one loss at the end (seqlab's own task;
close relatives: the latching problem of Bengio, Simard & Frasconi 1994, and
S4's lag-copy task).

Channels (one-hot, K + 2 of them): data symbols 0..K-1, the blank K, and the
recall marker K + 1 on its own channel.
Step 0 carries the cue (a data symbol); steps 1..T-2 carry distractors (random
data symbols by default, blanks with ``distractors=blank``); step T-1 carries
the recall marker. Target: the cue, at the last step only; cross-entropy there.
Chance baseline: ln K. The lag between the cue and the loss is T - 1.
Solved: accuracy >= 0.99.

Worked example, T = 5, K = 4, cue 2, distractors 3 0 1, asserted in
tests/test_tasks.py (symbol K = 4 is the blank, K + 1 = 5 the marker):

    t          0   1   2   3   4
    input      2   3   0   1   5
    target                     2
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check_choice, check_int
from .base import Batch, Task

DISTRACTORS = ("random", "blank")


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, n_symbols: int = 8,
               distractors: str = "random", device="cpu") -> Batch:
    """Delayed-recall batch: inputs (B, T, K+2) one-hot, targets (B, 1) long."""
    B, T, K = batch_size, seq_len, n_symbols
    cue = torch.randint(0, K, (B,), generator=generator, device=device)  # (B,)
    if distractors == "random":
        middle = torch.randint(0, K, (B, T - 2), generator=generator, device=device)
    else:
        middle = torch.full((B, T - 2), K, dtype=torch.long, device=device)
    return from_symbols(cue, middle, K)


def from_symbols(cue: torch.Tensor, middle: torch.Tensor, n_symbols: int) -> Batch:
    """Build the batch from cues (B,) and the distractor symbols (B, T-2)."""
    K = n_symbols
    marker = torch.full_like(cue, K + 1).unsqueeze(1)
    symbols = torch.cat([cue.unsqueeze(1), middle, marker], dim=1)  # (B, T)
    return Batch(F.one_hot(symbols, K + 2).float(), cue.unsqueeze(1))


@dataclass(frozen=True)
class DelayedRecall(Task):
    seq_len: int  # T: cue at step 0, recall marker and loss at step T-1
    n_symbols: int = 8  # K data symbols
    distractors: str = "random"  # "random" data symbols or "blank" between cue and recall

    name = "delayed_recall"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 2)
        check_int("task.n_symbols", self.n_symbols, 2)
        check_choice("task.distractors", self.distractors, DISTRACTORS)

    input_size = property(lambda self: self.n_symbols + 2)
    output_size = property(lambda self: self.n_symbols)
    total_len = property(lambda self: self.seq_len)
    loss_steps = property(lambda self: torch.tensor([self.seq_len - 1]))
    lag = property(lambda self: self.seq_len - 1)
    baseline = property(lambda self: math.log(self.n_symbols))

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, self.n_symbols, self.distractors, device)
