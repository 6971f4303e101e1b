"""Figures of a run's probes (matplotlib, Agg backend; no display needed).

(A task without time, one lag, gets only the last two.)

probe_curves.png   g(k) against the lag on a log axis and g(k)/g(0) (two rows per state kind),
                   one column per layer (at most four of a deep stack: the first, the last
                   and two between), at most eight probe times coloured by training
                   step (colour bar), the last probe's quartile band, the task's lag marked
probe_heatmap.png  log10 g over lag (y) x training step (x), one panel per shown key (after
                   Vorontsov et al. 2017, fig. 3); grey cells: g = 0, the gradient underflowed
                   (below the float range, a vanishing too deep to measure)
probe_depth.png    models with more than one layer: the depth axis. ||dL/ds_l|| at lag 0 against
                   the layer l, raw and normalized by the last layer, and the per-layer
                   parameter-gradient norm ||dL/dtheta_l||, probe times coloured by step
probe_grid.png     stacked recurrent models (more than one layer and one lag): log10 g over
                   layer x lag for the first and the last probe (and one between), with the
                   fitted gain along each axis beside the map: per layer along the lag (right),
                   per lag along the depth (top)

Titles name the task, the model and T only (``figure_title``). Where the run has a mean-field
block (``ProbeHistory.theory``, seqlab.theory.beside), the predicted curve at init is a dashed
black line on the time curves of layer 0 and on the depth curves, stopped where float32 could no
longer measure it (below 1.2e-38: seqlab.theory.overlay), and every figure's note says the
predicted gain beside the measured one, or why there is no prediction.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..files import save_figure
from ..theory.overlay import measurable
from .history import ProbeHistory

CURVES_PNG, HEATMAP_PNG, DEPTH_PNG, GRID_PNG = "probe_curves.png", "probe_heatmap.png", "probe_depth.png", "probe_grid.png"
MAX_PROBES_SHOWN = 8
MAX_LAYERS_SHOWN = 4
UNDERFLOW_COLOR = "0.75"
UNDERFLOW_LABEL = "g = 0: underflowed (below the float range)"


def figure_title(task: str, model: str | None = None, seq_len: int | None = None, n_layers: int | None = None) -> str:
    """'adding, rnn x 8 layers, T=200': what was probed, never the run's other overrides (pass
    seq_len=None for a task without time)."""
    parts = [task]
    if model:
        parts.append(model + (f" x {n_layers} layers" if n_layers and n_layers > 1 else ""))
    if seq_len is not None:
        parts.append(f"T={seq_len}")
    return ", ".join(parts)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def shown_probes(n: int, most: int = MAX_PROBES_SHOWN) -> list[int]:
    """Indices of at most ``most`` probe times, evenly spaced, always the first and the last."""
    if n <= most:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, most).round().astype(int).tolist()))


def shown_layers(n: int, most: int = MAX_LAYERS_SHOWN) -> list[int]:
    """At most ``most`` layers of a stack: the first, the last and evenly spaced ones between."""
    return shown_probes(n, most)


def shown_keys(history: ProbeHistory) -> list[str]:
    layers = shown_layers(history.n_layers)
    return [f"{state}_l{i}" for i in layers for state in history.states]


def _positive(g: np.ndarray) -> np.ndarray:
    """nan where g <= 0 (a log axis cannot show 0: underflow)."""
    g = np.asarray(g, dtype=np.float64)
    return np.where(g > 0, g, np.nan)


def _log10(g: np.ndarray) -> np.ndarray:
    g = np.asarray(g, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(g > 0, np.log10(np.where(g > 0, g, 1.0)), np.nan)


def _step_colors(plt, steps: list[int]):
    from matplotlib import colors

    norm = colors.Normalize(vmin=min(steps), vmax=max(max(steps), min(steps) + 1))
    cmap = plt.get_cmap("viridis")
    return norm, cmap


def _step_colorbar(plt, fig, axes, norm, cmap) -> None:
    from matplotlib import cm

    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="training step", shrink=0.9)


def _underflow_handle():
    from matplotlib.patches import Patch

    return Patch(facecolor=UNDERFLOW_COLOR, edgecolor="0.4", label=UNDERFLOW_LABEL)


def _finish(plt, fig, path, title: str, note: str = "") -> Path:
    import textwrap

    if title:
        width = max(40, int(fig.get_figwidth() * 15))  # characters that fit across the figure at 9 pt
        fig.suptitle("\n".join([title, *textwrap.wrap(note, width)]), fontsize=9)
    try:
        save_figure(fig, path, dpi=110)  # atomically, never through a link (seqlab.files)
    finally:
        plt.close(fig)
    return Path(path)


THEORY_STYLE = dict(color="k", ls="--", lw=1.1)
THEORY_LABEL = "mean-field at init (to float32's floor)"  # seqlab.theory.overlay.measurable stops the line there


def _theory(history: ProbeHistory, axis: str) -> tuple[np.ndarray | None, str]:
    """(predicted curve normalized, or None; the one-line text) of ``history.theory``'s ``axis``,
    for the probe at init (the first one, step 0); ('', None) when the run has no theory block."""
    from ..theory.beside import theory_line

    block = history.theory
    if not block:
        return None, ""
    text = theory_line(block, axis, "layer" if axis == "depth" else "step")
    pred = block.get(axis) or {}
    if "curve" not in pred or not len(history) or history.steps[0] != block.get("step", 0):
        return None, text
    curve = np.array([float(x) if isinstance(x, (int, float)) else np.nan for x in pred["curve"]])
    return curve, text


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _key_label(key: str) -> str:
    state, layer = key.rsplit("_l", 1)
    return f"{state}, layer {layer}"


def plot_curves(history: ProbeHistory, path: str | Path, title: str = "") -> Path:
    """Decay curves g(k) and g(k)/g(0) against the lag, a subset of probe times coloured by step:
    one column per shown layer, two rows (raw, normalized) per state kind."""
    plt = _pyplot()
    layers, states, lags, steps = shown_layers(history.n_layers), history.states, history.lags, history.steps
    idx = shown_probes(len(steps))
    norm, cmap = _step_colors(plt, steps)
    theory, theory_note = _theory(history, "time")
    fig, axes = plt.subplots(2 * len(states), len(layers), figsize=(3.9 * len(layers) + 1.4, 2.9 * 2 * len(states)),
                             squeeze=False, sharex=True, layout="constrained")
    for s, state in enumerate(states):
        for j, layer in enumerate(layers):
            key = f"{state}_l{layer}"
            raw, rel = axes[2 * s, j], axes[2 * s + 1, j]
            means = history.means(key)  # (P, K)
            for i in idx:
                g = means[i]
                color = cmap(norm(steps[i]))
                raw.plot(lags, _positive(g), color=color, lw=1.2, label=f"step {steps[i]}")
                rel.plot(lags, _positive(g / g[0]) if g[0] > 0 else np.full_like(g, np.nan), color=color, lw=1.2)
            q25, q75 = history.series(f"q25_{key}"), history.series(f"q75_{key}")
            if q25 is not None and q75 is not None:
                raw.fill_between(lags, _positive(q25[-1]), _positive(q75[-1]), color=cmap(norm(steps[-1])),
                                 alpha=0.25, lw=0, label=f"quartiles, step {steps[-1]}")
            if key == "h_l0" and theory is not None and len(theory) == len(lags) and means[0][0] > 0:
                shown = measurable(theory, means[0][0])  # only where a float32 measurement could follow
                raw.plot(lags, _positive(means[0][0] * shown), **THEORY_STYLE, label=THEORY_LABEL)
                rel.plot(lags, _positive(shown), **THEORY_STYLE)
            for ax in (raw, rel):
                ax.axvline(history.task_lag, color="0.4", ls=":", lw=0.9, label=f"task lag {history.task_lag}")
                ax.set_yscale("log")
            raw.set_title(_key_label(key), fontsize=9)
            if j == 0:
                raw.set_ylabel(f"g(k) = mean ||dL/d{state}_(tau-k)||", fontsize=8)
                rel.set_ylabel("g(k) / g(0)", fontsize=8)
            if s == len(states) - 1:
                rel.set_xlabel("lag k = tau - t")
            if s == 0 and j == 0:
                handles, labels = raw.get_legend_handles_labels()
                keep = [(h, lbl) for h, lbl in zip(handles, labels) if not lbl.startswith("step") or len(idx) == 1]
                raw.legend(*zip(*keep), fontsize=7)
    if len(idx) > 1:
        _step_colorbar(plt, fig, axes, norm, cmap)
    note = f"{len(idx)} of {len(steps)} probes"
    if history.n_layers > len(layers):
        note += f"; layers {', '.join(map(str, layers))} of {history.n_layers} (all layers: probe_grid.png)"
    return _finish(plt, fig, path, title, _join(note, theory_note))


def _step_edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges along the training-step axis: midpoints between probes, clipped to the span
    that was trained (the first cell starts at the first probe, never at a negative step)."""
    if len(steps) == 1:  # one probe: one cell centred on it
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mid = (steps[1:] + steps[:-1]) / 2
    return np.concatenate([[steps[0]], mid, [steps[-1]]])


