"""Adding problem, in the convention of Arjovsky, Shah & Bengio (2016), "Unitary
Evolution Recurrent Neural Networks", sec. 4.2 (also used by the coRNN and S4 code).

Input, T steps x 2 channels:
  channel 0: a value drawn from U[0, 1] at every step;
  channel 1: a marker, exactly one 1 in [0, T/2) and one 1 in [T/2, T), else 0.
Target: the sum of the two marked values. Loss: MSE on the last output only.
Baseline: always predicting 1.0 gives MSE = Var(U + U) = 2/12 = 1/6 ~ 0.1667.
Solved: MSE below 0.01 on the held-out set.

Worked example, T = 6 (markers at steps 1 and 4), asserted in tests/test_tasks.py:

    t          0     1     2     3     4     5
    value    0.10  0.50  0.20  0.30  0.25  0.90
    marker     0     1     0     0     1     0
    target                                 0.75   (= 0.50 + 0.25, at t = 5 only)

The longest lag between a marked value and the loss is T - 1 (first marker at 0): that is
``lag``; each example's own lag (T - 1 - first marker, in (T/2 - 1, T - 1]) is in ``Batch.lags``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_int
from .base import Batch, Task


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, device="cpu") -> Batch:
    """Adding-problem batch: inputs (B, T, 2), targets (B, 1)."""
    B, T = batch_size, seq_len
    values = torch.rand(B, T, generator=generator, device=device)  # (B, T)
    first = torch.randint(0, T // 2, (B,), generator=generator, device=device)  # (B,)
    second = torch.randint(T // 2, T, (B,), generator=generator, device=device)  # (B,)
    return from_markers(values, first, second)


def from_markers(values: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> Batch:
    """Build the batch from values (B, T) and the two marker positions (B,)."""
    B = values.shape[0]
    rows = torch.arange(B, device=values.device)
    markers = torch.zeros_like(values)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = torch.stack([values, markers], dim=-1)  # (B, T, 2)
    targets = (values[rows, first] + values[rows, second]).unsqueeze(1)  # (B, 1)
    lags = (values.shape[1] - 1 - first).unsqueeze(1)  # (B, 1): back to the first marker
    return Batch(inputs, targets, lags=lags)


@dataclass(frozen=True)
class Adding(Task):
    seq_len: int  # T: sequence length as in Arjovsky et al. 2016

    name = "adding"
    loss_kind = "mse"
    solved_metric = "loss"
    solved_threshold = 0.01

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 2)

    input_size = property(lambda self: 2)
    output_size = property(lambda self: 1)
    total_len = property(lambda self: self.seq_len)
    loss_steps = property(lambda self: torch.tensor([self.seq_len - 1]))
    lag = property(lambda self: self.seq_len - 1)
    baseline = property(lambda self: 1.0 / 6.0)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, device)
