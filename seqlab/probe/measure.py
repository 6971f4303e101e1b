"""One probe: gradient curves + their summaries + Lyapunov spectra, as plain numbers.

``ProbeSettings`` is what ``conf/probe/default.yaml`` builds (every knob is
commented there); ``probe`` is a pure function of (model, task, batch, settings).
The caller (train.py, or ``python -m seqlab.probe``) decides when to call it and
where the numbers go.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import check, check_int, is_number
from ..models import SequenceModel
from ..tasks import Batch, Task
from .fit import fit_curve, noise_floor
from .gradient import GradientCurves, gradient_curves
from .lyapunov import lyapunov_spectra


@dataclass(frozen=True)
class ProbeSettings:
    every: int = 250
    batch_size: int = 64
    seed: int = 0
    max_loss_steps: int = 2
    horizon_floor: float = 1e-3
    lags: tuple[int, ...] = (1, 10, 100)
    lyapunov_k: int = 16
    lyapunov_warmup: int = 50
    lyapunov_sequences: int = 1
    plots: bool = True

    def __post_init__(self):
        check_int("probe.every", self.every, 1)
        check_int("probe.batch_size", self.batch_size, 1)
        check_int("probe.seed", self.seed, 0)
        check_int("probe.max_loss_steps", self.max_loss_steps, 1)
        check(is_number(self.horizon_floor) and 0 < self.horizon_floor < 1, "probe.horizon_floor",
              self.horizon_floor, "must be a number in (0, 1)")
        lags = self.lags
        check(not isinstance(lags, (str, bytes)) and hasattr(lags, "__iter__"), "probe.lags", lags,
              "must be a list of integers >= 0")
        lags = tuple(lags)
        for lag in lags:
            check_int("probe.lags", lag, 0)
        object.__setattr__(self, "lags", lags)  # a ListConfig from Hydra -> a plain tuple
        check_int("probe.lyapunov_k", self.lyapunov_k, 0)
        check_int("probe.lyapunov_warmup", self.lyapunov_warmup, 0)
        check_int("probe.lyapunov_sequences", self.lyapunov_sequences, 1)
        check(isinstance(self.plots, bool), "probe.plots", self.plots, "must be true or false")

    def make_batch(self, task: Task, device="cpu") -> Batch:
        """The fixed probe batch, from its own generator (the training streams are untouched)."""
        return task.make_batch(self.batch_size, torch.Generator().manual_seed(self.seed)).to(device)


@dataclass
class ProbeResult:
    curves: GradientCurves
    fits: dict[str, dict[str, float]]                           # curve key -> fit_curve's summaries
    lyapunov: list[np.ndarray] = field(default_factory=list)    # per layer, (k,) largest first

    def summary(self) -> dict[str, dict[str, float]]:
        """Scalars per curve and per layer's spectrum: {'h_l0': {...}, 'lyapunov_l0': {...}}."""
        out = {key: dict(fit) for key, fit in self.fits.items()}
        for i, spectrum in enumerate(self.lyapunov):
            out[f"lyapunov_l{i}"] = {"max": float(spectrum[0]) if len(spectrum) else math.nan,
                                     "sum": float(spectrum.sum()), "k": len(spectrum)}
        return out

    def curve_rows(self, label: str) -> list[dict[str, float]]:
        """One row per lag, {'probe/lag': k, 'probe/{label}/{key}': g(k), ...}: a tracker plots
        them against ``probe/lag`` (W&B: define_metric), so runs overlay."""
        c = self.curves
        return [{"probe/lag": int(k), **{f"probe/{label}/{key}": float(c.mean[key][k]) for key in c.keys}}
                for k in c.lags]

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """``summary`` flattened to '{prefix}{group}/{name}' keys (for a tracker row)."""
        return {f"{prefix}{group}/{name}": value for group, values in self.summary().items()
                for name, value in values.items()}


def probe(model: SequenceModel, task: Task, batch: Batch, settings: ProbeSettings = ProbeSettings()) -> ProbeResult:
    """Measure the gradient through time and the Lyapunov spectra of ``model`` on ``batch``."""
    curves = gradient_curves(model, task, batch, settings.max_loss_steps)
    floor = noise_floor(curves.dtype)
    fits = {key: fit_curve(g, horizon_floor=settings.horizon_floor, lags=settings.lags, task_lag=task.lag,
                           floor=floor)
            for key, g in curves.mean.items()}
    lyapunov = []
    if settings.lyapunov_k > 0:
        x = batch.inputs[:settings.lyapunov_sequences]
        lyapunov = lyapunov_spectra(model, x, settings.lyapunov_k, settings.lyapunov_warmup, settings.seed)
    return ProbeResult(curves, fits, lyapunov)