def _magma():
    import matplotlib

    return matplotlib.colormaps["magma"].with_extremes(bad=UNDERFLOW_COLOR)


def plot_heatmap(history: ProbeHistory, path: str | Path, title: str = "") -> Path:
    """log10 g over lag (y) and training step (x): one column per shown layer, one row per state kind."""
    plt = _pyplot()
    layers, states, lags = shown_layers(history.n_layers), history.states, history.lags
    steps = np.asarray(history.steps, dtype=float)
    fig, axes = plt.subplots(len(states), len(layers), figsize=(4.6 * len(layers), 3.6 * len(states)), squeeze=False,
                             layout="constrained")
    lag_edges = np.append(lags, lags[-1] + 1) - 0.5
    step_edges = _step_edges(steps)
    any_underflow = False
    for s, state in enumerate(states):
        for j, layer in enumerate(layers):
            ax, key = axes[s, j], f"{state}_l{layer}"
            z = _log10(history.means(key).T)  # (K, P)
            any_underflow |= bool(np.isnan(z).any())
            mesh = ax.pcolormesh(step_edges, lag_edges, np.ma.masked_invalid(z), shading="flat", cmap=_magma())
            ax.axhline(history.task_lag, color="w", ls="--", lw=0.8)
            ax.set_xlim(step_edges[0], step_edges[-1])
            # each cell spans halfway to the neighbouring probes: mark where the probes were taken
            ax.plot(steps, np.full(len(steps), lag_edges[-1]), **_probe_marks(len(steps)), color="c", clip_on=False,
                    zorder=5)
            if len(steps) <= 6:
                ax.set_xticks(steps, [f"{x:g}" for x in steps])
            ax.set_xlabel("training step")
            ax.set_ylabel("lag k")
            ax.set_title(_key_label(key), fontsize=9)
            fig.colorbar(mesh, ax=ax, label="log10 g(k)")
    _map_legend(fig, history.task_lag, any_underflow, probes=len(steps))
    return _finish(plt, fig, path, title, _join(_theory(history, "time")[1], _theory(history, "depth")[1]))


