"""What a tracker (W&B) gets from a probe: the curves along both axes of the grid as data.

One design for both axes (DESIGN.md: depth and time are one grid). Every probe logs

  probe_tables/grid    a table, one row per (state, layer, lag): every probe's curves at
                       that training step. Columns (``GRID_COLUMNS``):
                         step, key ('h_l0'), state ('h'/'c'), layer, lag,
                         g (mean ||dL/ds||), q25, q50, q75 (quartiles over the batch),
                         g_norm = g / g(same layer, lag 0)        the lag curve normalized,
                         g_norm_depth = g / g(last layer, same lag) the depth curve normalized,
                         log10_g, log10_q25, log10_q75, log10_g_norm, log10_g_norm_depth
                       (log10: the raw numbers span 40 decades; None where g = 0, i.e.
                       underflowed). Filter layer == l for a curve against lag, lag == 0
                       for a curve against depth; the step column picks the training step,
                       and W&B concatenates the tables of several runs in one custom chart.
                       At most ``MAX_TABLE_ROWS`` rows (W&B's limit): long sequences of deep
                       stacks keep evenly spaced lags (always 0, the task's lag and the last).
  probe_summary/*      scalars against ``step`` (``ProbeResult.scalars``): the fits along the
                       lag per key, the depth fits, the parameter-gradient norm per group
                       (not the fit's bookkeeping: ``NOT_CHARTED``).

and the first and last probes (labels 'init', 'final') also log native line series,
which W&B overlays across runs with no custom chart:

  x = probe/lag     probe/{label}/{key}           g(k)         (+ _norm g(k)/g(0))
  x = probe/layer   probe_depth/{label}/{state}_{at}  g(l)     (+ _norm g(l)/g(last layer))
                    probe_depth/{label}/param_grad_norm  ||dL/dtheta_l|| (+ _norm); the
                                                         readout sits at layer = number of layers

  Two series per curve, so W&B's metric grid (and LEET's) shows curves, not copies of them: a log
  axis shows the decades (W&B: the panel's log scale; LEET: y), the table has log10 and quartiles.

Non-finite values (g = 0 on a log scale, a diverged model) are left out of the native rows
and are None in the tables. The lab's own numbers stay in probe.npz; this is a view of them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .gradient import group_layer
from .measure import ProbeResult

MAX_TABLE_ROWS = 10_000  # wandb.Table.MAX_ROWS: W&B truncates a longer table
GRID_TABLE = "probe_tables/grid"
GRID_COLUMNS = ["step", "key", "state", "layer", "lag", "g", "q25", "q50", "q75", "g_norm", "g_norm_depth",
                "log10_g", "log10_q25", "log10_q75", "log10_g_norm", "log10_g_norm_depth"]
LAG_AXIS, DEPTH_AXIS = "probe/lag", "probe/layer"
LAG_GLOB, DEPTH_GLOB = "probe/*", "probe_depth/*"


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _log10(x: float) -> float | None:
    x = float(x)
    return math.log10(x) if x > 0 and math.isfinite(x) else None


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if float(b) > 0 and math.isfinite(float(b)) else math.nan


def _series(prefix: str, g: float, ref: float, q: tuple[float, float] | None = None) -> dict[str, float]:
    """{prefix: g, prefix_norm: g/ref}, finite values only: two charts per curve in W&B's grid (its log
    axis shows the decades; the quartiles are columns of the grid table)."""
    row = {prefix: float(g), f"{prefix}_norm": _ratio(g, ref)}
    return {k: v for k, v in row.items() if v is not None and math.isfinite(v)}


# Probe scalars that describe the fit rather than the gradient (how many lags it used, the log of the
# gain, the Lyapunov run's length): in probe.npz and summary.json, not W&B charts beside the results.
NOT_CHARTED = ("fit_lags", "n_lags", "log_gain", "fit_layers", "k", "steps", "max_err")


def probe_scalars(result: ProbeResult, prefix: str = "probe_summary/") -> dict[str, float]:
    """The probe's scalars for a tracker row, less the bookkeeping ones (``NOT_CHARTED``)."""
    return {k: v for k, v in result.scalars(prefix).items() if k.rsplit("/", 1)[-1] not in NOT_CHARTED}


