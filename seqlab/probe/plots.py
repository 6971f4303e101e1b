"""Figures of a run's probes (matplotlib, Agg backend; no display needed).

probe_curves.png   g(k) on a log axis, one panel per curve key, one line per probe
                   time (colour = training step), the task's lag marked
probe_heatmap.png  log10 g over (lag x training step), one panel per curve key
                   (after Vorontsov et al. 2017, fig. 3); blank cells: g = 0 (underflow)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CURVES_PNG, HEATMAP_PNG = "probe_curves.png", "probe_heatmap.png"

from .history import ProbeHistory


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _panels(plt, n: int):
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.8), squeeze=False, layout="constrained")
    return fig, axes[0]


def plot_curves(history: ProbeHistory, path: str | Path, title: str = "") -> Path:
    """Decay curves, one line per probe time."""
    plt = _pyplot()
    from matplotlib import cm, colors

    keys, lags, steps = history.keys, history.lags, history.steps
    norm = colors.Normalize(vmin=min(steps), vmax=max(max(steps), min(steps) + 1))
    cmap = plt.get_cmap("viridis")
    fig, axes = _panels(plt, len(keys))
    for ax, key in zip(axes, keys):
        for step, g in zip(steps, history.means(key)):
            shown = np.where(g > 0, g, np.nan)  # log axis: zeros (underflow) left out
            ax.plot(lags, shown, color=cmap(norm(step)), lw=1.2, label=f"step {step}")
        lag_line = ax.axvline(history.task_lag, color="k", ls="--", lw=0.8, label=f"task lag {history.task_lag}")
        ax.set_yscale("log")
        ax.set_xlabel("lag k = tau - t")
        ax.set_ylabel(f"mean ||dL/d{key.split('_')[0]}_(tau-k)||")
        ax.set_title(f"{key}  ({key.split('_l')[0]}, layer {key.split('_l')[-1]})")
        ax.legend(handles=None if len(steps) <= 6 else [lag_line], fontsize=7)  # many probes: a colour bar
    if len(steps) > 6:
        fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), label="training step")
    if title:
        fig.suptitle(title, fontsize=8, wrap=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_heatmap(history: ProbeHistory, path: str | Path, title: str = "") -> Path:
    """log10 g over lag (y) and training step (x)."""
    plt = _pyplot()

    keys, lags, steps = history.keys, history.lags, np.asarray(history.steps, dtype=float)
    fig, axes = _panels(plt, len(keys))
    for ax, key in zip(axes, keys):
        g = history.means(key).T  # (K, P)
        with np.errstate(divide="ignore"):
            z = np.where(g > 0, np.log10(np.where(g > 0, g, 1.0)), np.nan)
        if len(steps) > 1:
            mesh = ax.pcolormesh(steps, lags, z, shading="nearest", cmap="magma")
        else:  # one probe time: one column
            mesh = ax.pcolormesh([steps[0] - 0.5, steps[0] + 0.5], np.append(lags, lags[-1] + 1) - 0.5, z,
                                 shading="flat", cmap="magma")
        ax.axhline(history.task_lag, color="w", ls="--", lw=0.8)
        ax.set_xlabel("training step")
        ax.set_ylabel("lag k")
        ax.set_title(key)
        fig.colorbar(mesh, ax=ax, label="log10 g(k)")
    if title:
        fig.suptitle(title, fontsize=8, wrap=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_plots(history: ProbeHistory, run_dir: str | Path, title: str = "") -> list[Path]:
    """Both figures into ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    return [plot_curves(history, run_dir / CURVES_PNG, title), plot_heatmap(history, run_dir / HEATMAP_PNG, title)]
