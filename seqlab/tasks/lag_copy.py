"""Lag copy (the delay task): y_t = x_(t-M), the S4 repository's discrete
``torch_copying_lag_data(L, M, A)`` (state-spaces/s4,
src/dataloaders/datasets/copying.py, ``lag=True``); the continuous relative is
the delay task of the Legendre Memory Unit (Voelker, Kajic & Eliasmith 2019) and
of HiPPO/S4 ("continuous delay": white noise delayed by M steps).

Input: L = ``seq_len`` symbols, each uniform over K = ``n_symbols`` data symbols
(the S4 code's 1 .. A-2, so K = A - 2), one-hot over K channels.
Target: y_t = x_(t-M) for t >= M (dense: every step from M on), cross-entropy
there. The S4 code also scores the first M steps against a blank target 0; seqlab
leaves them out (nothing there needs memory; the issue's definition).
Chance baseline: ln K (x_(t-M) is uniform and independent of x_t for M >= 1).
Solved: accuracy >= 0.99 over all answer steps. Every answer has lag exactly M
(``delay``; null = L // 2).

Worked example, L = 6, M = 2, K = 4, asserted in tests/test_new_tasks.py:

    t         0  1  2  3  4  5
    input     3  0  2  1  1  0
    target          3  0  2  1      (loss at t = 2 .. 5, lag 2)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check, check_int
from .base import Batch, Task


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, delay: int, n_symbols: int = 8,
               device="cpu") -> Batch:
    """Lag-copy batch: inputs (B, L, K) one-hot, targets (B, L - M) long."""
    symbols = torch.randint(0, n_symbols, (batch_size, seq_len), generator=generator, device=device)
    return from_symbols(symbols, delay, n_symbols)


def from_symbols(symbols: torch.Tensor, delay: int, n_symbols: int) -> Batch:
    """Build the batch from the symbols (B, L) in 0 .. K-1."""
    L = symbols.shape[1]
    return Batch(F.one_hot(symbols, n_symbols).float(), symbols[:, :L - delay].clone())


@dataclass(frozen=True)
class LagCopy(Task):
    seq_len: int  # L: input length
    delay: int | None = None  # M: the lag (1 <= M < L); null = L // 2
    n_symbols: int = 8  # K data symbols

    name = "lag_copy"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 2)
        check_int("task.n_symbols", self.n_symbols, 2)
        if self.delay is None:
            object.__setattr__(self, "delay", self.seq_len // 2)
        check_int("task.delay", self.delay, 1)
        check(self.delay < self.seq_len, "task.delay", self.delay,
              f"must be < seq_len = {self.seq_len} (some step must come M steps after another)")

    input_size = property(lambda self: self.n_symbols)
    output_size = property(lambda self: self.n_symbols)
    total_len = property(lambda self: self.seq_len)
    loss_steps = property(lambda self: torch.arange(self.delay, self.seq_len))
    lag = property(lambda self: self.delay)
    baseline = property(lambda self: math.log(self.n_symbols))

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, self.delay, self.n_symbols, device)
