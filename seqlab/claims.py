"""Every textbook claim about vanishing gradients, on the axis where it is made.

    python -m seqlab.claims                          # list the claims and their presets
    python -m seqlab.claims sigmoid_bound            # run its sweeps, draw its figure, print its numbers
    python -m seqlab.claims all --out docs/figures/claims

A claim is one or two presets, ``conf/experiment/claim_{name}_depth.yaml`` (a feedforward
net or a stack of recurrent layers: the gradient against the layer l) and
``claim_{name}_time.yaml`` (a recurrent net: the gradient against the lag k). Each preset
is an ordinary sweep (``python -m seqlab -m +experiment=claim_...``); this command runs the
sweeps (into ``--root``, default ``multirun/claims/``; a sweep already there is read, not
rerun, unless ``--rerun``), reads the run directories back with ``seqlab.report`` and draws
one figure per claim with a depth panel and a time panel, and prints the numbers the
notebook's verdict (docs/notebook.md) is read from.

Two kinds of claim:
  * ``init``: the probe at initialization (steps = 0). Depth panel: g(l) / g(L-1), the
    gradient reaching layer l relative to the last layer's, geometric mean over seeds; time
    panel: g(k) / g(0) against the lag. Numbers: the fitted per-layer gain and per-step
    gain, and the decades lost over the depth / over the sequence.
  * ``training``: per-layer measurements during training (``train/grad_norm/l{i}`` and
    ``train/update_ratio/l{i}`` in metrics.jsonl) beside the held-out loss.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import save_figure
from .probe.fit import decades_text
from .report.figures import _pyplot
from .report.runs import Run, Setting, group_runs, load_runs
from .theory.overlay import measurable


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    kind: str                   # "init" | "training"
    depth: bool = True          # has conf/experiment/claim_{name}_depth.yaml
    time: bool = True           # has conf/experiment/claim_{name}_time.yaml
    time_curve: str = "h_l0"    # c_l0 where an LSTM's cell state is the subject (falls back to h_l0)

    def presets(self) -> list[str]:
        return [f"claim_{self.name}_{axis}" for axis, has in (("depth", self.depth), ("time", self.time)) if has]


CLAIMS = {c.name: c for c in (
    Claim("decay", "the gradient shrinks exponentially with depth and with lag", "init"),
    Claim("sigmoid_bound", "sigmoid' <= 1/4 caps each layer's (each step's) gain at ||W|| / 4", "init"),
    Claim("tanh_saturation", "saturated tanh units pass no gradient", "init"),
    Claim("init", "careful initialization (Xavier for tanh, He for ReLU) keeps the gradient", "init"),
    Claim("relu_family", "ReLU-like activations (ReLU, leaky ReLU, GELU) do not vanish", "init"),
    Claim("batch_norm", "batch normalization keeps the gradient flowing", "init", time_curve="c_l0"),
    Claim("residual", "residual connections carry the gradient through depth", "init"),
    Claim("gated", "gates (LSTM, GRU) carry the gradient over long lags", "init", time_curve="c_l0"),
    Claim("early_layers", "early layers learn slowly", "training", time=False),
    Claim("clipping", "gradients can explode, and clipping the norm tames them", "training"),
    Claim("not_convergence", "a vanishing gradient is not convergence", "training", time=False),
)}


# ----------------------------------------------------------------------------- running

def sweep_dir(root: Path, preset: str) -> Path:
    return root / preset


def run_preset(preset: str, root: Path, rerun: bool = False, extra: Sequence[str] = ()) -> Path:
    """Run ``+experiment=preset`` into ``root/preset`` (unless its runs are there), with the overrides
    ``extra`` after the preset's own; returns the dir."""
    out = sweep_dir(root, preset)
    if out.exists() and not rerun and any(out.glob("*/summary.json")):
        print(f"  {preset}: reading {out} (already run; --rerun to run again)")
        return out
    cmd = [sys.executable, "-m", "seqlab", "-m", f"+experiment={preset}", *extra, f"hydra.sweep.dir={out}"]
    print(f"  {preset}: {' '.join(cmd[1:])}", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-3:])
        print(f"  {preset}: the sweep exited {done.returncode} (failed or diverged jobs are part of some "
              f"claims; their run directories are read as they are)\n{tail}")
    return out


