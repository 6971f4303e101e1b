"""Figures: decay curves, learning curves and probe summaries against seq_len (matplotlib, imported lazily)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seqlab.files import save_figure
from seqlab.report.runs import DEFAULT_CURVE, Run, Setting, _num
from seqlab.report.stats import curve_key, probe_index, setting_curves
from seqlab.theory.overlay import CAPTION as THEORY_CAPTION, LABEL as THEORY_LABEL, geometric_mean, measurable, run_theory

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


# At most this many settings share one panel: a comparison of more (the README's 25 remedies) is split
# into panels of one cell family each where that fits, so every line has a colour and a marker of its own.
PANEL_LINES = 8
MAX_COLUMNS = 4
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _family(s: Setting) -> str:
    return str(s.items.get("model") or s.items.get("task") or "")


def panel_groups(settings: Sequence[Setting], most: int = PANEL_LINES) -> list[list[Setting]]:
    """``settings`` in panels of at most ``most``: each cell family (the model option) together when it
    fits, small families sharing a panel, a large family split evenly; order kept. Nothing is dropped."""
    families: dict[str, list[Setting]] = {}
    for s in settings:
        families.setdefault(_family(s), []).append(s)
    groups: list[list[Setting]] = []
    for members in families.values():
        if len(members) > most:  # split evenly: 15 -> 8 + 7, not 8 + 7 by accident of order only
            n = math.ceil(len(members) / most)
            size = math.ceil(len(members) / n)
            groups += [members[i:i + size] for i in range(0, len(members), size)]
        elif groups and len(groups[-1]) + len(members) <= most and len(groups[-1]) < most:
            groups[-1] = groups[-1] + members
        else:
            groups.append(list(members))
    return groups


def display_labels(settings: Sequence[Setting]) -> dict[str, str]:
    """Legend text: a setting's label without what another key already says (``model=rnn`` beside
    ``remedy=rnn_tanh``), and without the key when a single key is left (``rnn_tanh``)."""
    out = {}
    for s in settings:
        parts = s.label.split(" ")
        if any(p.startswith("remedy=") for p in parts):
            parts = [p for p in parts if not p.startswith("model=")]
        if len(parts) == 1 and "=" in parts[0]:
            parts = [parts[0].split("=", 1)[1]]
        out[s.label] = " ".join(parts)
    return out


def styles(group: Sequence[Setting]) -> dict[str, dict]:
    """Colour and marker per setting of one panel (tab10 and a marker each: at most PANEL_LINES)."""
    cmap = _pyplot().get_cmap("tab10")
    return {s.label: {"color": cmap(i % 10), "marker": MARKERS[i % len(MARKERS)]} for i, s in enumerate(group)}


def panel_grid(plt, n_panels: int, rows: int = 1, legend_lines: int = 0, width: float = 4.4,
               height: float = 3.0, columns: int = MAX_COLUMNS, sharex: bool = False):
    """A figure of ``n_panels`` panels, ``columns`` to a row; each panel ``rows`` axes high with a legend
    strip of ``legend_lines`` lines under it. The size follows the content. Returns (fig, [(axes, legend
    axis or None) per panel])."""
    ncols = max(1, min(n_panels, columns))
    nrows = math.ceil(n_panels / ncols)
    legend_h = 0.17 * legend_lines + 0.1 if legend_lines else 0.0
    per = [height] * rows + ([legend_h] if legend_lines else [])
    fig = plt.figure(figsize=(width * ncols + 0.8, sum(per) * nrows + 0.9), layout="constrained")
    grid = fig.add_gridspec(len(per) * nrows, ncols, height_ratios=per * nrows)
    panels = []
    for i in range(n_panels):
        r, c = divmod(i, ncols)
        axes = []
        for k in range(rows):
            axes.append(fig.add_subplot(grid[r * len(per) + k, c], sharex=axes[0] if sharex and axes else None))
        legend_ax = None
        if legend_lines:
            legend_ax = fig.add_subplot(grid[r * len(per) + rows, c])
            legend_ax.axis("off")
        panels.append((axes, legend_ax))
    return fig, panels


def legend_columns(labels: Sequence[str]) -> int:
    return 2 if max((len(x) for x in labels), default=0) <= 26 else 1


def panel_legend(legend_ax, axes) -> None:
    """The panel's own legend, in the strip under it (never on the data)."""
    handles, labels = _legend_items(axes)
    if legend_ax is not None and handles:
        legend_ax.legend(handles, labels, loc="upper center", ncol=legend_columns(labels), fontsize=7,
                         frameon=False, borderaxespad=0.0, handlelength=2.6)