def table_lags(n_lags: int, n_curves: int, task_lag: int | None = None,
               max_rows: int = MAX_TABLE_ROWS) -> np.ndarray:
    """The lags a grid table keeps: all of them when n_curves * K <= max_rows, else evenly spaced
    ones (always 0, the task's lag when measured, and K-1)."""
    keep = max(2, max_rows // max(n_curves, 1))
    if n_lags <= keep:
        return np.arange(n_lags)
    picked = set(np.linspace(0, n_lags - 1, keep).round().astype(int).tolist())
    if task_lag is not None and 0 <= task_lag < n_lags and task_lag not in picked:
        inner = sorted(picked - {0, n_lags - 1}, key=lambda k: abs(k - task_lag))
        if inner:
            picked.discard(inner[0])
        picked.add(int(task_lag))
    return np.array(sorted(picked))


def grid_table(result: ProbeResult, step: int, task_lag: int | None = None,
               max_rows: int = MAX_TABLE_ROWS) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of one probe's grid table (see the module docstring)."""
    c = result.curves
    lags = table_lags(len(c.lags), len(c.keys), task_lag, max_rows)
    rows = []
    for state in c.states:
        grid, q = c.grid(state), [c.grid(state, s) for s in ("q25", "q50", "q75")]  # (NL, K) each
        top = grid[-1]
        for layer in range(c.n_layers):
            for k in lags:
                g = grid[layer, k]
                norm, norm_depth = _ratio(g, grid[layer, 0]), _ratio(g, top[k])
                rows.append([int(step), f"{state}_l{layer}", state, layer, int(k), _finite(g),
                             *(_finite(x[layer, k]) for x in q), _finite(norm), _finite(norm_depth),
                             _log10(g), _log10(q[0][layer, k]), _log10(q[2][layer, k]), _log10(norm),
                             _log10(norm_depth)])
    return GRID_COLUMNS, rows


def lag_rows(result: ProbeResult, label: str) -> list[dict[str, float]]:
    """One row per lag against ``probe/lag``: every key's g(k), g(k)/g(0), log10 and quartiles."""
    c = result.curves
    rows = []
    for k in c.lags:
        row = {LAG_AXIS: int(k)}
        for key in c.keys:
            g = c.mean[key]
            row.update(_series(f"probe/{label}/{key}", g[k], g[0], (c.quartiles[key][0][k], c.quartiles[key][2][k])))
        rows.append(row)
    return rows


def depth_rows(result: ProbeResult, label: str) -> list[dict[str, float]]:
    """One row per layer against ``probe/layer`` (models with more than one layer; else none):
    every depth curve, normalized by its last layer, and the parameter-gradient norms."""
    c = result.curves
    if c.n_layers < 2:
        return []
    grad = {group_layer(name, c.n_layers): v for name, v in c.param_grad_norm.items()}
    top_grad = grad.get(c.n_layers - 1, math.nan)
    rows = []
    for layer in range(c.n_layers + 1):  # + the readout's parameters on top
        row = {DEPTH_AXIS: layer}
        if layer < c.n_layers:
            for name, g in result.depth.items():
                state, at = name.rsplit("_", 1)
                q = None
                if at == "lag0":
                    quart = c.quartiles[f"{state}_l{layer}"]
                    q = (quart[0][0], quart[2][0])
                row.update(_series(f"probe_depth/{label}/{name}", g[layer], g[-1], q))
        if layer in grad:
            row.update(_series(f"probe_depth/{label}/param_grad_norm", grad[layer], top_grad))
        if len(row) > 1:
            rows.append(row)
    return rows


def log_probe(tracker, step: int, result: ProbeResult, labels: tuple[str, ...] = (),
              task_lag: int | None = None, grid_image: str | None = None) -> None:
    """Hand one probe to ``tracker``: the scalars and the grid table at ``step``; for each of
    ``labels`` the native series against lag and depth; the grid heat map image when given."""
    tracker.log({"step": step, **probe_scalars(result)})
    columns, rows = grid_table(result, step, task_lag)
    tracker.table(GRID_TABLE, columns, rows, {"step": step})
    for label in labels:
        tracker.define_axis(LAG_AXIS, LAG_GLOB)
        for row in lag_rows(result, label):
            tracker.log(row)
        depth = depth_rows(result, label)
        if depth:
            tracker.define_axis(DEPTH_AXIS, DEPTH_GLOB)
        for row in depth:
            tracker.log(row)
    if grid_image is not None:
        tracker.image("probe_figures/probe_grid_at_step", grid_image)
