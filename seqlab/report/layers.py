"""Figures along the depth axis: how fast each layer learns, and how the gradient falls with depth.

  layer_speed.png   "early layers barely update" as a measured curve: the update-to-weight
                    ratio ||delta W_l|| / ||W_l|| of every layer against the training step
                    (top row) and the layer's pre-clip gradient norm ||dL/dW_l|| (bottom row),
                    one panel per setting, one colour per layer (dark: next to the input,
                    light: next to the loss; grey: the readout); geometric mean over the
                    finished seeds. From ``train/update_ratio/*`` and ``train/grad_norm/*`` in
                    metrics.jsonl (seqlab.probe.layer_stats), at the evaluation cadence.
  depth_curves.png  the probe's depth curve g(l) / g(last layer) at lag 0 (top row) and the
                    per-layer parameter-gradient norm ||dL/dtheta_l|| (bottom row) against the
                    layer, one panel per (task, T), one colour per setting, dashed at step 0 and
                    solid at the last probe (geometric mean over seeds); models with more than
                    one layer only. From probe.npz (``depth_h_lag0`` or, in older files, the grid).

Both return None when no run has the numbers (one-layer models, runs before these were logged).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from seqlab.report.figures import _colors, _facet_title, _facets, _finish, _pyplot
from seqlab.report.runs import Run, Setting, _num
from seqlab.report.stats import probe_index

RATIO, GRAD = "train/update_ratio/", "train/grad_norm/"
MAX_SPEED_PANELS = 8


def _layer_order(group: str) -> float:
    m = re.fullmatch(r"l(\d+)", group)
    return int(m[1]) if m else math.inf


def layer_groups(runs: Sequence[Run]) -> list[str]:
    """Parameter groups with logged update ratios ('l0', 'l1', ..., 'readout'), layers in order."""
    groups = {key[len(RATIO):] for r in runs for row in r.metrics for key in row if key.startswith(RATIO)}
    return sorted(groups, key=lambda g: (_layer_order(g), g))


def _geo_series(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Geometric mean over runs of a positive metric at each step any of them logged it."""
    by_step: dict[int, list[float]] = {}
    for r in runs:
        for row in r.metrics:
            v = _num(row.get(key))
            if "step" in row and math.isfinite(v) and v > 0:
                by_step.setdefault(int(row["step"]), []).append(math.log(v))
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.exp([np.mean(by_step[s]) for s in steps])


def _layer_colors(plt, groups: Sequence[str]):
    layers = [g for g in groups if math.isfinite(_layer_order(g))]
    cmap = plt.get_cmap("viridis")
    out = {g: cmap(i / max(len(layers) - 1, 1) * 0.9) for i, g in enumerate(layers)}
    out.update({g: "0.55" for g in groups if g not in out})
    return out


def plot_layer_speed(settings: Sequence[Setting], path: Path, title: str = "") -> Path | None:
    """Update ratio and gradient norm per layer against the training step, a panel per setting."""
    shown = [s for s in settings if layer_groups(s.finished or s.runs)][:MAX_SPEED_PANELS]
    if not shown:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, len(shown), figsize=(4.4 * len(shown) + 1.6, 6.2), squeeze=False, sharex="col")
    for j, s in enumerate(shown):
        runs = s.finished or s.runs
        groups = layer_groups(runs)
        colors = _layer_colors(plt, groups)
        for g in groups:
            label = "readout" if not math.isfinite(_layer_order(g)) else f"layer {g[1:]}"
            for ax, prefix in zip(axes[:, j], (RATIO, GRAD)):
                steps, y = _geo_series(runs, prefix + g)
                if len(steps):
                    ax.plot(steps, y, color=colors[g], lw=1.3, label=label, marker="o" if len(steps) <= 12 else None, ms=3)
        timed = s.seq_len is not None and any(_num(r.summary.get("lag")) > 0 for r in runs)  # a task with time
        axes[0, j].set_title(f"{s.label} (T={s.seq_len})" if timed else s.label, fontsize=9)
        axes[1, j].set_xlabel("training step")
        for ax in axes[:, j]:
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole, even with one logged point
            ax.set_xlim(left=0)
    axes[0, 0].set_ylabel("update ratio ||ΔW_l|| / ||W_l||")
    axes[1, 0].set_ylabel("||dL/dW_l|| (pre-clip)")
    _finish(plt, fig, axes[0], path, title, "learning speed per layer (geometric mean over finished seeds; "
            "dark = next to the input)")
    return path


