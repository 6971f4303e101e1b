"""The trainability phase diagram over (sigma_w^2, depth), measured, with the mean-field lines drawn on it.

    python -m seqlab -m +experiment=phase_tanh_digits                       # the sweep (conf/experiment/)
    python -m seqlab.theory.phase collect multirun/phase_tanh_digits/DATE [MORE] --out docs/results/phase_tanh_digits.json
    python -m seqlab.theory.phase plot docs/results/phase_tanh_digits.json --out docs/figures/phase_tanh_digits.png

``collect`` reads every run directory's config.yaml and summary.json into one JSON file of
rows (sigma_w^2 = fan_in Var(W) from the init knobs, sigma_b^2, depth, final accuracy, the
measured depth gain at init; the lines are computed afresh from seqlab.theory). ``plot`` draws the measured accuracy over the grid
(Schoenholz et al. 2017, fig. 5), the order-to-chaos line chi_1 = 1 and the trainable-depth bound
6 xi_c, both from ``seqlab.theory`` at the file's sigma_b^2, and prints where the measured
boundary (accuracy at least ``--level``) sits against 6 xi_c at every sigma_w^2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from ..files import save_figure, write_text
from .meanfield import critical_sigma_w2, feedforward
from .predict import bias_variance, init_variance


def collect(sweeps: list[Path]) -> dict:
    """Rows of every finished run under the ``sweeps`` (one directory per run)."""
    import yaml

    rows = []
    for summary_path in sorted(p for sweep in sweeps for p in sweep.glob("*/summary.json")):
        run = summary_path.parent
        summary = json.loads(summary_path.read_text())
        cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else \
            yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        model, layer = cfg["model"], cfg["model"]["layer"]
        H = model["hidden_size"]
        theory = (summary.get("theory") or {}).get("depth") or {}
        if summary.get("status") != "finished":
            continue
        rows.append({"run": f"{run.parent.name}/{run.name}", "activation": layer["activation"], "init": layer["init"], "gain": layer["gain"],
                     "sigma_w2": init_variance(layer["init"], layer["gain"], H, H), "sigma_b2": bias_variance(H),
                     "depth": model["num_layers"], "width": H, "steps": cfg["steps"], "lr": cfg["optim"]["lr"],
                     "status": summary.get("status"), "accuracy": summary.get("final_accuracy"),
                     "loss_over_baseline": summary.get("loss_over_baseline"),
                     "measured_depth_gain": theory.get("measured_gain")})
    if not rows:
        raise SystemExit(f"seqlab: error: {' '.join(map(str, sweeps))}: no finished run directories")
    rows.sort(key=lambda r: (r["sigma_w2"], r["depth"]))
    return {"task": "digits", "sweeps": [s.name for s in sweeps], "rows": rows}


def boundary(data: dict, level: float) -> list[dict]:
    """Per sigma_w^2: the deepest depth whose accuracy >= level (None if none), beside 6 xi_c."""
    rows = data["rows"]
    out = []
    for sw2 in sorted({r["sigma_w2"] for r in rows}):
        these = sorted((r for r in rows if r["sigma_w2"] == sw2), key=lambda r: r["depth"])
        ok = [r["depth"] for r in these if (r["accuracy"] or 0) >= level]
        bad = [r["depth"] for r in these if (r["accuracy"] or 0) < level]
        p = feedforward(these[0]["activation"], sw2, these[0]["sigma_b2"])
        out.append({"sigma_w2": sw2, "deepest_trained": max(ok) if ok else None,
                    "shallowest_failed": min(bad) if bad else None, "six_xi_c": 6 * p.xi_c, "chi_1": p.chi_1})
    return out


def plot(data: dict, path: Path, level: float) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = data["rows"]
    sws, depths = sorted({r["sigma_w2"] for r in rows}), sorted({r["depth"] for r in rows})
    acc = np.full((len(depths), len(sws)), np.nan)
    for r in rows:
        acc[depths.index(r["depth"]), sws.index(r["sigma_w2"])] = r["accuracy"] if r["accuracy"] is not None else np.nan
    act, sb2 = rows[0]["activation"], rows[0]["sigma_b2"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    # cells centred on the grid points: edges at geometric midpoints
    def edges(v):
        v = np.log(np.asarray(v, dtype=float))
        mid = (v[1:] + v[:-1]) / 2
        return np.exp(np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]]))
    mesh = ax.pcolormesh(edges(sws), edges(depths), acc, cmap="viridis", vmin=0.0, vmax=1.0, shading="flat")
    fig.colorbar(mesh, ax=ax, label="held-out accuracy (chance 0.1)")
    for i, d in enumerate(depths):
        for j, s in enumerate(sws):
            if np.isfinite(acc[i, j]):
                ax.text(s, d, f"{acc[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if acc[i, j] < 0.6 else "k")
    fine = np.exp(np.linspace(math.log(edges(sws)[0]), math.log(edges(sws)[-1]), 200))
    six = np.array([6 * feedforward(act, s, sb2).xi_c for s in fine])
    ax.plot(fine, six, "w--", lw=1.6, label="6 xi_c (Schoenholz et al. 2017)")
    crit = critical_sigma_w2(act, sb2)
    ax.axvline(crit, color="r", lw=1.2, label=f"chi_1 = 1 (sigma_w^2 = {crit:.3g})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(edges(depths)[0], edges(depths)[-1])
    ax.set_xlim(edges(sws)[0], edges(sws)[-1])
    ax.set_xticks(sws, [f"{s:.3g}" for s in sws])
    ax.set_yticks(depths, [str(d) for d in depths])
    ax.minorticks_off()
    ax.set_xlabel("sigma_w^2 (W ~ N(0, sigma_w^2 / fan_in))")
    ax.set_ylabel("depth (hidden layers)")
    ax.legend(fontsize=7, loc="upper right", facecolor="0.3", labelcolor="w", framealpha=0.8)
    r0 = rows[0]
    ax.set_title(f"{act} MLP on digits: width {r0['width']}, sigma_b^2 = {sb2:.3g}, Adam {r0['lr']:g}, "
                 f"{r0['steps']} updates", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)  # atomically, never through a link
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqlab.theory.phase", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run directories of a sweep -> one JSON file of rows")
    c.add_argument("sweeps", type=Path, nargs="+", help="sweep directories (a grid may span several)")
    c.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("plot", help="the JSON file -> the figure, and the boundary against 6 xi_c")
    p.add_argument("results", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--level", type=float, default=0.5, help="accuracy that counts as trained (default 0.5)")
    args = parser.parse_args(argv)
    if args.command == "collect":
        for sweep in args.sweeps:
            if not sweep.is_dir():
                print(f"seqlab: error: sweep={sweep}: not a directory", file=sys.stderr)
                return 2
        data = collect(args.sweeps)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(data, indent=1) + "\n")
        print(f"{len(data['rows'])} runs -> {args.out}")
        return 0
    if not args.results.is_file():
        print(f"seqlab: error: results={args.results}: no such file", file=sys.stderr)
        return 2
    data = json.loads(args.results.read_text())
    print(f"figure: {plot(data, args.out, args.level)}")
    print(f"accuracy >= {args.level} counts as trained")
    for b in boundary(data, args.level):
        print(f"  sigma_w^2 {b['sigma_w2']:<6.3g} chi_1 {b['chi_1']:.3f}  6 xi_c {b['six_xi_c']:7.1f}  "
              f"deepest trained {b['deepest_trained']}  shallowest failed {b['shallowest_failed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
