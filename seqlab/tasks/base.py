"""What every task hands to the model, the loss and the probe.

Glossary: B batch, T total input length, D input channels, O output channels,
L number of steps that carry loss.

Tasks whose answers sit at different steps in different examples (flip-flop's
reads, MQAR's queries, temporal order's variable length) declare every step
that *can* carry loss in ``loss_steps`` and put a per-example ``mask`` (B, L)
in the batch: the loss and accuracy are means over the masked-in entries only
(as Zoology's ignore index -100 does), and the probe measures lags back from
each example's own answer steps. Without a mask every loss step of every
example counts, as before (the first three tasks are unchanged, bit for bit).

A task is a small frozen dataclass of its parameters (built by Hydra from
``conf/task/*.yaml`` or by hand in a notebook) with a pure ``make_batch`` that
takes a ``torch.Generator`` and touches no global random state. It also knows
its yardsticks: loss kind, baseline formula, solved bar, and which steps carry
loss and which of those carry the long-range answer (the probe measures lags
from them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

LossKind = Literal["mse", "ce"]


@dataclass(frozen=True)
class Batch:
    """One batch of a task.

    inputs:  (B, T, D) float, the sequence fed to the model.
    targets: (B, L) float for ``mse`` tasks, long class indices for ``ce`` tasks,
             one per step in ``Task.loss_steps``.
    mask:    (B, L) bool or None: which loss steps carry loss in each example
             (None: all of them).
    lags:    (B, L) long or None: for each loss step that carries an answer, the
             steps back to the earliest input its target depends on (-1 where
             none); None: every answer step has the task's fixed ``Task.lag``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor | None = None
    lags: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(None if x is None else x.to(device) for x in self._fields()))

    def __getitem__(self, rows) -> "Batch":
        """The examples ``rows`` (a slice or index tensor) of every field."""
        return Batch(*(None if x is None else x[rows] for x in self._fields()))

    @property
    def weight(self) -> int:
        """What the loss is a mean over: examples, or masked-in entries when there is a mask."""
        return self.inputs.shape[0] if self.mask is None else int(self.mask.sum())

    def _fields(self):
        return self.inputs, self.targets, self.mask, self.lags