def _depth_at(run: Run, at: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(g(l) at lag 0 over the layers, ||dL/dtheta|| by position on the depth axis) of the first
    (``init``) or last (``final``) probe of a run with more than one layer."""
    p = run.probe
    if p is None or "steps" not in p or len(p["steps"]) == 0:
        return None
    i = probe_index(p, at)
    if i is None:
        return None
    keys = [str(k) for k in p.get("curves", [])]
    state = keys[0].rsplit("_l", 1)[0] if keys else "h"
    layers = sorted(int(k.rsplit("_l", 1)[1]) for k in keys if k.rsplit("_l", 1)[0] == state)
    if len(layers) < 2:
        return None
    if f"depth_{state}_lag0" in p:
        g = np.asarray(p[f"depth_{state}_lag0"][i], dtype=np.float64)
    else:  # a file from before the depth axis: column 0 of the grid
        g = np.array([p[f"mean_{state}_l{l}"][i][0] for l in layers], dtype=np.float64)
    grads = None
    if "param_grad_norm" in p and "param_groups" in p:
        groups = [str(x) for x in p["param_groups"]]
        order = [(_layer_order(n), v) for n, v in zip(groups, p["param_grad_norm"][i])]
        grads = np.array([v for pos, v in sorted(order, key=lambda t: t[0])], dtype=np.float64)
    return g, grads


def _geo_mean(rows: list[np.ndarray]) -> np.ndarray | None:
    rows = [r for r in rows if r is not None]
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.mean(np.log(np.stack(rows)), axis=0))


def plot_depth_curves(settings: Sequence[Setting], path: Path, title: str = "") -> Path | None:
    """g(l)/g(last) at lag 0 and ||dL/dtheta_l|| against the layer, settings overlaid per (task, T)."""
    facets = [f for f in _facets(settings)
              if any(_depth_at(r, "init") or _depth_at(r, "final") for s in settings
                     if (s.task, s.seq_len) == f for r in s.runs)]
    if not facets:
        return None
    plt = _pyplot()
    colors = _colors(settings)
    fig, axes = plt.subplots(2, len(facets), figsize=(4.6 * len(facets) + 1.8, 6.2), squeeze=False)
    for j, facet in enumerate(facets):
        for s in settings:
            if (s.task, s.seq_len) != facet:
                continue
            for at, ls in (("init", "--"), ("final", "-")):
                runs = s.runs if at == "init" else s.finished
                got = [_depth_at(r, at) for r in runs]
                g = _geo_mean([x[0] / x[0][-1] if x is not None and x[0][-1] > 0 else None for x in got])
                grads = _geo_mean([x[1] if x is not None else None for x in got])
                label = s.label if at == "final" or not s.finished else None
                if g is not None:
                    axes[0, j].plot(np.arange(len(g)), g, ls, marker="o", ms=3, color=colors[s.label], lw=1.3,
                                    label=label)
                if grads is not None:
                    x = np.arange(len(grads))  # the layers, then the readout on top
                    axes[1, j].plot(x, grads, ls, marker="s", ms=3, color=colors[s.label], lw=1.3)
        axes[0, j].set_title(_facet_title(facet, facets))
        axes[1, j].set_xlabel("layer l (0 = next to the input; last point of the bottom row: the readout)")
        for ax in axes[:, j]:
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("g(l) / g(last layer), lag 0")
    axes[1, 0].set_ylabel("||dL/dθ_l||")
    _finish(plt, fig, axes[0], path, title, "the gradient against depth (dashed: step 0, solid: last probe; "
            "geometric mean over seeds)")
    return path
