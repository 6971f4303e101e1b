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
  lyapunov_l{i} (P, k)     top-k Lyapunov exponents of layer i, largest first (NaN rows: a probe
                           that did not compute them, see ProbeSettings.lyapunov_due)
  lyapunov_err_l{i} (P, k) their convergence estimate (LyapunovEstimate.err)
  lyapunov_steps (P,) int  steps the exponents were averaged over (0: none computed)

The depth axis (files written since the depth probe; NL layers, G parameter groups,
``{d}`` a depth curve '{state}_{at}': 'h_lag0', 'h_tasklag', 'h_total', 'c_lag0', ...):
  total_{key} (P,)         mean of ||dL_tau/ds_t|| over all t at once (the 'total' depth curve)
  param_groups (G,) str    parameter groups: 'l0' .. for the layers, then e.g. 'readout'
  param_grad_norm (P, G)   ||dL/dtheta_g|| of the training loss on the probe batch
  only with more than one layer:
  depth_curves (D,) str    the depth-curve names {d}
  depth_{d} (P, NL)        the depth curve, layer 0 (next to the input) first
  depth_{field}_{d} (P,)   the fits of ``fit_depth``: gain, attenuation_decades,
                           underflow_layer, reach_layer, fit_layers
  depth_gain_by_lag_{state} (P, K)  the depth gain at every lag (a fit of each column of the grid)

  theory_json () str       the mean-field block beside the probe at init (seqlab.theory.beside;
                           summary.json's "theory"), when one was computed

The (layer x lag) grid of one probe is ``ProbeHistory.grid``: the mean_{key} rows
of one state kind stacked by layer. Files written before the depth axis load as
they are (``depth_curve`` derives lag0 and tasklag from their mean_{key}).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..rundir import replace_atomic
from .measure import ProbeResult

FIT_FIELDS = ("gain", "half_life", "attenuation_decades", "horizon", "fit_lags")
DEPTH_FIT_FIELDS = ("gain", "attenuation_decades", "underflow_layer", "reach_layer", "fit_layers")
_STATIC = ("lags", "loss_steps", "task_lag", "curves", "param_groups", "depth_curves")  # the same at every probe


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
        if i < len(result.lyapunov_err):
            out[f"lyapunov_err_l{i}"] = np.asarray(result.lyapunov_err[i], dtype=np.float64)
    for key, value in c.total.items():
        out[f"total_{key}"] = np.float64(value)
    if c.param_grad_norm:
        out["param_grad_norm"] = np.array(list(c.param_grad_norm.values()), dtype=np.float64)
    for name, g in result.depth.items():
        out[f"depth_{name}"] = np.asarray(g, dtype=np.float64)
        for field_name in DEPTH_FIT_FIELDS:
            out[f"depth_{field_name}_{name}"] = np.float64(result.depth_fits[name][field_name])
    for state, gains in result.depth_gain.items():
        out[f"depth_gain_by_lag_{state}"] = np.asarray(gains, dtype=np.float64)
    out["lyapunov_steps"] = np.int64(result.lyapunov_steps)
    return out


@dataclass
class ProbeHistory:
    """Probe times of one run; ``save``/``load`` round-trip through probe.npz (resumed runs)."""

    task_lag: int
    steps: list[int] = field(default_factory=list)
    rows: list[dict[str, np.ndarray]] = field(default_factory=list)  # per probe time
    static: dict[str, np.ndarray] = field(default_factory=dict)
    theory: dict | None = None  # the mean-field block beside the probe at init (seqlab.theory.beside), if any

    def append(self, step: int, result: ProbeResult) -> None:
        c = result.curves
        static = {"lags": c.lags.astype(np.int64), "loss_steps": c.loss_steps.astype(np.int64),
                  "task_lag": np.asarray(self.task_lag, dtype=np.int64), "curves": np.asarray(c.keys),
                  "param_groups": np.asarray(list(c.param_grad_norm), dtype=str)}
        if result.depth:
            static["depth_curves"] = np.asarray(list(result.depth), dtype=str)
        for name, value in static.items():  # set by the first probe (or a file from before the depth axis)
            self.static.setdefault(name, value)
        self.steps.append(int(step))
        self.rows.append(result_arrays(result))

    def drop_lyapunov(self, due) -> None:
        """Blank the spectrum of every probe time ``i`` (at ``step``) where ``due(i, step)`` is false.

        A resumed run: the first part's last probe computed the spectrum as its end, which an
        uninterrupted run does not; dropping it keeps the two histories equal."""
        for i, (step, row) in enumerate(zip(self.steps, self.rows)):
            if not due(i, step):
                for name in [n for n in row if n.startswith("lyapunov_l") or n.startswith("lyapunov_err_l")]:
                    del row[name]
                row["lyapunov_steps"] = np.int64(0)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def keys(self) -> list[str]:
        return [str(k) for k in self.static.get("curves", [])]

    @property
    def lags(self) -> np.ndarray:
        return self.static["lags"]

    @property
    def states(self) -> list[str]:
        """State kinds in key order: ['h'], or ['h', 'c'] for an LSTM."""
        return list(dict.fromkeys(key.rsplit("_l", 1)[0] for key in self.keys))

    @property
    def n_layers(self) -> int:
        return len({key.rsplit("_l", 1)[1] for key in self.keys})

    @property
    def param_groups(self) -> list[str]:
        return [str(g) for g in self.static.get("param_groups", [])]

    def means(self, key: str) -> np.ndarray:
        """(P, K) the mean curve of ``key`` at every probe time."""
        return np.stack([row[f"mean_{key}"] for row in self.rows])

    def series(self, name: str) -> np.ndarray | None:
        """(P, ...) the per-probe array ``name`` of probe.npz, or None where this file has none."""
        if not self.rows or any(name not in row for row in self.rows):
            return None
        return np.stack([row[name] for row in self.rows])

    def grid(self, state: str = "h", stat: str = "mean") -> np.ndarray:
        """(P, NL, K) ``stat`` (mean, q25, q50, q75) over probe time x layer x lag."""
        return np.stack([self.series(f"{stat}_{state}_l{i}") for i in range(self.n_layers)], axis=1)

    def depth_curve(self, state: str = "h", at: str = "lag0") -> np.ndarray | None:
        """(P, NL) a depth curve (measure.DEPTH_AT); also from files older than the depth probe
        (lag0 and tasklag from the grid; total needs total_{key}). None where not measured."""
        stored = self.series(f"depth_{state}_{at}")
        if stored is not None:
            return stored
        if at == "total":
            totals = [self.series(f"total_{state}_l{i}") for i in range(self.n_layers)]
            return None if any(t is None for t in totals) else np.stack(totals, axis=1)
        k = 0 if at == "lag0" else self.task_lag if at == "tasklag" else -1
        if not 0 <= k < len(self.lags) or (at == "tasklag" and k == 0):
            return None
        return self.grid(state)[:, :, k]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything in probe.npz (see the module docstring). A history continued from an older
        file (resumed) holds arrays its first rows lack: those rows get nan of the same shape."""
        out = {"steps": np.asarray(self.steps, dtype=np.int64), **self.static}
        if self.theory is not None:
            out["theory_json"] = np.asarray(json.dumps(self.theory))
        names = list(dict.fromkeys(name for row in self.rows for name in row))
        for name in names:
            like = next(row[name] for row in self.rows if name in row)
            out[name] = np.stack([row[name] if name in row else np.full_like(like, np.nan, dtype=np.float64)
                                  for row in self.rows])
        return out

    def save(self, path: str | Path) -> None:
        """Write probe.npz atomically (rewritten at every probe, so a stopped run keeps its probes)."""
        arrays = self.arrays()

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        replace_atomic(Path(path), write)

    @classmethod
    def load(cls, path: str | Path, until_step: int | None = None) -> "ProbeHistory":
        """Read probe.npz back, keeping the probe times <= ``until_step`` (a resumed run's checkpoint)."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        steps = arrays.pop("steps")
        theory = json.loads(str(arrays.pop("theory_json"))) if "theory_json" in arrays else None
        static = {name: arrays.pop(name) for name in _STATIC if name in arrays}
        keep = [i for i, s in enumerate(steps) if until_step is None or s <= until_step]
        rows = [{name: value[i] for name, value in arrays.items()} for i in keep]
        return cls(task_lag=int(static["task_lag"]), steps=[int(steps[i]) for i in keep], rows=rows,
                   static=static, theory=theory)
