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

from seqlab.report.figures import (THEORY_CAPTION, THEORY_LABEL, _pyplot, _save, display_labels, draw_prediction,
                                   facet_panels, legend_lines, panel_grid, panel_legend, setting_prediction, styles,
                                   theory_legend_entry)
from seqlab.report.runs import Run, Setting, _num
from seqlab.report.stats import probe_index
from seqlab.theory.overlay import geometric_mean

RATIO, GRAD = "train/update_ratio/", "train/grad_norm/"
SPEED_COLUMNS = 5  # settings per row of layer_speed.png (every setting gets its panel)


def _layer_order(group: str) -> float:
    m = re.fullmatch(r"l(\d+)", group)
    return int(m[1]) if m else math.inf


def layer_groups(runs: Sequence[Run]) -> list[str]:
    """Parameter groups with logged update ratios ('l0', 'l1', ..., 'readout'), layers in order."""
    groups = {key[len(RATIO):] for r in runs for row in r.metrics for key in row if key.startswith(RATIO)}
    return sorted(groups, key=lambda g: (_layer_order(g), g))


def _geo_series(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Geometric mean over runs of a positive metric at each step every run that logged it has a
    positive value for (a mean over fewer seeds where one is 0 would bend the curve)."""
    by_step: dict[int, list[float]] = {}
    logged = 0
    for r in runs:
        mine = [(int(row["step"]), _num(row.get(key))) for row in r.metrics if "step" in row and key in row]
        logged += bool(mine)
        for step, v in mine:
            if math.isfinite(v) and v > 0:
                by_step.setdefault(step, []).append(math.log(v))
    steps = np.array(sorted(s for s, v in by_step.items() if len(v) == logged), dtype=np.int64)
    return steps, np.exp([np.mean(by_step[s]) for s in steps])


def _layer_colors(plt, groups: Sequence[str]):
    layers = [g for g in groups if math.isfinite(_layer_order(g))]
    cmap = plt.get_cmap("viridis")
    out = {g: cmap(i / max(len(layers) - 1, 1) * 0.9) for i, g in enumerate(layers)}
    out.update({g: "0.55" for g in groups if g not in out})
    return out


def plot_layer_speed(settings: Sequence[Setting], path: Path, title: str = "") -> Path | None:
    """Update ratio and gradient norm per layer against the training step, a panel per setting (every
    setting, SPEED_COLUMNS to a row)."""
    shown = [s for s in settings if layer_groups(s.finished or s.runs)]
    if not shown:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    names = display_labels(shown)
    fig, grid = panel_grid(plt, len(shown), rows=2, width=3.3, height=2.3, columns=SPEED_COLUMNS, sharex=True)
    for s, (axes, _) in zip(shown, grid):
        runs = s.finished or s.runs
        groups = layer_groups(runs)
        colors = _layer_colors(plt, groups)
        for g in groups:
            label = "readout" if not math.isfinite(_layer_order(g)) else f"layer {g[1:]}"
            for ax, prefix in zip(axes, (RATIO, GRAD)):
                steps, y = _geo_series(runs, prefix + g)
                if len(steps):
                    ax.plot(steps, y, color=colors[g], lw=1.3, label=label, marker="o" if len(steps) <= 12 else None, ms=3)
        timed = s.seq_len is not None and any(_num(r.summary.get("lag")) > 0 for r in runs)  # a task with time
        axes[0].set_title(f"{names[s.label]} (T={s.seq_len})" if timed else names[s.label], fontsize=8)
        axes[1].set_xlabel("training step", fontsize=8)
        axes[0].tick_params(labelbottom=False)
        for ax in axes:
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole, even with one logged point
            ax.set_xlim(left=0)
            ax.tick_params(labelsize=7)
    grid[0][0][0].set_ylabel("update ratio\n||ΔW_l|| / ||W_l||", fontsize=8)
    grid[0][0][1].set_ylabel("||dL/dW_l|| (pre-clip)", fontsize=8)
    handles, labels = [], []
    for axes, _ in grid:
        for h, lab in zip(*axes[0].get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    order = sorted(range(len(labels)), key=lambda i: (labels[i] == "readout", labels[i]))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center",
               ncol=min(len(labels), 8), fontsize=8, frameon=False)
    _save(plt, fig, path, title, f"learning speed per layer, {len(shown)} settings (geometric mean over finished "
          "seeds; dark = next to the input)")
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


def plot_depth_curves(settings: Sequence[Setting], path: Path, title: str = "") -> Path | None:
    """g(l)/g(last) at lag 0 and ||dL/dtheta_l|| against the layer, settings overlaid per (task, T)
    (PANEL_LINES at most to a panel); only settings with more than one layer (the report says which)."""
    from matplotlib.ticker import MaxNLocator

    stacked = [s for s in settings if any(_depth_at(r, "init") or _depth_at(r, "final") for r in s.runs)]
    if not stacked:
        return None
    plt = _pyplot()
    names = display_labels(stacked)
    panels = facet_panels(stacked)
    trained = any(len(r.probe["steps"]) and int(np.asarray(r.probe["steps"])[-1]) > 0
                  for s in stacked for r in s.runs if r.probe is not None and "steps" in r.probe)
    predictions = {s.label: setting_prediction(s, "depth", _depth_ref) for s in stacked}
    extra = [THEORY_LABEL] if any(p[0] is not None for p in predictions.values()) else []
    fig, grid = panel_grid(plt, len(panels), rows=2, width=4.6, height=2.8,
                           legend_lines=legend_lines([[names[s.label] for s in g] + extra for _, g in panels]))
    any_theory = False
    for (panel_title, group), (axes, legend_ax) in zip(panels, grid):
        style = styles(group)
        drawn = False
        for s in group:
            st = style[s.label]
            pred, refs, _ = predictions[s.label]
            if pred is not None:
                drawn |= draw_prediction(axes[0], np.arange(len(pred)), pred, refs, st["color"], from_end=True)
            for at, ls in (("init", ":"), ("final", "-")) if trained else (("init", "-"),):
                runs = s.runs if at == "init" else s.finished
                got = [_depth_at(r, at) for r in runs]
                g = geometric_mean([x[0] / x[0][-1] if x is not None and x[0][-1] > 0 else None for x in got])
                grads = geometric_mean([x[1] if x is not None else None for x in got])
                label = names[s.label] if ls == "-" or not s.finished else None
                fill = "none" if ls == ":" else st["color"]
                if g is not None:
                    axes[0].plot(np.arange(len(g)), g, ls, marker=st["marker"], ms=4, mfc=fill, color=st["color"],
                                 lw=1.3, label=label)
                if grads is not None:
                    x = np.arange(len(grads))  # the layers, then the readout on top
                    axes[1].plot(x, grads, ls, marker=st["marker"], ms=4, mfc=fill, color=st["color"], lw=1.3)
        if drawn:
            theory_legend_entry(axes[0])
            any_theory = True
        axes[0].set_title(panel_title, fontsize=9)
        axes[1].set_xlabel("layer l (0 = next to the input;\nbottom row's last point: the readout)", fontsize=8)
        for ax in axes:
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
        panel_legend(legend_ax, axes)
    grid[0][0][0].set_ylabel("g(l) / g(last layer), lag 0", fontsize=8)
    grid[0][0][1].set_ylabel("||dL/dθ_l||", fontsize=8)
    when = "dotted, hollow: step 0; solid: last probe" if trained else "at step 0"
    _save(plt, fig, path, title, f"the gradient against depth ({when}; geometric mean over seeds; "
          f"{len(stacked)} of {len(settings)} settings have more than one layer)"
          + (f"\n{THEORY_CAPTION}" if any_theory else ""))
    return path


def _depth_ref(r: Run):
    """The measured g at the last layer (lag 0) of a run's probe at init: the depth prediction's reference."""
    got = _depth_at(r, "init")
    if got is None:
        return "no depth curve at step 0"
    keys = [str(k) for k in r.probe.get("curves", [])]
    if keys and not keys[0].startswith("h_l"):
        return f"the prediction is for h, the figure shows {keys[0].rsplit('_l', 1)[0]}"
    return float(got[0][-1])
