"""Temporal order, Hochreiter & Schmidhuber (1997), "Long Short-Term Memory", sec. 5.6,
experiments 6a (two relevant symbols) and 6b (three).

The paper's text (6a): "The sequence starts with an E, ends with a B (the 'trigger
symbol') and otherwise consists of randomly chosen symbols from the set {a, b, c, d}
except for two elements at positions t1 and t2 that are either X or Y. The sequence
length is randomly chosen between 100 and 110, t1 is randomly chosen between 10 and
20, and t2 is randomly chosen between 50 and 60. There are 4 sequence classes Q, R,
S, U which depend on the temporal order of X and Y": XX -> Q, XY -> R, YX -> S,
YY -> U. 6b: three X/Y positions, t1 in [10, 20], t2 in [33, 43], t3 in [66, 76],
8 classes (XXX -> Q, XXY -> R, ..., YYY -> C). (Quoted through public restatements
of the paper; the issue's "B first, E last" has the two swapped: the paper's B is
the trigger at the end.)

seqlab's T (``seq_len``) is the paper's 100 and the windows scale with it, all
inclusive, in whole percent of T: 6a [10%, 20%] and [50%, 60%] of T; 6b [10%, 20%],
[33%, 43%], [66%, 76%]; steps counted from 0 (the E), so T = 100 gives exactly
the paper's numbers. With ``variable_length`` (the paper) the length is drawn
from T .. T + T//10 inclusive (100 .. 110) and a shorter sequence is padded at
the end with all-zero inputs; each example's loss sits at its own last step (the
B), through the batch's loss mask. ``variable_length=false`` gives every
sequence length T (the fixed-length convention of Martens & Sutskever 2011 and
Pascanu et al. 2013's code, whose windows are half-open [0.1T, 0.2T), [0.5T,
0.6T) and which have no E/B symbols).

Inputs: 8 one-hot channels a b c d X Y B E (0..7); padding is all zeros.
Target: the class, 2 v1 + v2 for 6a (X = 0, Y = 1: XX 0, XY 1, YX 2, YY 3),
4 v1 + 2 v2 + v3 for 6b; cross-entropy at the last step only.
Chance baseline: ln 4 (6a), ln 8 (6b). Solved: accuracy >= 0.99 (the paper stops
at an average training error below 0.1 with the last 2000 sequences right).
Lag of an example: its last step minus t1, the farthest symbol the class needs.

Worked example, 6a, T = 10, variable length (10 or 11); windows [1, 2], [5, 6];
asserted in tests/test_new_tasks.py ('-' is padding, lengths 10 and 11):

    t           0  1  2  3  4  5  6  7  8  9  10
    example 0   E  a  X  b  c  Y  d  a  b  B  -     class XY = 1 at t = 9,  lag 9 - 2 = 7
    example 1   E  Y  b  c  d  a  X  b  a  c  B     class YX = 2 at t = 10, lag 10 - 1 = 9

loss steps 9, 10; mask [[1, 0], [0, 1]].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check, check_choice, check_int
from .base import Batch, Task

SYMBOLS = "abcdXYBE"  # one-hot channels 0..7
X, TRIGGER, START, N_SYMBOLS = 4, 6, 7, 8
WINDOWS = {"6a": ((10, 20), (50, 60)), "6b": ((10, 20), (33, 43), (66, 76))}  # % of T, inclusive
MIN_T = 10  # the smallest T whose windows are disjoint and sit between the E and the B


def windows(seq_len: int, variant: str) -> list[tuple[int, int]]:
    """The inclusive step ranges of the relevant symbols for this T."""
    return [(seq_len * lo // 100, seq_len * hi // 100) for lo, hi in WINDOWS[variant]]


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, variant: str = "6a",
               variable_length: bool = True, device="cpu") -> Batch:
    """Temporal-order batch: inputs (B, T + T//10, 8) one-hot (or (B, T, 8)), targets (B, L) long."""
    B, T = batch_size, seq_len
    jitter = T // 10 if variable_length else 0
    lengths = T + torch.randint(0, jitter + 1, (B,), generator=generator, device=device)  # (B,)
    distractors = torch.randint(0, 4, (B, T + jitter), generator=generator, device=device)
    positions = torch.stack([torch.randint(lo, hi + 1, (B,), generator=generator, device=device)
                             for lo, hi in windows(T, variant)], 1)  # (B, k)
    values = torch.randint(0, 2, positions.shape, generator=generator, device=device)  # (B, k): X 0, Y 1
    return from_symbols(distractors, positions, values, lengths, T, variable_length)


def from_symbols(distractors: torch.Tensor, positions: torch.Tensor, values: torch.Tensor,
                 lengths: torch.Tensor, seq_len: int, variable_length: bool = True) -> Batch:
    """Build the batch from distractors (B, T') in 0..3, the relevant positions (B, k) with their
    X/Y values (B, k) in {0, 1}, and the lengths (B,)."""
    B, total = distractors.shape
    rows = torch.arange(B, device=distractors.device)
    symbols = distractors.clone()
    symbols[:, 0] = START
    symbols.scatter_(1, positions, X + values)
    symbols[rows, lengths - 1] = TRIGGER
    pad = torch.arange(total, device=symbols.device) >= lengths.unsqueeze(1)  # (B, T')
    inputs = F.one_hot(symbols.masked_fill(pad, N_SYMBOLS), N_SYMBOLS + 1)[..., :N_SYMBOLS].float()
    k = values.shape[1]
    label = (values * (2 ** torch.arange(k - 1, -1, -1, device=values.device))).sum(1)  # (B,)
    L = total - seq_len + 1  # possible last steps: T-1 .. T'-1
    lag = lengths - 1 - positions[:, 0]  # (B,)
    if not variable_length:
        return Batch(inputs, label.unsqueeze(1), lags=lag.unsqueeze(1))
    mask = torch.zeros(B, L, dtype=torch.bool, device=symbols.device)
    mask[rows, lengths - seq_len] = True
    lags = torch.full((B, L), -1, dtype=torch.long, device=symbols.device).masked_scatter(mask, lag)
    return Batch(inputs, label.unsqueeze(1).expand(B, L).clone(), mask=mask, lags=lags)


@dataclass(frozen=True)
class TemporalOrder(Task):
    seq_len: int  # T: the paper's length 100 (its windows scale with T)
    variant: str = "6a"  # 6a: two X/Y symbols, 4 classes; 6b: three, 8 classes
    variable_length: bool = True  # lengths T .. T + T//10 as in the paper; false: all length T

    name = "temporal_order"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, MIN_T)
        check_choice("task.variant", self.variant, WINDOWS)
        check(isinstance(self.variable_length, bool), "task.variable_length", self.variable_length,
              "must be true or false")

    n_relevant = property(lambda self: len(WINDOWS[self.variant]))
    jitter = property(lambda self: self.seq_len // 10 if self.variable_length else 0)
    input_size = property(lambda self: N_SYMBOLS)
    output_size = property(lambda self: 2 ** self.n_relevant)
    total_len = property(lambda self: self.seq_len + self.jitter)
    loss_steps = property(lambda self: torch.arange(self.seq_len - 1, self.total_len))
    baseline = property(lambda self: math.log(2 ** self.n_relevant))

    @property
    def lag(self) -> int:
        """Median lag: mean last step minus mean t1 (both uniform, so the difference is symmetric)."""
        lo, hi = windows(self.seq_len, self.variant)[0]
        return int((self.seq_len - 1 + self.jitter / 2) - (lo + hi) / 2)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, self.variant, self.variable_length, device)