PROBE_MARKS_TICKS = 12  # more probes than this are marked by thin ticks (triangles would merge into a bar)


def _probe_marks(n: int) -> dict:
    """Marker style for ``n`` probe marks along a step axis: triangles for a few, thin ticks for many."""
    return dict(marker="v", ms=5, ls="") if n <= PROBE_MARKS_TICKS else dict(marker="|", ms=6, mew=0.8, ls="")


def _map_legend(fig, task_lag: int, underflow: bool, probes: int = 0) -> None:
    """The heat maps' legend, under the panels (never on the data): the task's lag line, what a grey
    cell means where there is one, and (``probes``: how many) where the probes were taken."""
    from matplotlib.lines import Line2D

    handles = ([_underflow_handle()] if underflow else []) + [
        Line2D([], [], color="0.3", ls="--", lw=0.8, label=f"task lag {task_lag} (white dashes)")]
    if probes:
        handles.append(Line2D([], [], color="c", **_probe_marks(probes),
                              label=f"{probes} probe{'s' if probes > 1 else ''} taken (cell: to the midpoints)"))
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncol=len(handles), frameon=False)


def plot_depth(history: ProbeHistory, path: str | Path, title: str = "") -> Path | None:
    """The depth axis: g(l) at lag 0 per state kind, g(l)/g(last), and ||dL/dtheta_l||."""
    if history.n_layers < 2:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    steps, NL, states = history.steps, history.n_layers, history.states
    idx = shown_probes(len(steps))
    norm, cmap = _step_colors(plt, steps)
    grads = history.series("param_grad_norm")  # (P, G) or None (an old file)
    n_panels = len(states) + 1 + (grads is not None)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.3 * n_panels + 1.2, 3.9), squeeze=False, layout="constrained")
    axes = axes[0]
    layers = np.arange(NL)
    theory, theory_note = _theory(history, "depth")
    for ax, state in zip(axes, states):
        g = history.depth_curve(state, "lag0")  # (P, NL)
        for i in idx:
            ax.plot(layers, _positive(g[i]), "o-", ms=3, color=cmap(norm(steps[i])), lw=1.2)
        q25, q75 = (history.grid(state, s)[-1, :, 0] for s in ("q25", "q75"))
        ax.fill_between(layers, _positive(q25), _positive(q75), color=cmap(norm(steps[-1])), alpha=0.2, lw=0)
        gain = history.series(f"depth_gain_{state}_lag0")
        att = history.series(f"depth_attenuation_decades_{state}_lag0")
        under = history.series(f"depth_underflow_layer_{state}_lag0")
        if gain is not None:
            text = f"last probe: gain {gain[-1]:.3g} per layer\n{att[-1]:.3g} decades, layer {NL - 1} -> 0"
            if under[-1] >= 0:
                text += f"\nunderflow at layer {int(under[-1])}"
            ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=7)
        if state == "h" and theory is not None and len(theory) == NL and g[0, -1] > 0:
            shown = measurable(theory, g[0, -1], from_end=True)
            ax.plot(layers, _positive(g[0, -1] * shown), **THEORY_STYLE, label=THEORY_LABEL)
            ax.legend(fontsize=7, loc="lower right")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"||dL/d{state}_l|| at the loss step (lag 0)", fontsize=9)
        ax.set_ylabel(f"mean ||dL/d{state}^(l)_tau||")
    ax = axes[len(states)]
    lag0, total = history.depth_curve(states[0], "lag0"), history.depth_curve(states[0], "total")
    for i in idx:
        color = cmap(norm(steps[i]))
        if lag0[i, -1] > 0:
            ax.plot(layers, _positive(lag0[i] / lag0[i, -1]), "o-", ms=3, color=color, lw=1.2)
        if total is not None and total[i, -1] > 0:
            ax.plot(layers, _positive(total[i] / total[i, -1]), ":", color=color, lw=1.0)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="k", marker="o", ms=3, label="lag 0"),
               Line2D([], [], color="k", ls=":", label="all steps (total)")]
    if theory is not None and len(theory) == NL and lag0[0, -1] > 0:
        ax.plot(layers, _positive(measurable(theory, lag0[0, -1], from_end=True)), **THEORY_STYLE)
        handles.append(Line2D([], [], **THEORY_STYLE, label=THEORY_LABEL))
    ax.legend(handles=handles, fontsize=7)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"normalized: g(l) / g(layer {NL - 1})", fontsize=9)
    if grads is not None:
        from .gradient import group_layer

        ax = axes[-1]
        groups = history.param_groups
        x = np.array([group_layer(name, NL) for name in groups])
        order = np.argsort(x, kind="stable")
        for i in idx:
            ax.plot(x[order], _positive(grads[i][order]), "s-", ms=3, color=cmap(norm(steps[i])), lw=1.2)
        ax.set_xticks(x[order], [name if not name.startswith("l") or not name[1:].isdigit() else name[1:]
                                 for name in np.asarray(groups)[order]], fontsize=7,
                      rotation=90 if len(groups) > 9 else 0)
        ax.set_yscale("log")
        ax.set_title("parameter gradient of layer l", fontsize=9)
        ax.set_ylabel("||dL/dtheta_l||")
    for ax in axes:
        ax.set_xlabel("layer l (0 = next to the input)")
    if len(idx) > 1:
        _step_colorbar(plt, fig, list(axes), norm, cmap)
    return _finish(plt, fig, path, title, _join(f"{len(idx)} of {len(steps)} probes; band: quartiles of the last probe",
                                                theory_note))