# ----------------------------------------------------------------------------- numbers

def _first_probe(run: Run) -> int | None:
    p = run.probe
    if p is None or "steps" not in p or len(p["steps"]) == 0:
        return None
    idx = np.flatnonzero(np.asarray(p["steps"]) == 0)
    return int(idx[0]) if idx.size else None


def depth_curve(run: Run) -> np.ndarray | None:
    """(NL,) g(l) at step 0, layer 0 first (the gradient at the loss step, lag 0)."""
    i = _first_probe(run)
    if i is None or "depth_h_lag0" not in run.probe:
        return None
    return np.asarray(run.probe["depth_h_lag0"][i], dtype=np.float64)


def time_key(run: Run, curve: str) -> str | None:
    keys = [str(k) for k in run.probe.get("curves", [])] if run.probe is not None else []
    return curve if curve in keys else ("h_l0" if "h_l0" in keys else (keys[0] if keys else None))


def time_curve(run: Run, curve: str) -> tuple[str, np.ndarray] | None:
    i = _first_probe(run)
    key = time_key(run, curve) if i is not None else None
    if key is None or f"mean_{key}" not in run.probe:
        return None
    return key, np.asarray(run.probe[f"mean_{key}"][i], dtype=np.float64)


def _geo_mean(curves: Sequence[np.ndarray], ref_index: int) -> np.ndarray | None:
    """Geometric mean over runs of g / g[ref_index]; nan where any run's g underflowed to 0 (a mean of
    the other seeds there would bend the curve up: a kink that is no measurement)."""
    logs = []
    for g in curves:
        if g is None or g.size == 0 or not g[ref_index] > 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            logs.append(np.where(g > 0, np.log10(g / g[ref_index]), np.nan))
    if not logs:
        return None
    n = min(len(x) for x in logs)
    a = np.stack([x[:n] for x in logs])
    ok = np.isfinite(a)
    mean = np.where(ok, a, 0).mean(0)
    return np.where(ok.all(0), 10 ** mean, np.nan)


def _mean(values) -> float:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return sum(v) / len(v) if v else math.nan


def init_numbers(s: Setting, axis: str, curve: str) -> dict[str, float]:
    """Per setting: the fitted gain per layer (depth) or per step (time) at step 0, mean over seeds,
    and the decades the gradient falls over the depth / the sequence."""
    gains, decades, bound = [], [], False
    for r in s.runs:
        i = _first_probe(r)
        if i is None:
            continue
        p = r.probe
        if axis == "depth":
            if "depth_gain_h_lag0" in p:
                gains.append(p["depth_gain_h_lag0"][i])
                decades.append(p["depth_attenuation_decades_h_lag0"][i])
                fit, n = p.get("depth_fit_layers_h_lag0"), len(p["depth_h_lag0"][i]) if "depth_h_lag0" in p else None
                bound |= fit is not None and n is not None and int(fit[i]) < n
        else:
            key = time_key(r, curve)
            if key and f"gain_{key}" in p:
                gains.append(p[f"gain_{key}"][i])
                decades.append(p[f"attenuation_decades_{key}"][i])
                fit = p.get(f"fit_lags_{key}")
                bound |= fit is not None and "lags" in p and int(fit[i]) < len(p["lags"])
    theory = theory_numbers(s, axis)
    gain = _mean(gains)
    gap = gain / theory["gain"] - 1 if theory.get("gain") and math.isfinite(gain) else math.nan
    # bound: some seed's curve left the float range (below the floor or, growing, above the ceiling), so its
    # decades are a bound (seqlab.probe.fit)
    return {"gain": gain, "decades": _mean(decades), "seeds": len(gains), "bound": bound,
            "theory": theory.get("gain", math.nan), "theory_gap": gap, "theory_absent": theory.get("absent")}


def theory_numbers(s: Setting, axis: str) -> dict:
    """The mean-field prediction of a setting's init gain (summary.json's ``theory`` block, seqlab.theory):
    {'gain': mean over seeds} or {'absent': the reason}; {} for runs from before the theory block."""
    gains, reasons = [], []
    for r in s.runs:
        block = ((r.summary or {}).get("theory") or {}).get(axis) or {}
        if "absent" in block:
            reasons.append(block["absent"])
        elif isinstance(block.get("gain"), (int, float)):
            gains.append(block["gain"])
    if gains:
        return {"gain": _mean(gains)}
    return {"absent": reasons[0]} if reasons else {}


