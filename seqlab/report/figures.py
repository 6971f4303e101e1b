"""Figures: decay curves, learning curves and probe summaries against seq_len (matplotlib, imported lazily)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seqlab.report.runs import DEFAULT_CURVE, Run, Setting, _num
from seqlab.report.stats import curve_key, setting_curves

# ----------------------------------------------------------------------------- figures

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(settings: Sequence[Setting]) -> dict[str, Any]:
    labels = list(dict.fromkeys(s.label for s in settings))
    cmap = _pyplot().get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _facets(settings: Sequence[Setting]) -> list[tuple[str, Any]]:
    """One panel per (task, seq_len), in order."""
    facets = sorted({(s.task, s.seq_len) for s in settings}, key=lambda f: (f[0], _num(f[1])))
    return facets


def _facet_title(facet, facets) -> str:
    task, T = facet
    multi_task = len({f[0] for f in facets}) > 1
    return (f"{task}, " if multi_task else "") + f"T = {T}"


def _mean_log_curve(runs: Sequence[Run], key_of, at: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Geometric mean over runs of g(k)/g(0) at step 0 (``init``) or the last probe (``final``)."""
    curves, lags = [], None
    for r in runs:
        p = r.probe
        if p is None or "steps" not in p or len(p["steps"]) == 0:
            continue
        key = key_of(p)
        if key is None or f"mean_{key}" not in p:
            continue
        steps = np.asarray(p["steps"])
        if at == "init":
            idx = np.flatnonzero(steps == 0)
            if idx.size == 0:
                continue
            i = int(idx[0])
        else:
            i = len(steps) - 1
        g = np.asarray(p[f"mean_{key}"][i], dtype=np.float64)
        if g.size == 0 or not g[0] > 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            curves.append(np.where(g > 0, np.log10(g / g[0]), np.nan))
        lags = np.asarray(p["lags"])
    if not curves:
        return None
    n = min(len(c) for c in curves)
    logs = np.stack([c[:n] for c in curves])  # (runs, lags); nan where g underflowed to 0
    finite = np.isfinite(logs)
    count = finite.sum(axis=0)
    mean = np.where(finite, logs, 0.0).sum(axis=0) / np.maximum(count, 1)  # nanmean without its warning
    return lags[:n], np.where(count > 0, 10 ** mean, np.nan)