def legend_lines(groups: Sequence[Sequence[str]]) -> int:
    """Lines the tallest panel legend needs (labels of each panel)."""
    return max((math.ceil(len(g) / legend_columns(g)) for g in groups), default=0)


def _save(plt, fig, path: Path, title: str, what: str) -> None:
    fig.suptitle((title + ": " if title else "") + what, fontsize=9)
    save_figure(fig, path, dpi=110, bbox_inches="tight")  # atomically, never through a link
    plt.close(fig)


def _facets(settings: Sequence[Setting]) -> list[tuple[str, Any]]:
    """One panel per (task, seq_len), in order."""
    facets = sorted({(s.task, s.seq_len) for s in settings}, key=lambda f: (f[0], _num(f[1])))
    return facets


def _facet_title(facet, facets) -> str:
    task, T = facet
    multi_task = len({f[0] for f in facets}) > 1
    return (f"{task}, " if multi_task else "") + f"T = {T}"


def facet_panels(settings: Sequence[Setting], keep=lambda s: True) -> list[tuple[str, list[Setting]]]:
    """(title, settings) per panel: a panel per (task, T), split into PANEL_LINES-sized groups."""
    facets = _facets(settings)
    out = []
    for facet in facets:
        mine = [s for s in settings if (s.task, s.seq_len) == facet and keep(s)]
        groups = panel_groups(mine)
        for group in groups:
            title = _facet_title(facet, facets)
            if len(groups) > 1:
                fams = list(dict.fromkeys(_family(s) for s in group))
                title += ": " + ", ".join(fams)
                split = [g for g in groups if [_family(x) for x in g] == [_family(x) for x in group][:1] * len(g)]
                if len(fams) == 1 and len(split) > 1:  # one family over several panels: which part
                    title += f" ({split.index(group) + 1} of {len(split)})"
            out.append((title, group))
    return out


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
    # the geometric mean only where every seed has a number: past the lag where one seed underflowed,
    # a mean of the others would bend the curve up (a kink that is no measurement)
    every = np.isfinite(logs).all(axis=0)
    mean = np.where(every[None, :], logs, 0.0).mean(axis=0)
    return lags[:n], np.where(every, 10 ** mean, np.nan)


def _trained(runs: Sequence[Run]) -> bool:
    """Whether any run has a probe after step 0 (else 'end' is 'step 0' and is drawn once)."""
    for r in runs:
        p = r.probe
        if p is not None and "steps" in p and len(p["steps"]) and int(np.asarray(p["steps"])[-1]) > 0:
            return True
    return False


def setting_prediction(s: Setting, axis: str, ref_of) -> tuple[np.ndarray | None, list[float], str]:
    """The mean-field curve of a setting's probes at init (geometric mean over its seeds' theory blocks)
    and each seed's measured g at the curve's reference point (``ref_of(run)``: g(0), or g at the last
    layer; a string says why it cannot be used), or (None, [], why there is none)."""
    curves, refs, reasons = [], [], []
    for r in s.runs:
        c, why = run_theory(r, axis)
        ref = ref_of(r) if c is not None else None
        if isinstance(ref, str):
            c, why = None, ref
        if c is None:
            reasons.append(why)
            continue
        curves.append(c)
        refs.append(ref)
    pred = geometric_mean(curves)
    if pred is None:
        return None, [], reasons[0] if reasons else "the seeds' predicted curves differ in length"
    return pred, refs, ""


