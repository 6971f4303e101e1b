"""The probes of one run, in order of training step, and the files they become.

probe.npz (P probe times, K lags, L loss steps, k exponents; float64 unless said;
``{key}`` names a curve: 'h_l0', 'c_l0' (LSTM), 'h_l1' (second layer), ...):
  steps (P,) int           training step of each probe (0 = before any update)
  lags (K,) int            lag k = tau - t
  loss_steps (L,) int      the tau the lags are counted from
  task_lag () int          the task's own lag (marked on the plots)
  curves (C,) str          the curve keys
  mean_{key} (P, K)        mean over batch and loss steps of ||dL_tau/ds_(tau-k)||
  q25_{key}, q50_{key}, q75_{key} (P, K)   quartiles over the same samples
  per_loss_step_{key} (P, L, K)            batch mean, each loss step's own curve
  gain_{key}, half_life_{key}, attenuation_decades_{key}, horizon_{key},
  fit_lags_{key} (P,)      the fits of ``fit_curve``
  lyapunov_l{i} (P, k)     top-k Lyapunov exponents of layer i, largest first
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .measure import ProbeResult

FIT_FIELDS = ("gain", "half_life", "attenuation_decades", "horizon", "fit_lags")
_STATIC = ("lags", "loss_steps", "task_lag", "curves")  # the same at every probe time


def result_arrays(result: ProbeResult) -> dict[str, np.ndarray]:
    """One probe time's slice of every per-time array of probe.npz."""
    c = result.curves
    out: dict[str, np.ndarray] = {}
    for key in c.keys:
        out[f"mean_{key}"] = c.mean[key]
        for i, name in enumerate(("q25", "q50", "q75")):
            out[f"{name}_{key}"] = c.quartiles[key][i]
        out[f"per_loss_step_{key}"] = c.per_loss_step[key]
        for name in FIT_FIELDS:
            out[f"{name}_{key}"] = np.float64(result.fits[key][name])
    for i, spectrum in enumerate(result.lyapunov):
        out[f"lyapunov_l{i}"] = np.asarray(spectrum, dtype=np.float64)
    return out


@dataclass
class ProbeHistory:
    """Probe times of one run; ``save``/``load`` round-trip through probe.npz (resumed runs)."""

    task_lag: int
    steps: list[int] = field(default_factory=list)
    rows: list[dict[str, np.ndarray]] = field(default_factory=list)  # per probe time
    static: dict[str, np.ndarray] = field(default_factory=dict)

    def append(self, step: int, result: ProbeResult) -> None:
        if not self.static:
            c = result.curves
            self.static = {"lags": c.lags.astype(np.int64), "loss_steps": c.loss_steps.astype(np.int64),
                           "task_lag": np.asarray(self.task_lag, dtype=np.int64), "curves": np.asarray(c.keys)}
        self.steps.append(int(step))
        self.rows.append(result_arrays(result))

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def keys(self) -> list[str]:
        return [str(k) for k in self.static.get("curves", [])]

    @property
    def lags(self) -> np.ndarray:
        return self.static["lags"]

    def means(self, key: str) -> np.ndarray:
        """(P, K) the mean curve of ``key`` at every probe time."""
        return np.stack([row[f"mean_{key}"] for row in self.rows])

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything in probe.npz (see the module docstring)."""
        out = {"steps": np.asarray(self.steps, dtype=np.int64), **self.static}
        for name in self.rows[0] if self.rows else ():
            out[name] = np.stack([row[name] for row in self.rows])
        return out

    def save(self, path: str | Path) -> None:
        """Write probe.npz atomically (rewritten at every probe, so a stopped run keeps its probes)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **self.arrays())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, until_step: int | None = None) -> "ProbeHistory":
        """Read probe.npz back, keeping the probe times <= ``until_step`` (a resumed run's checkpoint)."""
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        steps = arrays.pop("steps")
        static = {name: arrays.pop(name) for name in _STATIC}
        keep = [i for i, s in enumerate(steps) if until_step is None or s <= until_step]
        rows = [{name: value[i] for name, value in arrays.items()} for i in keep]
        return cls(task_lag=int(static["task_lag"]), steps=[int(steps[i]) for i in keep], rows=rows,
                   static=static)