class Task:
    """Base of all tasks; subclasses are frozen dataclasses with their parameters.

    Subclasses set ``loss_kind``, ``solved_metric`` ("loss" or "accuracy"),
    ``solved_threshold`` and implement the properties and ``make_batch``.
    """

    name: ClassVar[str]
    loss_kind: ClassVar[LossKind]
    solved_metric: ClassVar[Literal["loss", "accuracy"]]
    solved_threshold: ClassVar[float]

    # --- shape ---------------------------------------------------------------
    @property
    def input_size(self) -> int:  # D
        raise NotImplementedError

    @property
    def output_size(self) -> int:  # O
        raise NotImplementedError

    @property
    def total_len(self) -> int:  # T as fed to the model
        raise NotImplementedError

    # --- where the loss is ---------------------------------------------------
    @property
    def loss_steps(self) -> torch.Tensor:
        """(L,) long: the time indices whose outputs carry loss, in order."""
        raise NotImplementedError

    @property
    def answer_steps(self) -> torch.Tensor:
        """(A,) long subset of ``loss_steps``: steps whose target depends on the far past."""
        return self.loss_steps

    @property
    def lag(self) -> int:
        """Steps between the information and the loss that needs it (the task's lag)."""
        raise NotImplementedError

    # --- yardsticks ----------------------------------------------------------
    @property
    def baseline(self) -> float:
        """Loss of the best memoryless predictor, as a formula of the parameters."""
        raise NotImplementedError

    def make_batch(self, batch_size: int, generator: torch.Generator, device="cpu") -> Batch:
        raise NotImplementedError

    def eval_batch(self, size: int, generator: torch.Generator, device="cpu") -> Batch:
        """The held-out set the training loop evaluates on (the same for every run of the task).

        Default, for tasks that generate their data: ``size`` fresh examples from ``generator``
        (train.py seeds it with ``eval_seed``). A task with a finite data set overrides this to
        return its whole evaluation split, and ``size`` and ``generator`` are not used.
        """
        return self.make_batch(size, generator, device)

    # --- shared loss / metrics (no if/else ladders on the task) --------------
    def loss_elements(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, L) loss of each example at each loss step (masked-out entries included). outputs: (B, T, O)."""
        return _LOSSES[self.loss_kind](outputs[:, self.loss_steps.to(outputs.device)], batch.targets)

    def loss_per_step(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(L,) loss at each loss step, mean over the batch (over the masked-in examples with a mask;
        0 at a step no example answers at). outputs: (B, T, O)."""
        elements = self.loss_elements(outputs, batch)
        if batch.mask is None:
            return elements.mean(0)
        m = batch.mask.to(elements.dtype)
        return (elements * m).sum(0) / m.sum(0).clamp(min=1)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Scalar loss: mean over batch and loss steps (as the papers define it); with a mask, the
        mean over the masked-in (example, step) entries (Zoology's ignore-index mean)."""
        if batch.mask is None:
            return self.loss_per_step(outputs, batch).mean()
        m = batch.mask.to(outputs.dtype)
        return (self.loss_elements(outputs, batch) * m).sum() / m.sum().clamp(min=1)

    def accuracy(self, outputs: torch.Tensor, batch: Batch) -> float:
        """Fraction correct on the answer steps (see each task for what 'correct' is); with a mask,
        on the masked-in answer entries."""
        steps = self.loss_steps.tolist()
        cols = torch.tensor([steps.index(s) for s in self.answer_steps.tolist()], device=outputs.device)
        picked = outputs[:, self.answer_steps.to(outputs.device)]  # (B, A, O)
        correct = _CORRECT[self.loss_kind](picked, batch.targets[:, cols])  # (B, A)
        if batch.mask is None:
            return float(correct.float().mean())
        m = batch.mask[:, cols]
        return float(correct[m].float().sum() / m.sum().clamp(min=1))

    def answer_lags(self, batch: Batch) -> torch.Tensor:
        """(N,) long: the lag of every answer in ``batch`` (each masked-in answer step of each
        example), measured back from the answer step to the earliest input its target needs."""
        if batch.lags is not None:
            lags = batch.lags
        else:
            steps = self.loss_steps.tolist()
            lags = torch.full(batch.targets.shape, -1, dtype=torch.long)
            lags[:, [steps.index(s) for s in self.answer_steps.tolist()]] = self.lag
        if batch.mask is not None:
            lags = lags.masked_fill(~batch.mask.to(lags.device), -1)
        return lags[lags >= 0]

    def solved(self, loss: float, accuracy: float) -> bool:
        value = loss if self.solved_metric == "loss" else accuracy
        return value <= self.solved_threshold if self.solved_metric == "loss" else value >= self.solved_threshold


# Elementwise losses, (B, L, O) predictions against (B, L) targets -> (B, L).
_LOSSES = {
    "mse": lambda pred, y: (pred[..., 0] - y) ** 2,
    "ce": lambda logits, y: F.cross_entropy(logits.transpose(1, 2), y, reduction="none"),
}
# "Correct": regression within Hochreiter & Schmidhuber's 0.04; class = argmax.
MSE_TOLERANCE = 0.04
_CORRECT = {
    "mse": lambda pred, y: (pred[..., 0] - y).abs() < MSE_TOLERANCE,
    "ce": lambda logits, y: logits.argmax(-1) == y,
}


LAG_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def lag_distribution(task: Task, batch: Batch) -> dict[str, float]:
    """Quantiles of the task's answer lags on ``batch`` (summary.json's "lag_distribution"): read
    the probe's decay curve g(k) against where the task actually puts its information."""
    lags = task.answer_lags(batch).double().cpu()
    if lags.numel() == 0:
        return {}
    q = torch.quantile(lags, torch.tensor(LAG_QUANTILES, dtype=torch.float64))
    return {"min": int(lags.min()), **{f"q{round(p * 100):02d}": float(v) for p, v in zip(LAG_QUANTILES, q)},
            "max": int(lags.max()), "mean": float(lags.mean()), "answers": int(lags.numel())}


def median_lag(task: Task, sample: int = 256, seed: int = 0) -> int:
    """The median answer lag on a fixed-seed sample: ``Task.lag`` of tasks whose lags vary per example."""
    lags = task.answer_lags(task.make_batch(sample, torch.Generator().manual_seed(seed))).double().cpu()
    return int(torch.quantile(lags, 0.5).round())