def _time_ref(key_of):
    """The measured g(0) of a run's probe at init, for the curve the figure draws (the prediction is
    for h_l0, the first layer's hidden state: another curve gets none)."""
    def ref(r: Run):
        p = r.probe
        key = key_of(p) if p is not None else None
        if key != "h_l0":
            return f"the prediction is for h_l0, the figure shows {key}"
        i = probe_index(p, "init")
        return float(np.asarray(p["mean_h_l0"][i], dtype=np.float64)[0])
    return ref


def draw_prediction(ax, x: np.ndarray, pred: np.ndarray, refs: Sequence[float], color, from_end: bool = False) -> bool:
    """The prediction as a dashed line in ``color``, stopped where float32 can no longer measure
    (``seqlab.theory.overlay.measurable``); whether anything was drawn."""
    shown = measurable(pred, refs, from_end=from_end)
    n = min(len(x), len(shown))
    if not np.isfinite(shown[:n]).any():
        return False
    ax.plot(x[:n], shown[:n], "--", color=color, lw=1.0, alpha=0.9, zorder=1.5)
    return True


def theory_notes(settings: Sequence[Setting], curve: str = DEFAULT_CURVE, time: bool = True,
                 depth_ref=None) -> list[str]:
    """The report's text on the dashed predictions: per axis drawn (``time``: decay_curves.png;
    ``depth_ref``: depth_curves.png's reference, None when that figure was not drawn), the settings
    that have one, and every reason why the others do not (grouped), so an absent line is never
    unexplained."""
    from seqlab.theory.overlay import NO_BLOCK

    refs = {"time": _time_ref(lambda p: curve_key(p, curve))} if time else {}
    if depth_ref is not None:
        refs["depth"] = depth_ref
    lines = []
    for axis, ref in refs.items():
        drawn, absent = [], {}
        for s in settings:
            if axis == "time" and (not setting_curves(s, curve) or all(
                    r.probe is None or len(r.probe.get("lags", [])) < 2 for r in s.runs)):
                continue  # not in decay_curves.png (the report says so), or no time axis (one lag)
            if axis == "depth" and all(isinstance(ref(r), str) and ref(r).startswith("no depth") for r in s.runs):
                continue  # no depth curve at all (a one-layer model): not in depth_curves.png
            pred, _, why = setting_prediction(s, axis, ref)
            if pred is not None:
                drawn.append(s.label)
            else:
                absent.setdefault(why, []).append(s.label)
        if not drawn and set(absent) <= {NO_BLOCK}:
            continue  # runs from before seqlab.theory: nothing to say beyond that the figures have no theory
        figure = "decay_curves.png" if axis == "time" else "depth_curves.png"
        text = f"Mean-field prediction at init ({axis}, dashed in {figure}): "
        text += f"drawn for {', '.join(drawn)}" if drawn else "drawn for no setting"
        if absent:
            text += "; absent for " + "; ".join(f"{', '.join(labels)} ({why})" for why, labels in absent.items())
        lines.append(text + ". The dashed line stops where float32 can no longer measure (g below 1.2e-38).")
    return lines


def theory_legend_entry(ax) -> None:
    """One legend entry for every dashed prediction of a panel (each is in its setting's colour)."""
    ax.plot([], [], "--", color="0.35", lw=1.0, label=THEORY_LABEL)


