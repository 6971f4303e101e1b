"""Handwritten digits, 8x8 (scikit-learn's ``load_digits``: the UCI optical-recognition test
set of Alpaydin & Kaynak 1998, 1797 images, 10 classes, pixels 0..16). The data ship inside
scikit-learn: nothing is downloaded.

Two layouts of the same images, so one task serves both model families:
  * ``flat``: each image is one step of 64 features, inputs (B, 1, 64): T = 1, loss at
    t = 0, lag 0 (a feedforward net's input; a recurrent model reads the one step);
  * ``sequential``: the 64 pixels in raster order, one per step, inputs (B, 64, 1),
    loss at the last step t = 63 only, lag 63 (the offline stand-in for sequential
    MNIST, Le, Jaitly & Hinton 2015, sec. 4.2, on a 64-step scale).
``permute`` reorders the 64 pixels by one fixed permutation drawn from ``permute_seed``
(permuted sequential MNIST, Le et al. 2015): in the sequential layout that spreads the
strokes over the whole sequence, so the long lags matter; in the flat layout it changes
nothing a fully connected net could not undo.

Pixels are scaled to [0, 1] (x / 16). A feedforward model (model=mlp) on the sequential
layout is the same net at each step with no memory, so it sees only the last pixel: it
runs, and scores about chance, which is what a memoryless model should.

Split: fixed by ``split_seed``, stratified: in each class, ``eval_fraction`` of its
images (rounded) go to the held-out set (20%: 359 of 1797), drawn by a generator
seeded with split_seed; the other 1438 are the training set. Training batches are
drawn uniformly with replacement from the training set; the training loop evaluates on
the whole held-out set (``eval_batch``; eval_size and eval_seed are not used).

Baseline: ln 10 ~ 2.303, the cross-entropy of uniform guessing (the classes are
near-balanced, 174-183 images each, so the best input-blind predictor is within 0.001
of it). Solved: held-out accuracy >= 0.95 (a linear classifier on the flat pixels
already gets about that; the bar asks a sequential reader to match it).

Worked example: image 0 of the file (label 0), its first row of pixels 0 0 5 13 9 1 0 0
(asserted in tests/test_depth_tasks.py):

    layout       t      0    1    2       3       4       5       6   7  ...  63
    sequential   x_t    0    0    0.3125  0.8125  0.5625  0.0625  0   0  ...  0     target 0 at t = 63
    flat         x_0 = (0, 0, 0.3125, 0.8125, 0.5625, 0.0625, 0, 0, ...) (64)     target 0 at t = 0
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import torch

from ..checks import check, check_choice, check_int, is_number
from .base import Batch, Task
from .random_labels import sample

LAYOUTS = ("flat", "sequential")
N_PIXELS, N_CLASSES = 64, 10


@lru_cache(maxsize=1)
def load() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 images (N, 64) float32 in [0, 1] and labels (N,) long, in the file's order."""
    from sklearn.datasets import load_digits  # imported here: only this task needs scikit-learn

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def split_indices(labels: torch.Tensor, eval_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, eval) sorted index tensors: per class, round(fraction * n_c) images held out."""
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in range(int(labels.max()) + 1):
        idx = torch.nonzero(labels == c).flatten()
        held.append(idx[torch.randperm(len(idx), generator=gen)[:round(eval_fraction * len(idx))]])
    is_eval = torch.zeros(len(labels), dtype=torch.bool)
    is_eval[torch.cat(held)] = True
    return torch.nonzero(~is_eval).flatten(), torch.nonzero(is_eval).flatten()


@dataclass(frozen=True)
class Digits(Task):
    layout: str = "flat"         # flat (B, 1, 64) | sequential (B, 64, 1)
    permute: bool = False        # one fixed permutation of the 64 pixels
    permute_seed: int = 0
    split_seed: int = 0
    eval_fraction: float = 0.2   # held out, per class

    name = "digits"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.95

    def __post_init__(self):
        check_choice("task.layout", self.layout, LAYOUTS)
        check(isinstance(self.permute, bool), "task.permute", self.permute, "must be true or false")
        check_int("task.permute_seed", self.permute_seed, 0)
        check_int("task.split_seed", self.split_seed, 0)
        check(is_number(self.eval_fraction) and 0 < self.eval_fraction < 1, "task.eval_fraction",
              self.eval_fraction, "must be a number in (0, 1)")

    sequential = property(lambda self: self.layout == "sequential")
    input_size = property(lambda self: 1 if self.sequential else N_PIXELS)
    output_size = property(lambda self: N_CLASSES)
    total_len = property(lambda self: N_PIXELS if self.sequential else 1)
    loss_steps = property(lambda self: torch.tensor([self.total_len - 1]))
    lag = property(lambda self: self.total_len - 1)
    baseline = property(lambda self: math.log(N_CLASSES))

    @cached_property
    def pixel_order(self) -> torch.Tensor:
        """(64,) the order the pixels are read in: raster order, or the fixed permutation."""
        if not self.permute:
            return torch.arange(N_PIXELS)
        return torch.randperm(N_PIXELS, generator=torch.Generator().manual_seed(self.permute_seed))

    @cached_property
    def splits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, eval) indices into the 1797 images of the file."""
        return split_indices(load()[1], self.eval_fraction, self.split_seed)

    def examples(self, indices: torch.Tensor) -> Batch:
        """Those images in this task's layout: inputs (n, T, D), targets (n, 1)."""
        X, y = load()
        x = X[indices][:, self.pixel_order]  # (n, 64)
        x = x.unsqueeze(-1) if self.sequential else x.unsqueeze(1)  # (n, 64, 1) or (n, 1, 64)
        return Batch(x, y[indices].unsqueeze(1))

    @cached_property
    def train_set(self) -> Batch:
        return self.examples(self.splits[0])

    @cached_property
    def eval_set(self) -> Batch:
        return self.examples(self.splits[1])

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        """B training images, uniformly with replacement."""
        return sample(self.train_set, batch_size, generator, device)

    def eval_batch(self, size: int, generator: torch.Generator, device="cpu") -> Batch:
        """The whole held-out split; ``size`` and ``generator`` are not used."""
        return self.eval_set.to(device)
