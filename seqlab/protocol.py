"""The learning-rate x seed protocol: which jobs it expands into, and when a hopeless job stops early.

A verdict of one run at one learning rate says little (Okpekpe & Orvieto 2025: recurrent models solve
recall and copy only inside a narrow learning-rate window). ``+protocol=lr_seeds`` (conf/protocol/)
turns any run or sweep into a grid of learning rates x seeds through Hydra's own sweeper parameters,
so it runs on every launcher (basic, joblib, submitit):

    python -m seqlab -m +protocol=lr_seeds task=adding model=gru seq_len=100
    #   optim.lr: 5 values log-spaced over 2 decades centred on the optimizer's lr (Adam: 1e-4 .. 1e-2)
    #   seed: 0, 1, 2                                                   -> 15 jobs

Knobs: ``protocol.n_lr``, ``protocol.decades``, ``protocol.lr_center`` (null: the optimizer's own lr),
``protocol.seeds``; the budget is ``steps`` (x ``batch_size`` examples).

Budget saving (``early_stop``, conf/early_stop/): at rungs of the budget (fractions of ``steps``) a run
whose held-out loss / baseline has not fallen below ``1 - margin`` stops with status ``stopped``. It is
an outcome of the protocol (not solved within the part of the budget it was given), never a failure.
The rule is a pure function of the evaluations, so ``stop_step`` replays it on a finished run's
metrics (how much a full-budget sweep would have saved, and whether it would have stopped a run that
went on to solve).

Only the standard library here: the resolvers are registered in every Hydra process (seqlab._paths).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence


def lr_grid(center: float, n: int = 5, decades: float = 2.0) -> list[float]:
    """``n`` learning rates log-spaced over ``decades`` decades centred (in log) on ``center``,
    smallest first, each rounded to 3 significant digits (so a run's name and config read cleanly).
    n = 1 is the centre alone."""
    center, n, decades = float(center), int(n), float(decades)
    if not (math.isfinite(center) and center > 0):
        raise ValueError(f"protocol.lr_center={center!r}: must be a finite learning rate > 0")
    if n < 1:
        raise ValueError(f"protocol.n_lr={n!r}: must be an integer >= 1")
    if not (math.isfinite(decades) and decades >= 0):
        raise ValueError(f"protocol.decades={decades!r}: must be a finite number >= 0")
    if n == 1:
        return [float(f"{center:.3g}")]
    exps = [math.log10(center) - decades / 2 + decades * i / (n - 1) for i in range(n)]
    return [float(f"{10 ** e:.3g}") for e in exps]


def sweep_values(values: Iterable[float]) -> str:
    """A comma list Hydra's sweeper reads as one axis, e.g. '0.0001,0.00032,0.001'."""
    return ",".join(repr(float(v)) for v in values)


def lr_axis(center, n, decades) -> str:
    """The resolver behind ``hydra.sweeper.params.optim.lr`` in conf/protocol/lr_seeds.yaml."""
    return sweep_values(lr_grid(center, n, decades))


def seed_axis(seeds) -> str:
    """``protocol.seeds``: a count N (seeds 0..N-1) or an explicit list of seeds."""
    if isinstance(seeds, (int, float)) and not isinstance(seeds, bool):
        if seeds != int(seeds) or seeds < 1:
            raise ValueError(f"protocol.seeds={seeds!r}: must be a count >= 1 or a list of seeds")
        return ",".join(str(i) for i in range(int(seeds)))
    try:
        items = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ValueError(f"protocol.seeds={seeds!r}: must be a count >= 1 or a list of seeds") from None
    if not items or any(s < 0 for s in items):
        raise ValueError(f"protocol.seeds={seeds!r}: must be a count >= 1 or a list of seeds >= 0")
    return ",".join(map(str, items))


def expand(center: float, n: int = 5, decades: float = 2.0, seeds=3) -> list[tuple[float, int]]:
    """The (lr, seed) jobs of one setting, in the order the basic sweeper launches them."""
    return [(lr, int(s)) for lr in lr_grid(center, n, decades) for s in seed_axis(seeds).split(",")]


# ----------------------------------------------------------------------------- early stopping

@dataclass(frozen=True)
class EarlyStop:
    """Stop a hopeless run at rungs of its budget.

    rungs: fractions of ``steps`` in (0, 1); the check runs at the first evaluation at or after
    each rung (evaluations are every ``eval_every`` steps). margin: a run stops at a rung when its
    held-out loss / baseline there is above ``1 - margin`` (it has not beaten the task's
    memoryless baseline by the margin)."""

    rungs: tuple[float, ...] = (0.25, 0.5)
    margin: float = 0.05

    def __post_init__(self):
        rungs = tuple(float(r) for r in self.rungs)
        for r in rungs:
            if not (0 < r < 1):
                raise ValueError(f"early_stop.rungs={list(self.rungs)}: each rung is a fraction of steps in (0, 1)")
        if not (math.isfinite(self.margin) and 0 <= self.margin < 1):
            raise ValueError(f"early_stop.margin={self.margin!r}: must be in [0, 1)")
        object.__setattr__(self, "rungs", tuple(sorted(rungs)))

    def rung_at(self, step: int, steps: int, eval_every: int) -> float | None:
        """The rung whose check falls on the evaluation at ``step`` (the first at or after rung x steps),
        else None. Stateless, so a resumed run checks the same rungs as an uninterrupted one."""
        for r in self.rungs:
            at = r * steps
            if step - eval_every < at <= step and step < steps:
                return r
        return None

    def hopeless(self, ratio: float) -> bool:
        """Loss / baseline not below 1 - margin (a non-finite ratio is left to the divergence check)."""
        return math.isfinite(ratio) and ratio > 1 - self.margin

    def check(self, step: int, steps: int, eval_every: int, ratio: float) -> str | None:
        """The reason to stop at this evaluation, or None to go on."""
        r = self.rung_at(step, steps, eval_every)
        if r is None or not self.hopeless(ratio):
            return None
        return (f"stopped at step {step} ({r:g} of the budget): held-out loss / baseline {ratio:.3g} "
                f"> {1 - self.margin:.3g} (early_stop.margin={self.margin:g})")

    def stop_step(self, evals: Sequence[tuple[int, float]], steps: int, eval_every: int) -> int | None:
        """Replay the rule on a run's evaluations [(step, loss / baseline), ...]: the step it would have
        stopped at, or None if it would have run its whole budget."""
        for step, ratio in sorted(evals):
            if self.check(step, steps, eval_every, ratio) is not None:
                return step
        return None


def from_config(node) -> EarlyStop | None:
    """The rule of an ``early_stop`` config node (conf/early_stop/), or None when it is off."""
    if node is None or not node.get("rungs"):
        return None
    return EarlyStop(rungs=tuple(node.get("rungs")), margin=float(node.get("margin", 0.05)))