def plot_grid(history: ProbeHistory, path: str | Path, title: str = "", probes: list[int] | None = None) -> Path | None:
    """log10 g over layer x lag for a few probe times (default: first, middle, last), with the
    fitted gain along the lag per layer (right strip) and along the depth per lag (top strip)."""
    if history.n_layers < 2 or len(history.lags) < 2 or not len(history):
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    P, NL, lags, states = len(history), history.n_layers, history.lags, history.states
    probes = probes if probes is not None else shown_probes(P, 3)
    grids = {state: _log10(history.grid(state)) for state in states}  # (P, NL, K)
    finite = np.concatenate([grids[s][probes][np.isfinite(grids[s][probes])] for s in states])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
    fig = plt.figure(figsize=(6.6 * len(states), 4.6 * len(probes) + 0.5), layout="constrained")
    subfigs = np.atleast_2d(fig.subfigures(len(probes), len(states), squeeze=False))
    layer_edges = np.arange(NL + 1) - 0.5
    lag_edges = np.append(lags, lags[-1] + 1) - 0.5
    any_underflow = False
    for r, i in enumerate(probes):
        for c, state in enumerate(states):
            sub = subfigs[r, c]
            spec = sub.add_gridspec(2, 3, height_ratios=[1, 3.6], width_ratios=[5, 1.1, 0.22])
            ax = sub.add_subplot(spec[1, 0])
            top = sub.add_subplot(spec[0, 0], sharex=ax)
            right = sub.add_subplot(spec[1, 1], sharey=ax)
            cax = sub.add_subplot(spec[1, 2])
            z = grids[state][i]  # (NL, K)
            mesh = ax.pcolormesh(lag_edges, layer_edges, np.ma.masked_invalid(z), shading="flat", cmap=_magma(),
                                 vmin=vmin, vmax=vmax)
            ax.axvline(history.task_lag, color="w", ls="--", lw=0.8)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("lag k = tau - t")
            ax.set_ylabel("layer l")
            sub.colorbar(mesh, cax=cax, label="log10 g")
            sub.suptitle(f"log10 ||dL/d{state}^(l)_(tau-k)||, step {history.steps[i]}", fontsize=9)
            time_gain = np.array([float(history.rows[i].get(f"gain_{state}_l{layer}", np.nan)) for layer in range(NL)])
            right.plot(time_gain, np.arange(NL), "o-", ms=3, color="C0")
            right.axvline(1.0, color="0.5", lw=0.6)
            right.set_xlabel("gain/step\n(along lag)", fontsize=7)
            right.tick_params(labelleft=False, labelsize=7)
            depth_gain = history.rows[i].get(f"depth_gain_by_lag_{state}")
            if depth_gain is not None:
                top.plot(lags, depth_gain, color="C1", lw=1.0)
            top.axhline(1.0, color="0.5", lw=0.6)
            top.set_ylabel("gain/layer\n(along depth)", fontsize=7)
            top.tick_params(labelbottom=False, labelsize=7)
            any_underflow |= bool(np.isnan(z).any())
    _map_legend(fig, history.task_lag, any_underflow)
    return _finish(plt, fig, path, title, _join("right: the lag fit's gain per step, layer by layer; "
                   "top: the depth fit's gain per layer (from the last layer down), lag by lag",
                   _theory(history, "time")[1], _theory(history, "depth")[1]))


def write_plots(history: ProbeHistory, run_dir: str | Path, title: str = "") -> list[Path]:
    """Every figure that applies into ``run_dir``; returns their paths. A task without time (one
    lag: a feedforward net on random labels) has no lag axis, so no curves or heat map against it."""
    run_dir = Path(run_dir)
    paths = []
    if len(history.lags) > 1:
        paths += [plot_curves(history, run_dir / CURVES_PNG, title), plot_heatmap(history, run_dir / HEATMAP_PNG, title)]
    paths += [plot_depth(history, run_dir / DEPTH_PNG, title), plot_grid(history, run_dir / GRID_PNG, title)]
    return [p for p in paths if p is not None]