def plot_decay_curves(settings: Sequence[Setting], path: Path, curve: str = DEFAULT_CURVE,
                      title: str = "") -> Path | None:
    plt = _pyplot()
    colors = _colors(settings)
    used = {s.label: setting_curves(s, curve) for s in settings}
    has = [s for s in settings if used[s.label]]  # a setting without this curve (an RNN's c_l0) is left out
    if not has:
        return None
    facets = _facets(has)
    fig, axes = plt.subplots(1, len(facets), figsize=(4.2 * len(facets) + 1.5, 3.6), squeeze=False)
    key_of = lambda p: curve_key(p, curve)  # noqa: E731
    for ax, facet in zip(axes[0], facets):
        task_lag = None
        for s in has:
            if (s.task, s.seq_len) != facet:
                continue
            for at, style in (("init", "--"), ("final", "-")):
                runs = s.runs if at == "init" else s.finished
                res = _mean_log_curve(runs, key_of, at)
                if res is None:
                    continue
                lags, g = res
                other = [k for k in used[s.label] if k != curve]  # the default's stand-in (coRNN: y_l0)
                label = s.label + (f" ({', '.join(other)})" if other else "")
                ax.plot(lags, g, style, color=colors[s.label], lw=1.4 if at == "final" else 1.0,
                        label=label if at == "final" or not s.finished else None)
            for r in s.runs:
                if r.probe is not None and "task_lag" in r.probe:
                    task_lag = int(r.probe["task_lag"])
        if task_lag is not None:
            ax.axvline(task_lag, color="0.6", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("lag k = τ − t")
        ax.set_title(_facet_title(facet, facets))
        ax.grid(True, which="major", alpha=0.3)
    states = {k.split("_")[0] for s in has for k in used[s.label]}
    state = states.pop() if len(states) == 1 else "state"
    axes[0][0].set_ylabel(f"||dL/d{state}(τ−k)|| / ||dL/d{state}(τ)||")
    _finish(plt, fig, axes[0], path, title, "gradient through time (dashed: step 0, solid: end; "
                 "geometric mean over seeds)")
    return path


def _finish(plt, fig, top_axes, path: Path, title: str, what: str) -> None:
    """The ending every report figure shares: one legend beside the panels, the title, save, close."""
    handles, labels = _legend_items(top_axes)
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle((title + ": " if title else "") + what, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _legend_items(axes):
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen.keys())


def _series(runs: Sequence[Run], key: str, spread: bool = False):
    """Mean over runs of metric ``key`` at each step that any of them reached (and min, max)."""
    by_step: dict[int, list[float]] = {}
    for r in runs:
        for row in r.metrics:
            v = _num(row.get(key))
            if "step" in row and math.isfinite(v):
                by_step.setdefault(int(row["step"]), []).append(v)
    steps = np.asarray(sorted(by_step), dtype=np.int64)
    mean = np.asarray([np.mean(by_step[s]) for s in steps])
    if not spread:
        return steps, mean
    return steps, mean, np.asarray([min(by_step[s]) for s in steps]), np.asarray([max(by_step[s]) for s in steps])


LEARNING_ROWS = [("eval/loss", "eval loss"), ("train/grad_norm", "gradient norm (pre-clip)")]


def _has_values(runs: Sequence[Run], key: str) -> bool:
    """Whether any run has a finite ``key`` to draw (a diverged run's last finite gradient norm counts)."""
    for r in runs:
        if any(math.isfinite(_num(row.get(key))) for row in r.metrics):
            return True
        if key == "train/grad_norm" and r.summary.get("diverged_step") is not None \
                and math.isfinite(_num(r.summary.get("last_finite_grad_norm"))):
            return True
    return False


def learning_rows(runs: Sequence[Run]) -> list[tuple[str, str]]:
    """The (metric, axis label) rows of learning_curves.png that some run has values for."""
    return [(key, name) for key, name in LEARNING_ROWS if _has_values(runs, key)]


def plot_learning_curves(settings: Sequence[Setting], path: Path, title: str = "") -> Path | None:
    """Eval loss and pre-clip gradient norm against step; a row only where some run logged it (a run
    shorter than ``log_every`` has no gradient norms), a panel only for a (task, T) with data."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    colors = _colors(settings)
    rows = learning_rows([r for s in settings for r in s.runs])
    facets = [f for f in _facets(settings)
              if any(_has_values([r for s in settings if (s.task, s.seq_len) == f for r in s.runs], key)
                     for key, _ in rows)]
    if not rows or not facets:
        return None
    fig, axes = plt.subplots(len(rows), len(facets), figsize=(4.2 * len(facets) + 1.5, 3.0 * len(rows) + 0.5),
                             squeeze=False, sharex="col")
    for j, facet in enumerate(facets):
        baselines = set()
        for s in settings:
            if (s.task, s.seq_len) != facet:
                continue
            c = colors[s.label]
            for (key, _), ax in zip(rows, axes[:, j]):
                steps, y, lo, hi = _series(s.finished, key, spread=True)
                if len(steps):  # few evaluations (one, for steps=0) are dots on the line: where it was measured
                    ax.plot(steps, y, "-", color=c, lw=1.4, label=s.label, marker="o" if len(steps) <= 12 else None,
                            ms=3)
                    if len(s.finished) > 1:
                        ax.fill_between(steps, lo, hi, color=c, alpha=0.15, lw=0)
                for r in s.runs:
                    if r.finished:
                        continue
                    st, yr = _series([r], key)
                    # where it stopped: the step it diverged at (with its last finite gradient
                    # norm), else its last evaluation
                    stop = r.summary.get("diverged_step")
                    last_norm = _num(r.summary.get("last_finite_grad_norm"))
                    if key == "train/grad_norm" and stop is not None and math.isfinite(last_norm):
                        st, yr = np.append(st, stop), np.append(yr, last_norm)
                    if len(st):
                        ax.plot(st, yr, ":", color=c, lw=1.0, label=s.label if not s.finished else None)
                        ax.plot([stop if stop is not None else st[-1]], yr[-1:], "x", color=c, ms=7)
            for r in s.runs:
                if isinstance(r.summary.get("baseline"), (int, float)):
                    baselines.add(float(r.summary["baseline"]))
        top = axes[0][j]
        if rows[0][0] == "eval/loss":
            for b in sorted(baselines):
                top.axhline(b, color="k", ls="--", lw=0.9, label="baseline")
        top.set_title(_facet_title(facet, facets))
        axes[-1][j].set_xlabel("training step")
        for ax in axes[:, j]:
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for (_, name), ax in zip(rows, axes[:, 0]):
        ax.set_ylabel(name)
    _finish(plt, fig, axes[0], path, title, "learning curves (mean and min-max band over finished seeds; "
                 "dotted: each failed/diverged/unfinished run, x = where it stopped)")
    return path


PROBE_PANELS = [("half_life", "half-life (steps)"), ("horizon", "horizon (lags)"), ("gain", "gain γ per step"),
                ("lyapunov_max", "top Lyapunov exponent λ1")]


def plot_probe_vs_seq_len(rows: Sequence[dict], path: Path, colors: dict, title: str = "") -> Path | None:
    plt = _pyplot()
    drawn = lambda r, k: any(r[k + at][2] and math.isfinite(r[k + at][0]) for at in ("_init", ""))  # noqa: E731
    panels = [(k, name) for k, name in PROBE_PANELS if any(drawn(r, k) for r in rows)]  # no empty panels
    have = [r for r in rows if any(drawn(r, k) for k, _ in panels)]
    if not have:
        return None
    seq_lens = sorted({_num(r["seq_len"]) for r in have})
    by_seq_len = len(seq_lens) > 1
    labels = list(dict.fromkeys(r["label"] for r in have))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.5, 3.4), squeeze=False)
    for ax, (key, name) in zip(axes[0], panels):
        for lab in labels:
            mine = sorted((r for r in have if r["label"] == lab), key=lambda r: _num(r["seq_len"]))
            for at, style, fill in (("_init", "--", "none"), ("", "-", None)):
                xs, ms, ss = [], [], []
                for r in mine:
                    m, s, n = r[key + at]
                    if n and math.isfinite(m):  # categories: step 0 just left of the end
                        xs.append(_num(r["seq_len"]) if by_seq_len else labels.index(lab) + (-0.12 if at else 0.12))
                        ms.append(m)
                        ss.append(s if math.isfinite(s) else 0.0)
                if xs:
                    ax.errorbar(xs, ms, yerr=ss, fmt="o" + style, color=colors.get(lab), mfc=fill,
                                ms=5, lw=1.2, capsize=2, label=lab if not at else None)
        ax.set_title(name, fontsize=9)
        if by_seq_len:
            ax.set_xlabel("seq_len T")
            ax.set_xscale("log")
            ax.set_xticks(seq_lens, [f"{t:g}" for t in seq_lens])
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        if key == "gain":
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
        if key == "lyapunov_max":
            ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
        ax.grid(True, alpha=0.3)
    _finish(plt, fig, axes[0], path, title, "probe summaries (hollow/dashed: step 0, filled: end; "
                 "mean ± std over seeds; ∞ half-lives not drawn)")
    return path
