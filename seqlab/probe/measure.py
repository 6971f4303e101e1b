"""One probe: gradient curves + their summaries + Lyapunov spectra, as plain numbers.

The curves form a (layer x lag) grid per state kind (``GradientCurves.grid``); the
fits run along both of its axes:
  * along the lag, one ``fit_curve`` per key ('h_l0', ...): the time probe;
  * along the depth, for a model with more than one layer, one ``fit_depth`` per
    depth curve, named '{state}_{at}' (``DEPTH_AT``):
      lag0     g^(l)(0): the states at the loss step, where only depth separates a
               state from the loss (a feedforward net's one and only column)
      tasklag  g^(l)(task lag): the states where the task's information entered
               (sequence tasks whose lag is inside the measured lags)
      total    ||dL_tau/ds^(l)_t|| over all t at once (the sequence's whole gradient
               reaching layer l)
    and the depth gain at every lag (``depth_gain[state]``, (K,)): which way the
    gradient dies, lag by lag;
  * the per-group parameter-gradient norms ||dL/dtheta_l|| (``curves.param_grad_norm``).

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
from .fit import fit_curve, fit_depth, noise_floor
from .gradient import GradientCurves, gradient_curves
from .lyapunov import (LyapunovEstimate, driving_inputs, layer_inputs, lyapunov_estimates,
                       population_lyapunov_estimates)


@dataclass(frozen=True)
class ProbeSettings:
    every: int = 250
    batch_size: int = 64
    seed: int = 0
    max_loss_steps: int = 2
    horizon_floor: float = 1e-3
    lags: tuple[int, ...] = (1, 10, 100)
    lyapunov_k: int = 16
    lyapunov_steps: int = 3000
    lyapunov_warmup: int = 500
    lyapunov_sequences: int = 1
    lyapunov_every: int = 0
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
        check_int("probe.lyapunov_steps", self.lyapunov_steps, 0)
        check_int("probe.lyapunov_warmup", self.lyapunov_warmup, 0)
        check_int("probe.lyapunov_sequences", self.lyapunov_sequences, 1)
        check_int("probe.lyapunov_every", self.lyapunov_every, 0)
        check(isinstance(self.plots, bool), "probe.plots", self.plots, "must be true or false")

    def make_batch(self, task: Task, device="cpu") -> Batch:
        """The fixed probe batch, from its own generator (the training streams are untouched)."""
        return task.make_batch(self.batch_size, torch.Generator().manual_seed(self.seed)).to(device)

    def lyapunov_due(self, step: int, first: bool, last: bool) -> bool:
        """Whether the probe at ``step`` computes the spectrum: the first and the last probe of a
        run, and every ``lyapunov_every`` updates when that is set (the long spectrum costs
        ~5-20 training steps; docs/probe.md, "Lyapunov exponents")."""
        return self.lyapunov_k > 0 and (first or last or (self.lyapunov_every > 0 and step % self.lyapunov_every == 0))


DEPTH_AT = ("lag0", "tasklag", "total")


def depth_curves(curves: GradientCurves, task_lag: int | None) -> dict[str, np.ndarray]:
    """'{state}_{at}' -> (NL,) the depth curves of ``DEPTH_AT`` (tasklag only when 0 < lag < K)."""
    out = {}
    for state in curves.states:
        grid = curves.grid(state)  # (NL, K)
        out[f"{state}_lag0"] = grid[:, 0]
        if task_lag is not None and 0 < task_lag < grid.shape[1]:
            out[f"{state}_tasklag"] = grid[:, task_lag]
        out[f"{state}_total"] = np.array([curves.total[f"{state}_l{i}"] for i in range(curves.n_layers)])
    return out


@dataclass
class ProbeResult:
    curves: GradientCurves
    fits: dict[str, dict[str, float]]                           # curve key -> fit_curve's summaries
    lyapunov: list[np.ndarray] = field(default_factory=list)    # per layer, (k,) largest first
    depth: dict[str, np.ndarray] = field(default_factory=dict)  # '{state}_{at}' -> (NL,) depth curve
    depth_fits: dict[str, dict[str, float]] = field(default_factory=dict)  # '{state}_{at}' -> fit_depth's
    depth_gain: dict[str, np.ndarray] = field(default_factory=dict)  # state -> (K,) depth gain at each lag
    lyapunov_err: list[np.ndarray] = field(default_factory=list)  # per layer, (k,) convergence estimate
    lyapunov_steps: int = 0                                     # averaged steps per sequence

    def summary(self) -> dict[str, dict[str, float]]:
        """Scalars per curve, per depth curve, per layer's spectrum, and the parameter-gradient norms:
        {'h_l0': {...}, 'depth_h_lag0': {...}, 'param_grad_norm': {'l0': ..}, 'lyapunov_l0': {...}}."""
        out = {key: dict(fit) for key, fit in self.fits.items()}
        for key, value in self.curves.total.items():
            out[key]["g_total"] = value
        for name, fit in self.depth_fits.items():
            out[f"depth_{name}"] = dict(fit)
        if self.curves.param_grad_norm:
            out["param_grad_norm"] = dict(self.curves.param_grad_norm)
        for i, spectrum in enumerate(self.lyapunov):
            err = self.lyapunov_err[i] if i < len(self.lyapunov_err) else np.full(len(spectrum), math.nan)
            out[f"lyapunov_l{i}"] = {"max": float(spectrum[0]) if len(spectrum) else math.nan,
                                     "max_err": float(err[0]) if len(err) else math.nan,
                                     "sum": float(spectrum.sum()), "k": len(spectrum),
                                     "steps": self.lyapunov_steps}
        return out

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """``summary`` flattened to '{prefix}{group}/{name}' keys (for a tracker row)."""
        return {f"{prefix}{group}/{name}": value for group, values in self.summary().items()
                for name, value in values.items()}


def probe(model: SequenceModel, task: Task, batch: Batch, settings: ProbeSettings = ProbeSettings(),
          lyapunov: bool = True, spectra: list[LyapunovEstimate] | None = None) -> ProbeResult:
    """Measure the gradient through time (and, with ``lyapunov``, the Lyapunov spectra) of ``model`` on ``batch``.
    ``spectra``: the spectra already measured (a population's members get theirs from one batched pass,
    ``population_lyapunov_of``)."""
    curves = gradient_curves(model, task, batch, settings.max_loss_steps)
    floor = noise_floor(curves.dtype)
    fits = {key: fit_curve(g, horizon_floor=settings.horizon_floor, lags=settings.lags, task_lag=task.lag,
                           floor=floor)
            for key, g in curves.mean.items()}
    depth, depth_fits, depth_gain = {}, {}, {}
    if curves.n_layers > 1:  # the depth axis
        depth = depth_curves(curves, task.lag)
        depth_fits = {name: fit_depth(g, horizon_floor=settings.horizon_floor, floor=floor)
                      for name, g in depth.items()}
        depth_gain = {state: np.array([fit_depth(col, floor=floor)["gain"] for col in curves.grid(state).T])
                      for state in curves.states}
    result = ProbeResult(curves, fits, [], depth, depth_fits, depth_gain)
    if lyapunov and settings.lyapunov_k > 0:
        estimates = lyapunov_of(model, task, batch, settings) if spectra is None else spectra
        result.lyapunov = [e.exponents for e in estimates]
        result.lyapunov_err = [e.err for e in estimates]
        result.lyapunov_steps = estimates[0].steps if estimates else 0
    return result


def lyapunov_of(model: SequenceModel, task: Task, batch: Batch, settings: ProbeSettings) -> list[LyapunovEstimate]:
    """Every layer's top-k exponents with their convergence estimate.

    ``lyapunov_steps > 0``: along ``lyapunov_warmup + lyapunov_steps`` steps of the task's own
    sequences back to back (independent of T); 0: along the probe batch's own sequences
    (warm-up at most T // 2; the finite-time estimate, biased by O(1/T)).
    """
    return lyapunov_estimates(model, lyapunov_inputs(task, batch, settings), settings.lyapunov_k,
                              settings.lyapunov_warmup, settings.seed)


def population_lyapunov_of(models: list[SequenceModel], task: Task, batch: Batch,
                           settings: ProbeSettings) -> list[list[LyapunovEstimate]]:
    """``lyapunov_of`` of each of a population's same-shaped members, in one batched pass
    (seqlab.probe.lyapunov.population_lyapunov_estimates): each member's own spectra."""
    return population_lyapunov_estimates(models, lyapunov_inputs(task, batch, settings), settings.lyapunov_k,
                                         settings.lyapunov_warmup, settings.seed)


def lyapunov_inputs(task: Task, batch: Batch, settings: ProbeSettings) -> torch.Tensor:
    """The (n, T, D) inputs the spectra are driven by (see ``lyapunov_of``)."""
    n = settings.lyapunov_sequences
    if settings.lyapunov_steps > 0:
        return driving_inputs(task, settings.lyapunov_warmup + settings.lyapunov_steps, n, settings.seed,
                              batch.inputs.device).to(batch.inputs.dtype)
    return batch.inputs[:n]
