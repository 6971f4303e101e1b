"""Random labels: memorize N Gaussian inputs with labels drawn at random, a task without time.

The setting of the classic vanishing-gradient demonstration (a 100 -> 128 -> 128 ->
128 -> 10 net on x ~ N(0, 1), labels uniform in 0..9, cross-entropy; see
``python -m seqlab.demo``), and of Zhang et al. 2017, "Understanding deep learning
requires rethinking generalization", sec. 2: labels that carry no information
about the inputs, so the only way to lower the loss is to memorize the N pairs.

The data set is fixed by ``data_seed``: x_i ~ N(0, I_D) (all N inputs drawn
first), then y_i ~ U{0, .., C-1}, from ``torch.Generator().manual_seed(data_seed)``.
Training batches are B examples drawn uniformly with replacement from those N by
the training stream's generator; evaluation is on all N (memorization is the
task, so the training set is the evaluation set).

Time: none. Inputs are (B, 1, D): T = 1, one loss step t = 0, lag 0, so a
feedforward model is its natural reader; a recurrent model reads the one step.

Baseline: ln C, the cross-entropy of guessing uniformly (the best input-blind
predictor on the finite set, the label frequencies, does at most a little
better: the empirical label entropy <= ln C). Solved: accuracy >= 0.99 on the N.

Worked example, N = 3, D = 2, C = 4, data_seed = 0 (asserted in tests/test_depth_tasks.py):

    example   x (t = 0)          target
    0         ( 1.54, -0.29)     0
    1         (-2.18,  0.57)     3
    2         (-1.08, -1.40)     2
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from ..checks import check_int
from .base import Batch, Task


def make_examples(n_examples: int, input_dim: int, n_classes: int, data_seed: int) -> Batch:
    """The fixed set: inputs (N, 1, D) ~ N(0, 1), targets (N, 1) uniform in 0..C-1."""
    gen = torch.Generator().manual_seed(data_seed)
    x = torch.randn(n_examples, input_dim, generator=gen)  # (N, D)
    y = torch.randint(0, n_classes, (n_examples,), generator=gen)  # (N,)
    return Batch(x.unsqueeze(1), y.unsqueeze(1))


def sample(examples: Batch, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
    """B examples of a fixed set, uniformly with replacement, drawn by ``generator``."""
    n = examples.inputs.shape[0]
    idx = torch.randint(0, n, (batch_size,), generator=generator, device=generator.device).cpu()
    return Batch(examples.inputs[idx], examples.targets[idx]).to(device)


@dataclass(frozen=True)
class RandomLabels(Task):
    n_examples: int = 512  # N: the size of the set to memorize
    input_dim: int = 100   # D
    n_classes: int = 10    # C
    data_seed: int = 0     # fixes the inputs and the labels

    name = "random_labels"
    loss_kind = "ce"
    solved_metric = "accuracy"
    solved_threshold = 0.99

    def __post_init__(self):
        check_int("task.n_examples", self.n_examples, 1)
        check_int("task.input_dim", self.input_dim, 1)
        check_int("task.n_classes", self.n_classes, 2)
        check_int("task.data_seed", self.data_seed, 0)

    input_size = property(lambda self: self.input_dim)
    output_size = property(lambda self: self.n_classes)
    total_len = property(lambda self: 1)
    loss_steps = property(lambda self: torch.tensor([0]))
    lag = property(lambda self: 0)
    baseline = property(lambda self: math.log(self.n_classes))

    @cached_property
    def examples(self) -> Batch:
        """All N examples (built once per task object)."""
        return make_examples(self.n_examples, self.input_dim, self.n_classes, self.data_seed)

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        return sample(self.examples, batch_size, generator, device)

    def eval_batch(self, size: int, generator: torch.Generator, device="cpu") -> Batch:
        """All N examples (memorizing them is the task); ``size`` and ``generator`` are not used."""
        return self.examples.to(device)