def theory_curve(s: Setting, axis: str) -> np.ndarray | None:
    """The predicted curve of a setting (the first seed's theory block: depth g(l)/g(last), time
    g(k)/g(0)), None where the runs have none or the theory is absent."""
    for r in s.runs:
        block = ((r.summary or {}).get("theory") or {}).get(axis) or {}
        if "curve" in block:
            return np.array([x if isinstance(x, (int, float)) else np.nan for x in block["curve"]], dtype=float)
    return None


def theory_text(n: dict) -> str:
    """'; theory 0.571, gap +0.5%' | '; theory absent (reason)' | '' (no theory block in these runs)."""
    if n.get("theory_absent"):
        return f"; theory absent ({n['theory_absent']})"
    if math.isfinite(n.get("theory", math.nan)):
        gap = f", gap {100 * n['theory_gap']:+.1f}%" if math.isfinite(n.get("theory_gap", math.nan)) else ""
        return f"; theory {_fmt(n['theory'])}{gap}"
    return ""


def _per_layer(run: Run, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """layer name -> (steps, values) of ``train/{metric}/l{i}`` over training."""
    out: dict[str, list] = {}
    for row in run.metrics:
        for k, v in row.items():
            if k.startswith(f"train/{metric}/") and v is not None and "step" in row:
                out.setdefault(k.split("/")[-1], []).append((row["step"], float(v)))
    return {k: (np.array([a for a, _ in v]), np.array([b for _, b in v])) for k, v in out.items()}


def layer_ratio(run: Run, metric: str) -> float | None:
    """The first hidden layer's ``train/{metric}`` over the last hidden layer's: the median over training of
    their ratio at each logged step (None for a net of one layer or without those metrics)."""
    layers = {k: v for k, v in _per_layer(run, metric).items() if k.startswith("l")}
    if len(layers) < 2:
        return None
    first, last = layers["l0"][1], layers[f"l{len(layers) - 1}"][1]
    n = min(len(first), len(last))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = first[:n] / last[:n]
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if ratio.size else None


def training_numbers(s: Setting) -> dict[str, float]:
    """Per setting, means over seeds: final held-out loss / baseline, runs diverged, and the first
    layer's gradient norm and update ratio relative to the last hidden layer's (medians over training)."""
    loss, diverged, g_ratio, u_ratio = [], 0, [], []
    for r in s.runs:
        diverged += r.status == "diverged"
        evals = [m for m in r.metrics if "eval/loss_over_baseline" in m]
        if evals:
            loss.append(evals[-1]["eval/loss_over_baseline"])
        for metric, acc in (("grad_norm", g_ratio), ("update_ratio", u_ratio)):
            x = layer_ratio(r, metric)
            if x is not None:
                acc.append(x)
    return {"loss_over_baseline": _mean(loss), "diverged": diverged, "runs": len(s.runs),
            "first_over_last_grad": _mean(g_ratio), "first_over_last_update": _mean(u_ratio)}


# ----------------------------------------------------------------------------- figures

def _label(s: Setting) -> str:
    return s.label or "(base)"


def plot_init(claim: Claim, sweeps: dict[str, list[Setting]], path: Path) -> Path:
    plt = _pyplot()
    axes_names = [a for a in ("depth", "time") if a in sweeps]
    fig, axes = plt.subplots(1, len(axes_names), figsize=(5.6 * len(axes_names), 3.9), squeeze=False)
    for ax, axis in zip(axes[0], axes_names):
        settings = sweeps[axis]
        cmap = plt.get_cmap("tab10")
        for j, s in enumerate(settings):
            if axis == "depth":
                curves = [depth_curve(r) for r in s.runs]
                curves = [c for c in curves if c is not None]
                if not curves:
                    continue
                g = _geo_mean(curves, ref_index=-1)  # relative to the last layer
                x = np.arange(len(g))
                num = init_numbers(s, "depth", claim.time_curve)
                extra = f"gain {num['gain']:.3g}/layer"
            else:
                got = [time_curve(r, claim.time_curve) for r in s.runs]
                got = [c for c in got if c is not None]
                if not got:
                    continue
                g = _geo_mean([c for _, c in got], ref_index=0)
                x = np.arange(len(g))
                num = init_numbers(s, "time", claim.time_curve)
                extra = f"{got[0][0]}: gain {num['gain']:.3g}/step"
            if g is None:
                continue
            if math.isfinite(num.get("theory", math.nan)):
                extra += f", theory {num['theory']:.3g}"
            ax.plot(x, g, "-" if axis == "time" else ".-", color=cmap(j % 10), lw=1.3, ms=3,
                    label=f"{_label(s)}  ({extra})")
            predicted = theory_curve(s, axis)
            if axis == "time" and got[0][0] != "h_l0":  # the prediction is h_l0's: its first lags differ from c's
                predicted = None
            if predicted is not None and len(predicted) == len(g):
                refs = [c[-1] for c in curves] if axis == "depth" else [c[0] for _, c in got]
                # only as far as a float32 measurement could follow it (seqlab.theory.overlay)
                ax.plot(x, measurable(predicted, refs, from_end=axis == "depth"), "--", color=cmap(j % 10), lw=1.0,
                        alpha=0.9)
        ax.set_yscale("log")
        if axis == "depth":
            ax.set_xlabel("layer l (0 = next to the input)")
            ax.set_ylabel("||dL/dh_l|| / ||dL/dh_(L-1)||")
            ax.set_title("depth: the gradient reaching layer l, at init", fontsize=9)
        else:
            ax.set_xlabel("lag k = τ − t")
            ax.set_ylabel("||dL/ds_(τ−k)|| / ||dL/ds_τ||")
            ax.set_title("time: the gradient k steps back, at init", fontsize=9)
        ax.axhline(1e-7, color="0.75", lw=0.7, ls=":")  # ~float32 resolution relative to 1
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a sweep without runs draws an empty panel, no legend
            ax.legend(fontsize=7, loc="best", frameon=False)
    return _save(plt, fig, path, f"claim: {claim.statement}\n(geometric mean over seeds; dashed: mean-field "
                 "prediction at init (docs/theory.md), stopped where float32 can no longer measure (g < 1.2e-38); "
                 "dotted: 1e-7, about float32's relative precision)", dpi=110)


def plot_training(claim: Claim, sweeps: dict[str, list[Setting]], path: Path) -> Path:
    """Per setting (first seed): held-out loss / baseline, and per-layer gradient norm and update ratio."""
    plt = _pyplot()
    panels = [(axis, s) for axis in ("depth", "time") if axis in sweeps for s in sweeps[axis]]
    fig, axes = plt.subplots(3, len(panels), figsize=(3.4 * len(panels) + 1, 8.2), squeeze=False, sharex="col")
    for col, (axis, s) in enumerate(panels):
        run = s.runs[0]
        ax_loss, ax_g, ax_u = axes[0][col], axes[1][col], axes[2][col]
        for r in s.runs:
            ev = [(m["step"], m["eval/loss_over_baseline"]) for m in r.metrics if "eval/loss_over_baseline" in m]
            if ev:
                x, y = zip(*ev)
                ax_loss.plot(x, y, lw=1.0, label=f"seed {r.seed}" + (f" ({r.status})" if not r.finished else ""))
        ax_loss.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax_loss.set_ylim(bottom=0)
        ax_loss.set_title(f"{axis}: {_label(s)}", fontsize=8)
        ax_loss.legend(fontsize=6, frameon=False)
        for ax, metric in ((ax_g, "grad_norm"), (ax_u, "update_ratio")):
            layers = _per_layer(run, metric)
            names = sorted((k for k in layers if k.startswith("l")), key=lambda k: int(k[1:]))
            names += [k for k in layers if not k.startswith("l")]
            cmap = plt.get_cmap("viridis")
            hidden = [k for k in names if k.startswith("l")]
            shown = {hidden[0], hidden[-1]} if hidden else set()
            for j, k in enumerate(names):
                x, y = layers[k]
                color = cmap(j / max(len(hidden) - 1, 1)) if k.startswith("l") else "k"
                ax.plot(x, y, lw=0.9, color=color, label=k if (k in shown or not k.startswith("l")) else None)
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
            if names:
                ax.legend(fontsize=6, frameon=False, title=f"seed {run.seed}", title_fontsize=6)
        ax_u.set_xlabel("training step")
    axes[0][0].set_ylabel("held-out loss / baseline")
    axes[1][0].set_ylabel("||dL/dW_l|| (train batch)")
    axes[2][0].set_ylabel("||ΔW_l|| / ||W_l|| per update")
    return _save(plt, fig, path, f"claim: {claim.statement}\n(per layer, dark = next to the input, yellow = last "
                 "hidden layer, black = readout)", dpi=100)


def _save(plt, fig, path: Path, suptitle: str, dpi: int) -> Path:
    """A claim's figure with its two-line title, written to ``path`` and closed."""
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=dpi, bbox_inches="tight")  # atomically, never through a link
    finally:
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------- one claim

