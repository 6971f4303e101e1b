"""Multi-query associative recall (MQAR), Arora, Eyuboglu, Timalsina, Johnson, Poli,
Zou, Rudra & Re (2023), "Zoology: Measuring and Improving Recall in Efficient
Language Models" (the MQAR task it introduces; its section number was not checked
here); generated as Zoology's ``_mqar`` (HazyResearch/zoology,
zoology/data/associative_recall.py), with a ``torch.Generator`` instead of numpy's
global seed.

Vocabulary of V tokens (``vocab_size``); keys come from 1 .. V//2 - 1, values from
V//2 .. V-1. With n = ``n_pairs`` and T = ``seq_len`` (Zoology's input_seq_len):
  * steps 0 .. 2n-1: n key-value pairs k_1 v_1 ... k_n v_n, keys distinct, values
    distinct (drawn without replacement);
  * every key is queried exactly once after the context, at step 2n + 2 g_i, where
    the gaps g_i are drawn without replacement from 0 .. (T - 2n)//2 - 1 with
    p(g) proportional to (g + 1)^(a - 1) (``power_a`` a = 0.01 in Zoology: short
    gaps are likelier; a = 1 is uniform);
  * every other step holds a token drawn uniformly from 0 .. V-1
    (``random_non_queries``, Zoology's default; false leaves them 0).
Input: one-hot over V channels (a linear input layer on a one-hot is an embedding).
Target at a query step: the queried key's value (the next token in Zoology's
language-model framing); no loss elsewhere (Zoology's label -100), via the
batch's per-example loss mask over the possible query steps 2n, 2n + 2, ...
Chance baseline: ln(V - V//2), uniform over the values.
Solved: accuracy >= 0.99 on the queries.
Zoology asserts T even, 4n <= T and V > T; seqlab enforces the first two (the
generator needs them: n distinct gaps) and n <= V//2 - 1 (n distinct keys), not
V > T (nothing in the generator depends on it). Zoology's grid: (T, n) = (64, 4),
(128, 8), (256, 16), (512, 64) at V = 8192; the default here is V = 256 (a
one-hot input of 8192 channels is too slow on a CPU).

Lag of query i: its step minus 2(i - 1), the step of its key (the farthest input
the answer needs); it varies per example (and with the power law), so
summary.json records its distribution and ``lag`` is its median.

Worked example, T = 16, n = 2, V = 12 (keys 1..5, values 6..11), pairs (2, 8), (4, 7),
gaps 1 and 4, random_non_queries off, asserted in tests/test_new_tasks.py:

    t        0  1  2  3  4  5  6  7  8  9  10 11 12 13 14 15
    input    2  8  4  7  0  0  2  0  0  0  0  0  4  0  0  0
    target                     8                 7
    lag                        6                 10

(Zoology's docstring example has the same layout.) Possible query steps 4, 6, ..., 14.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from ..checks import check, check_int, is_number
from .base import Batch, Task, median_lag


def make_batch(batch_size: int, seq_len: int, generator: torch.Generator, n_pairs: int = 4,
               vocab_size: int = 256, power_a: float = 0.01, random_non_queries: bool = True,
               device="cpu") -> Batch:
    """MQAR batch: inputs (B, T, V) one-hot, targets (B, (T-2n)//2) long at the possible query steps."""
    B, T, n, V = batch_size, seq_len, n_pairs, vocab_size
    half = V // 2
    # n distinct keys from 1..V//2-1 and n distinct values from V//2..V-1 per example
    keys = torch.rand(B, half - 1, generator=generator, device=device).argsort(1)[:, :n] + 1
    values = torch.rand(B, V - half, generator=generator, device=device).argsort(1)[:, :n] + half
    space = (T - 2 * n) // 2
    p = power_a * torch.arange(1, space + 1, dtype=torch.float64, device=device) ** (power_a - 1)
    gaps = torch.multinomial((p / p.sum()).expand(B, space), n, replacement=False, generator=generator)
    filler = torch.randint(0, V, (B, T), generator=generator, device=device) if random_non_queries else None
    return from_pairs(keys, values, gaps, T, V, filler)


def from_pairs(keys: torch.Tensor, values: torch.Tensor, gaps: torch.Tensor, seq_len: int,
               vocab_size: int, filler: torch.Tensor | None = None) -> Batch:
    """Build the batch from keys, values and query gaps (B, n) each; ``filler`` (B, T) replaces
    every step that is neither a pair nor a query (None: zeros)."""
    B, n = keys.shape
    T, V = seq_len, vocab_size
    rows = torch.arange(B, device=keys.device).unsqueeze(1)
    symbols = torch.zeros(B, T, dtype=torch.long, device=keys.device)
    symbols[:, 0:2 * n:2] = keys
    symbols[:, 1:2 * n:2] = values
    query_steps = 2 * n + 2 * gaps  # (B, n)
    symbols[rows, query_steps] = keys
    if filler is not None:
        used = torch.zeros(B, T, dtype=torch.bool, device=keys.device)
        used[:, :2 * n] = True
        used[rows, query_steps] = True
        symbols = torch.where(used, symbols, filler)
    space = (T - 2 * n) // 2
    targets = torch.zeros(B, space, dtype=torch.long, device=keys.device)
    targets[rows, gaps] = values
    mask = torch.zeros(B, space, dtype=torch.bool, device=keys.device)
    mask[rows, gaps] = True
    lags = torch.full((B, space), -1, dtype=torch.long, device=keys.device)
    lags[rows, gaps] = query_steps - 2 * torch.arange(n, device=keys.device)
    return Batch(F.one_hot(symbols, V).float(), targets, mask=mask, lags=lags)


@dataclass(frozen=True)
class MQAR(Task):
    seq_len: int  # T: Zoology's input_seq_len (even, >= 4 n)
    n_pairs: int = 4  # n key-value pairs, each queried once (Zoology's multiquery_ar default)
    vocab_size: int = 256  # V: keys 1..V/2-1, values V/2..V-1 (Zoology: 8192)
    power_a: float = 0.01  # query gaps ~ (g+1)^(a-1); 1.0 = uniform
    random_non_queries: bool = True  # other steps hold random tokens (Zoology's default), else 0

    name = "mqar"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("seq_len", self.seq_len, 4)
        check(self.seq_len % 2 == 0, "seq_len", self.seq_len, "must be even for task=mqar (pairs of tokens)")
        check_int("task.n_pairs", self.n_pairs, 1)
        check_int("task.vocab_size", self.vocab_size, 4)
        check(4 * self.n_pairs <= self.seq_len, "task.n_pairs", self.n_pairs,
              f"must be <= seq_len/4 = {self.seq_len // 4} (n pairs and n queries at distinct even gaps)")
        check(self.n_pairs <= self.vocab_size // 2 - 1, "task.n_pairs", self.n_pairs,
              f"must be <= vocab_size//2 - 1 = {self.vocab_size // 2 - 1} (distinct keys)")
        check(is_number(self.power_a) and 0 < self.power_a <= 1, "task.power_a", self.power_a,
              "must be a number in (0, 1]")
        check(isinstance(self.random_non_queries, bool), "task.random_non_queries", self.random_non_queries,
              "must be true or false")

    input_size = property(lambda self: self.vocab_size)
    output_size = property(lambda self: self.vocab_size)
    total_len = property(lambda self: self.seq_len)
    loss_steps = property(lambda self: torch.arange(2 * self.n_pairs, self.seq_len - 1, 2))
    baseline = property(lambda self: math.log(self.vocab_size - self.vocab_size // 2))

    @cached_property
    def lag(self) -> int:
        return median_lag(self)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return make_batch(batch_size, self.seq_len, generator, self.n_pairs, self.vocab_size, self.power_a,
                          self.random_non_queries, device)
