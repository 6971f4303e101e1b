"""Gradient flossing (Engelken 2023, "Gradient Flossing: Improving Gradient Descent through
Dynamic Control of Jacobians", NeurIPS): push the top-k Lyapunov exponents of the recurrent
dynamics towards zero by gradient descent on

    L_floss = mean_i (lambda_i - target)^2,   i = 1..k                       (paper, eq. 3)

with the exponents computed by the QR method, differentiably (seqlab.probe.lyapunov:
``lyapunov_exponents``, reverse mode through the lab's own forward-mode QR loop).

As in the reference implementation (RainerEngelken/GradientFlossing,
``GradientFlossing_ExampleCode.jl``): a separate Adam over the recurrent layers' own
parameters (input weights, recurrent weights, biases; not the readout) with the training
learning rate; each flossing update draws fresh inputs from the task and estimates the
exponents over a short trajectory (there: 55 steps after a transient, one sequence, 75 of
80 exponents, target 0); flossing runs *before* training (``before`` updates) and/or
*during* training, in episodes of ``during`` updates every ``every`` training updates, at
most ``episodes`` times (there: 50 before, and 2 episodes of 50 every 10 epochs).

``Flossing`` keeps its own generator and optimizer, so a run with flossing off is the run
without this module, bit for bit (tested), and the training batches are the same either way.
Glossary: k flossed exponents per layer, n sequences per flossing update.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .checks import check, check_int, is_number
from .models import SequenceModel
from .probe.lyapunov import driving_inputs, layer_inputs, lyapunov_exponents
from .tasks import Task


@dataclass(frozen=True)
class FlossSettings:
    """What ``conf/floss/*.yaml`` builds (every knob is commented there)."""

    k: int = 16
    target: float = 0.0
    steps: int = 100
    warmup: int = 20
    sequences: int = 1
    lr: float | None = None
    before: int = 100
    every: int = 0
    during: int = 50
    episodes: int = 2
    seed: int = 0

    def __post_init__(self):
        check_int("floss.k", self.k, 1)
        check(is_number(self.target) and math.isfinite(self.target), "floss.target", self.target,
              "must be a finite number")
        check_int("floss.steps", self.steps, 1)
        check_int("floss.warmup", self.warmup, 0)
        check_int("floss.sequences", self.sequences, 1)
        check(self.lr is None or (is_number(self.lr) and 0 < self.lr < math.inf), "floss.lr", self.lr,
              "must be a number > 0 or null (the training optimizer's lr)")
        check_int("floss.before", self.before, 0)
        check_int("floss.every", self.every, 0)
        check_int("floss.during", self.during, 0)
        check_int("floss.episodes", self.episodes, 0)
        check_int("floss.seed", self.seed, 0)
        check(self.before > 0 or (self.every > 0 and self.during > 0 and self.episodes > 0), "floss.before",
              self.before, "flosses nothing: set it > 0, or floss.every, floss.during and floss.episodes > 0")


def floss_loss(model: SequenceModel, x: torch.Tensor, settings: FlossSettings) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """L_floss summed over the layers, and each layer's exponents (k,), along inputs ``x`` (n, T, D)."""
    spectra = [lyapunov_exponents(layer, inputs, settings.k, settings.warmup, settings.seed)
               for layer, inputs in zip(model.layers, layer_inputs(model, x))]
    loss = sum(((lam - settings.target) ** 2).mean() for lam in spectra)
    return loss, spectra


class Flossing:
    """Flossing episodes for one run: ``__call__(step)`` floss-trains when one is due and returns
    its log row (else None). Step 0 is the episode before training."""

    def __init__(self, settings: FlossSettings, model: SequenceModel, task: Task, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999)):
        self.settings, self.model, self.task = settings, model, task
        self.params = [p for layer in model.layers for p in layer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=settings.lr or lr, betas=betas)
        self.generator = torch.Generator().manual_seed(settings.seed)  # inputs' seeds: not the training streams
        self.done_episodes = 0
        self.updates = 0
        self.rows: list[dict] = []  # one log row per episode (summary.json["flossing"])

    def due(self, step: int) -> int:
        """Flossing updates due at ``step`` (0 = before training)."""
        s = self.settings
        if step == 0:
            return s.before
        if s.every and step % s.every == 0 and self.done_episodes < s.episodes:
            return s.during
        return 0

    def __call__(self, step: int) -> dict | None:
        n = self.due(step)
        if n == 0:
            return None
        t0 = time.perf_counter()
        s = self.settings
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        first = last = None
        for i in range(n):
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            x = driving_inputs(self.task, s.warmup + s.steps, s.sequences, seed, device).to(dtype)
            loss, spectra = floss_loss(self.model, x, s)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.updates += 1
            top = [float(lam[0].detach()) for lam in spectra]
            if first is None:
                first = (float(loss.detach()), top)
            last = (float(loss.detach()), top)
        if step > 0:
            self.done_episodes += 1
        row = {"step": step, "floss/updates": n, "floss/loss_first": first[0], "floss/loss_last": last[0],
               "floss/seconds": time.perf_counter() - t0}
        for i, (a, b) in enumerate(zip(first[1], last[1])):
            row[f"floss/lambda_max_l{i}_first"] = a
            row[f"floss/lambda_max_l{i}_last"] = b
        self.rows.append(row)
        return row

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "done_episodes": self.done_episodes, "updates": self.updates, "rows": list(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.done_episodes, self.updates = state["done_episodes"], state["updates"]
        self.rows = list(state.get("rows", []))


def make_flossing(settings: FlossSettings | None, cfg, model: SequenceModel, task: Task) -> Flossing | None:
    """The run's ``Flossing`` (None when ``settings`` is: floss=none), with the training optimizer's lr and betas."""
    if settings is None:
        return None
    betas = tuple(cfg.optim.get("betas", (0.9, 0.999)))
    return Flossing(settings, model, task, lr=float(cfg.optim.lr), betas=betas)