def _fmt(x, digits=3) -> str:
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def run_claim(claim: Claim, root: Path, out: Path, rerun: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """Run (or read) the claim's sweeps, draw its figure into ``out``, return its table lines."""
    sweeps: dict[str, list[Setting]] = {}
    for axis, preset in zip([a for a in ("depth", "time") if getattr(claim, a)], claim.presets()):
        runs = load_runs([run_preset(preset, root, rerun, extra)])
        sweeps[axis] = group_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"claim_{claim.name}.png"
    (plot_init if claim.kind == "init" else plot_training)(claim, sweeps, path)
    lines = [f"claim {claim.name}: {claim.statement}   figure: {path}"]
    for axis, settings in sweeps.items():
        for s in settings:
            if claim.kind == "init":
                n = init_numbers(s, axis, claim.time_curve)
                unit = "layer" if axis == "depth" else "step"
                over = "the depth" if axis == "depth" else "the sequence"
                lines.append(f"  {axis:5s} {_label(s):45s} gain {_fmt(n['gain'])}/{unit}, "
                             f"{decades_text(n['decades'], n['bound'])} over {over} "
                             f"({n['seeds']} seeds){theory_text(n)}")
            else:
                n = training_numbers(s)
                lines.append(f"  {axis:5s} {_label(s):45s} final loss/baseline {_fmt(n['loss_over_baseline'])}, "
                             f"diverged {n['diverged']}/{n['runs']}, first/last layer: grad "
                             f"{_fmt(n['first_over_last_grad'])}, update {_fmt(n['first_over_last_update'])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqlab.claims", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"claims to run: {', '.join(CLAIMS)}, or all")
    parser.add_argument("--root", default="multirun/claims", help="where the sweeps go (default multirun/claims)")
    parser.add_argument("--out", default=None, help="where the figures go (default ROOT/figures)")
    parser.add_argument("--rerun", action="store_true", help="run the sweeps again even if their runs are there")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="extra",
                        help="overrides for every sweep after the preset's own, e.g. probe.lyapunov_k=0 logger=none "
                             "(the init claims' figures and numbers do not use the Lyapunov spectrum)")
    args = parser.parse_args(argv)
    if not args.names:
        for c in CLAIMS.values():
            print(f"{c.name:16s} {c.kind:8s} {c.statement}  [{', '.join(c.presets())}]")
        return 0
    names = list(CLAIMS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        print(f"seqlab: error: claim={unknown[0]}: unknown claim; allowed: {', '.join(CLAIMS)}, all", file=sys.stderr)
        return 2
    bad = next((o for o in args.extra if "=" not in o or o.startswith(("hydra.sweep.dir", "-"))), None)
    if bad is not None:
        print(f"seqlab: error: --set {bad}: each must be KEY=VALUE (not hydra.sweep.dir: --root sets it)",
              file=sys.stderr)
        return 2
    root = Path(args.root)
    out = Path(args.out) if args.out else root / "figures"
    from .checks import ConfigError
    from .rundir import check_writable

    try:
        check_writable(root, "--root")
        check_writable(out, "--out")
        for n in names:
            print("\n".join(run_claim(CLAIMS[n], root, out, args.rerun, args.extra)), flush=True)
    except ConfigError as e:  # --root/--out unusable; a run directory naming a callable not the lab's own
        print(f"seqlab.claims: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder that became read-only
        print(f"seqlab.claims: error: {e.filename or out}: cannot write there ({e.strerror or type(e).__name__}); "
              f"choose a writable --out", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
