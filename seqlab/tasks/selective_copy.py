"""Selective copying, Gu & Dao (2023), "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", sec. 3.1 and fig. 2; generated as the S4 repository's
``torch_copying_data(L, M, A, variable=True)`` (state-spaces/s4,
src/dataloaders/datasets/copying.py), which is the released code of the task.

Alphabet of A tokens (``n_tokens``): 0 is the noise/blank token, 1 .. A-2 are data,
A-1 is the recall marker. M data tokens (``n_memorize``), drawn uniformly from
1 .. A-2, are scattered at M distinct positions drawn uniformly among the first
L + M steps (kept in order); the other L of those steps are noise (0); then M
markers. Input length L + 2M, one-hot over A channels.
Targets: the M tokens in order, at the M marker steps; cross-entropy there only
(the S4 code's y is just the M tokens).
Chance baseline: ln(A - 2) per answer step (the tokens are uniform and
independent; a memoryless model can at best spread its guess over the data tokens).
Solved: accuracy >= 0.99 on the M answers.
``seq_len`` is the reference's L (the number of noise tokens); Mamba's appendix
E.1 setting, as restated by public reproductions (not read here in the paper
itself), is L = 4096, A = 16, M = 16; the defaults here keep A = M = 16.
The fixed-position variant (``variable=False`` in the S4 code, the tokens first)
is the classic copying task: ``task=copy``.

Lag of answer i: (L + M + i) - position of token i, between M and L + M; it varies
per example, so summary.json records its distribution and ``lag`` is its median.

Worked example, L = 4, M = 3, A = 6 (data tokens 1..4, marker 5), tokens 3 1 4 at
positions 1, 2, 5, asserted in tests/test_new_tasks.py:

    t        0  1  2  3  4  5  6  7  8  9
    input    0  3  1  0  0  4  0  5  5  5
    target                        3  1  4      lags 7 - 1 = 6, 8 - 2 = 6, 9 - 5 = 4
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from ..checks import check_int
from .base import Batch, Task, median_lag


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, n_memorize: int = 16,
               n_tokens: int = 16, device="cpu") -> Batch:
    """Selective-copy batch: inputs (B, L+2M, A) one-hot, targets (B, M) long."""
    B, L, M, A = batch_size, seq_len, n_memorize, n_tokens
    tokens = torch.randint(1, A - 1, (B, M), generator=generator, device=device)  # (B, M)
    # M distinct positions among L + M, uniformly (the S4 code's randperm(L+M)[:M]), sorted
    scores = torch.rand(B, L + M, generator=generator, device=device)
    positions = scores.argsort(dim=1)[:, :M].sort(dim=1).values  # (B, M)
    return from_tokens(tokens, positions, L, A)


def from_tokens(tokens: torch.Tensor, positions: torch.Tensor, seq_len: int, n_tokens: int) -> Batch:
    """Build the batch from the tokens (B, M) and their sorted positions (B, M) in [0, L+M)."""
    B, M = tokens.shape
    L, A = seq_len, n_tokens
    symbols = torch.zeros(B, L + 2 * M, dtype=torch.long, device=tokens.device)
    symbols.scatter_(1, positions, tokens)
    symbols[:, L + M:] = A - 1
    answer_steps = torch.arange(L + M, L + 2 * M, device=tokens.device)  # (M,)
    return Batch(F.one_hot(symbols, A).float(), tokens.clone(), lags=answer_steps - positions)


@dataclass(frozen=True)
class SelectiveCopy(Task):
    seq_len: int  # L: noise tokens (the S4 code's l_noise); input length L + 2M
    n_memorize: int = 16  # M data tokens to copy
    n_tokens: int = 16  # A: alphabet incl. noise 0 and marker A-1 (A - 2 data tokens)

    name = "selective_copy"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 1)
        check_int("task.n_memorize", self.n_memorize, 1)
        check_int("task.n_tokens", self.n_tokens, 4)  # >= 2 data tokens, else there is nothing to copy

    input_size = property(lambda self: self.n_tokens)
    output_size = property(lambda self: self.n_tokens)
    total_len = property(lambda self: self.seq_len + 2 * self.n_memorize)
    loss_steps = property(lambda self: torch.arange(self.seq_len + self.n_memorize, self.total_len))
    baseline = property(lambda self: math.log(self.n_tokens - 2))

    @cached_property
    def lag(self) -> int:
        return median_lag(self)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, self.n_memorize, self.n_tokens, device)