def plot_decay_curves(settings: Sequence[Setting], path: Path, curve: str = DEFAULT_CURVE,
                      title: str = "") -> Path | None:
    plt = _pyplot()
    used = {s.label: setting_curves(s, curve) for s in settings}
    has = [s for s in settings if used[s.label]]  # a setting without this curve (an RNN's c_l0) is left out
    if not has:
        return None
    trained = _trained([r for s in has for r in s.runs])
    names = display_labels(has)
    panels = facet_panels(has)
    key_of = lambda p: curve_key(p, curve)  # noqa: E731

    def label_of(s):
        other = [k for k in used[s.label] if k != curve]  # the default's stand-in (coRNN: y_l0)
        return names[s.label] + (f" ({', '.join(other)})" if other else "")

    predictions = {s.label: setting_prediction(s, "time", _time_ref(key_of)) for s in has}
    extra = [THEORY_LABEL] if any(p[0] is not None for p in predictions.values()) else []
    fig, grid = panel_grid(plt, len(panels), legend_lines=legend_lines([[label_of(s) for s in g] + extra
                                                                        for _, g in panels]))
    any_theory = False
    for (panel_title, group), (axes, legend_ax) in zip(panels, grid):
        ax = axes[0]
        style = styles(group)
        task_lag = None
        drawn = False
        for s in group:
            st = style[s.label]
            pred, refs, _ = predictions[s.label]
            if pred is not None:
                drawn |= draw_prediction(ax, np.arange(len(pred)), pred, refs, st["color"])
            for at, ls in (("init", ":"), ("final", "-")) if trained else (("init", "-"),):
                runs = s.runs if at == "init" else s.finished
                res = _mean_log_curve(runs, key_of, at)
                if res is None:
                    continue
                lags, g = res
                every = max(1, len(lags) // 6)
                ax.plot(lags, g, ls, color=st["color"], lw=1.4 if ls == "-" else 1.0, marker=st["marker"], ms=4,
                        markevery=(group.index(s) * max(1, every // len(group)) % every, every),
                        mfc="none" if ls == ":" else st["color"],
                        label=label_of(s) if ls == "-" or not s.finished else None)
            for r in s.runs:
                if r.probe is not None and "task_lag" in r.probe:
                    task_lag = int(r.probe["task_lag"])
        if drawn:
            theory_legend_entry(ax)
            any_theory = True
        if task_lag is not None:
            ax.axvline(task_lag, color="0.6", lw=0.8, ls="-.")
        ax.set_yscale("log")
        ax.set_xlabel("lag k = τ − t")
        ax.set_title(panel_title, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        panel_legend(legend_ax, axes)
    states = {k.split("_")[0] for s in has for k in used[s.label]}
    state = states.pop() if len(states) == 1 else "state"
    grid[0][0][0].set_ylabel(f"||dL/d{state}(τ−k)|| / ||dL/d{state}(τ)||")
    when = "dotted, hollow: step 0; solid: end" if trained else "at step 0"
    _save(plt, fig, path, title, f"gradient through time ({when}; geometric mean over seeds, drawn up to the "
          f"lag where a seed's gradient underflowed)"
          + (f"\n{THEORY_CAPTION}" if any_theory else ""))
    return path


def _finish(plt, fig, top_axes, path: Path, title: str, what: str) -> None:
    """The ending every report figure shares: one legend beside the panels, the title, save, close."""
    handles, labels = _legend_items(top_axes)
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle((title + ": " if title else "") + what, fontsize=9)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110, bbox_inches="tight")  # atomically, never through a link
    finally:
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


def has_training(runs: Sequence[Run]) -> bool:
    """Whether any run evaluated after step 0: a learning curve needs two points in time."""
    return any(int(row.get("step", 0)) > 0 for r in runs for row in r.metrics)


def plot_learning_curves(settings: Sequence[Setting], path: Path, title: str = "") -> Path | None:
    """Eval loss and pre-clip gradient norm against step; a row only where some run logged it (a run
    shorter than ``log_every`` has no gradient norms), a panel only for a (task, T) with data; no figure
    when no run trained (``steps=0``: one point per run is no curve)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    every_run = [r for s in settings for r in s.runs]
    rows = learning_rows(every_run)
    if not rows or not has_training(every_run):
        return None
    names = display_labels(settings)
    panels = facet_panels(settings, keep=lambda s: any(_has_values(s.runs, key) for key, _ in rows))
    if not panels:
        return None
    fig, grid = panel_grid(plt, len(panels), rows=len(rows), height=2.6, sharex=True,
                           legend_lines=legend_lines([[names[s.label] for s in g] for _, g in panels]))
    for (panel_title, group), (axes, legend_ax) in zip(panels, grid):
        style = styles(group)
        baselines = set()
        for s in group:
            c, m = style[s.label]["color"], style[s.label]["marker"]
            for (key, _), ax in zip(rows, axes):
                steps, y, lo, hi = _series(s.finished, key, spread=True)
                if len(steps):  # a marker per evaluation when there are few, else a few along the line
                    ax.plot(steps, y, "-", color=c, lw=1.4, label=names[s.label], marker=m, ms=3.5,
                            markevery=1 if len(steps) <= 12 else max(1, len(steps) // 6))
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
                        ax.plot(st, yr, ":", color=c, lw=1.0, label=names[s.label] if not s.finished else None)
                        ax.plot([stop if stop is not None else st[-1]], yr[-1:], "x", color=c, ms=7)
            for r in s.runs:
                if isinstance(r.summary.get("baseline"), (int, float)):
                    baselines.add(float(r.summary["baseline"]))
        if rows[0][0] == "eval/loss":
            for b in sorted(baselines):
                axes[0].axhline(b, color="k", ls="--", lw=0.9, label="baseline")
        axes[0].set_title(panel_title, fontsize=9)
        axes[-1].set_xlabel("training step")
        for ax, (_, name) in zip(axes, rows):
            ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(name, fontsize=8)
        for ax in axes[:-1]:
            ax.tick_params(labelbottom=False)
        panel_legend(legend_ax, axes)
    _save(plt, fig, path, title, "learning curves (mean and min-max band over finished seeds; "
          "dotted: each failed/diverged/unfinished run, x = where it stopped)")
    return path


PROBE_PANELS = [("half_life", "half-life (steps)"), ("horizon", "horizon (lags)"), ("gain", "gain γ per step"),
                ("lyapunov_max", "top Lyapunov exponent λ1")]


def _label_groups(labels: Sequence[str], most: int = PANEL_LINES) -> list[list[str]]:
    """Labels in groups of at most ``most`` (the family: the ``model=`` part of a label)."""
    fake = [Setting(items={"model": next((p[6:] for p in lab.split(" ") if p.startswith("model=")), "")},
                    label=lab) for lab in labels]
    return [[s.label for s in g] for g in panel_groups(fake, most)]


def plot_probe_vs_seq_len(rows: Sequence[dict], path: Path, colors: dict | None = None,
                          title: str = "", trained: bool = True) -> Path | None:
    """The probe's summaries per setting: against T when the settings span several T (a panel row per
    group of at most PANEL_LINES settings), else one row per setting, its label written out in full."""
    plt = _pyplot()
    drawn = lambda r, k: any(r[k + at][2] and math.isfinite(r[k + at][0]) for at in ("_init", ""))  # noqa: E731
    panels = [(k, name) for k, name in PROBE_PANELS if any(drawn(r, k) for r in rows)]  # no empty panels
    have = [r for r in rows if any(drawn(r, k) for k, _ in panels)]
    if not have:
        return None
    seq_lens = sorted({_num(r["seq_len"]) for r in have})
    labels = list(dict.fromkeys(r["label"] for r in have))
    names = display_labels([Setting(items={}, label=lab) for lab in labels])
    if len(seq_lens) > 1:
        _probe_against_T(plt, have, panels, labels, names, seq_lens, path, title)
    else:
        _probe_per_setting(plt, have, panels, labels, names, path, title, trained)
    return path


def _points(mine, key, at):
    xs, ms, ss = [], [], []
    for r in mine:
        m, s, n = r[key + at]
        if n and math.isfinite(m):
            xs.append(r)
            ms.append(m)
            ss.append(s if math.isfinite(s) else 0.0)
    return xs, ms, ss


def _probe_per_setting(plt, have, panels, labels, names, path, title, trained) -> None:
    """One T: a row per setting (its whole name on the y axis), a column per summary."""
    n = len(labels)
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels) + 2.4, 0.24 * n + 1.3), sharey=True,
                             squeeze=False, layout="constrained")
    y = {lab: n - 1 - i for i, lab in enumerate(labels)}  # first label on top
    for ax, (key, name) in zip(axes[0], panels):
        marks = (("_init", "none", 0.17, "C0"), ("", None, -0.17, "C3")) if trained else (("_init", None, 0.0, "C0"),)
        for at, fill, dy, color in marks:  # untrained: the step-0 probe is the last one, drawn once
            pts, ms, ss = _points(have, key, at)
            if pts:
                ax.errorbar(ms, [y[r["label"]] + dy for r in pts], xerr=ss, fmt="o", color=color,
                            mfc=fill, ms=4.5, lw=1.0, capsize=2, label="step 0" if at else "end")
        ax.set_title(name, fontsize=9)
        if key == "half_life":  # from under a step to thousands: a log axis
            ax.set_xscale("log")
        if key == "gain":
            ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
        if key == "lyapunov_max":
            ax.axvline(0.0, color="0.5", lw=0.8, ls=":")
        ax.grid(True, alpha=0.3)
        ax.set_ylim(-0.7, n - 0.3)
    axes[0][0].set_yticks([y[lab] for lab in labels], [names[lab] for lab in labels], fontsize=8)
    handles, leg = _legend_items(axes[0])
    if handles and trained:
        fig.legend(handles, leg, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    what = ("probe summaries (hollow, upper: step 0; filled, lower: end; mean ± std over seeds; "
            "∞ half-lives not drawn)" if trained else
            "probe summaries at step 0 (mean ± std over seeds; ∞ half-lives not drawn)")
    _save(plt, fig, path, title, what)


def _probe_against_T(plt, have, panels, labels, names, seq_lens, path, title) -> None:
    """Several T: a panel row per group of settings, a column per summary; x = T."""
    groups = _label_groups(labels)
    fig, grid = panel_grid(plt, len(groups) * len(panels), columns=len(panels), width=3.6, height=2.8,
                           legend_lines=legend_lines([[names[x] for x in g] for g in groups]))
    for gi, group in enumerate(groups):
        style = styles([Setting(items={}, label=lab) for lab in group])
        for pi, (key, name) in enumerate(panels):
            axes, legend_ax = grid[gi * len(panels) + pi]
            ax = axes[0]
            for lab in group:
                mine = sorted((r for r in have if r["label"] == lab), key=lambda r: _num(r["seq_len"]))
                for at, ls, fill in (("_init", "--", "none"), ("", "-", None)):
                    pts, ms, ss = _points(mine, key, at)
                    if pts:
                        ax.errorbar([_num(r["seq_len"]) for r in pts], ms, yerr=ss, fmt=style[lab]["marker"] + ls,
                                    color=style[lab]["color"], mfc=fill, ms=5, lw=1.2, capsize=2,
                                    label=names[lab] if not at else None)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("seq_len T")
            ax.set_xscale("log")
            ax.set_xticks(seq_lens, [f"{t:g}" for t in seq_lens])
            ax.minorticks_off()
            if key == "gain":
                ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
            if key == "lyapunov_max":
                ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
            ax.grid(True, alpha=0.3)
            if pi == 0:
                panel_legend(legend_ax, axes)
    _save(plt, fig, path, title, "probe summaries against T (hollow/dashed: step 0, filled: end; "
          "mean ± std over seeds; ∞ half-lives not drawn)")
