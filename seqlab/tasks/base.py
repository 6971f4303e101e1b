"""What every task hands to the model, the loss and the probe.

Glossary: B batch, T total input length, D input channels, O output channels,
L number of steps that carry loss.

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
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.inputs.to(device), self.targets.to(device))


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

    # --- shared loss / metrics (no if/else ladders on the task) --------------
    def loss_per_step(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(L,) loss at each loss step, mean over the batch. outputs: (B, T, O)."""
        return _LOSSES[self.loss_kind](outputs[:, self.loss_steps.to(outputs.device)], batch.targets).mean(0)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Scalar loss: mean over batch and loss steps (as the papers define it)."""
        return self.loss_per_step(outputs, batch).mean()

    def accuracy(self, outputs: torch.Tensor, batch: Batch) -> float:
        """Fraction correct on the answer steps (see each task for what 'correct' is)."""
        steps = self.loss_steps.tolist()
        cols = torch.tensor([steps.index(s) for s in self.answer_steps.tolist()], device=outputs.device)
        picked = outputs[:, self.answer_steps.to(outputs.device)]  # (B, A, O)
        return float(_CORRECT[self.loss_kind](picked, batch.targets[:, cols]).float().mean())

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
