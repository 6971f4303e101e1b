"""The claims' init gains beside the mean-field prediction: one JSON file of rows, one markdown table.

    python -m seqlab.theory.claims_table --out docs/results/theory_claims.json   # measure + predict
    python -m seqlab.theory.claims_table --table docs/results/theory_claims.json  # the markdown table

For every sweep point of every init claim's presets (``seqlab.claims``: conf/experiment/
claim_{name}_{depth,time}.yaml, seeds included) it builds the model at init exactly as the
run would (``seqlab.config.setup``), measures the probe's gain on the probe batch (no Lyapunov
spectrum: it does not enter the gain) and puts the ``theory`` block of ``seqlab.theory.beside``
beside it. ``--table`` groups the seeds (mean gain) and prints measured, predicted and the gap,
or the reason there is no prediction. docs/theory.md holds the table this prints.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

from .. import claims as claims_mod
from ..files import write_text


def sweep_points(preset: str) -> list[list[str]]:
    """Every override list of ``preset``'s sweep (the cross product of its sweeper params)."""
    from hydra import compose, initialize_config_dir

    from ..__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+experiment={preset}"], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params or {})
    keys = list(params)
    values = [str(params[k]).split(",") for k in keys]
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*values)]


def measure_point(preset: str, overrides: list[str]) -> dict:
    """Build the model at init, probe it once (no spectrum), and the theory block beside it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ..__main__ import CONF_DIR
    from ..config import build_probe, setup
    from ..probe import probe
    from .beside import beside_probe

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+experiment={preset}", "logger=none", *overrides])
    _, task, model = setup(cfg)
    settings = build_probe(cfg)
    batch = settings.make_batch(task)
    result = probe(model, task, batch, settings, lyapunov=False)
    block = beside_probe(model, OmegaConf.to_container(cfg.model, resolve=True), task, batch, settings, result, 0)
    axis = "depth" if preset.endswith("_depth") else "time"
    return {"preset": preset, "axis": axis, "overrides": overrides, **block[axis]}


def measure_all(names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        claim = claims_mod.CLAIMS[name]
        for preset in claim.presets():
            for point in sweep_points(preset):
                row = measure_point(preset, point)
                row.pop("curve", None)
                row.pop("chi_per_layer", None)
                rows.append({"claim": name, **row})
                print(f"{preset} {' '.join(point)}: measured {row.get('measured_gain')} predicted "
                      f"{row.get('gain', row.get('absent'))}", file=sys.stderr, flush=True)
    return rows


def _g(x, digits=3):
    return "n/a" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:.{digits}g}"


def table(rows: list[dict]) -> str:
    """Markdown: one line per claim preset setting (seeds averaged)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        setting = tuple(o for o in r["overrides"] if not o.startswith("seed="))
        groups.setdefault((r["claim"], r["axis"], setting), []).append(r)
    lines = ["| claim | axis | setting | measured gain at init | mean-field | gap |", "|---|---|---|---|---|---|"]
    for (claim, axis, setting), rs in groups.items():
        meas = [r["measured_gain"] for r in rs if isinstance(r.get("measured_gain"), (int, float))]
        pred = [r["gain"] for r in rs if isinstance(r.get("gain"), (int, float))]
        m = sum(meas) / len(meas) if meas else math.nan
        label = ", ".join(o.split("=", 1)[0].split(".")[-1] + "=" + o.split("=", 1)[1] for o in setting) or "-"
        if pred:
            p = sum(pred) / len(pred)
            gap = f"{100 * (m / p - 1):+.1f}%" if math.isfinite(m) else "n/a"
            lines.append(f"| {claim} | {axis} | {label} | {_g(m)} | {_g(p)} | {gap} |")
        else:
            lines.append(f"| {claim} | {axis} | {label} | {_g(m)} | absent: {rs[0].get('absent', '?')} | |")
    return "\n".join(lines)


INIT_CLAIMS = [n for n, c in claims_mod.CLAIMS.items() if c.kind == "init"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqlab.theory.claims_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"init claims (default all: {', '.join(INIT_CLAIMS)})")
    parser.add_argument("--out", type=Path, help="measure and predict, write the rows here (JSON)")
    parser.add_argument("--table", type=Path, help="print the markdown table of a rows file")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in INIT_CLAIMS]
    if unknown:
        print(f"seqlab: error: claim={unknown[0]}: not an init claim; allowed: {', '.join(INIT_CLAIMS)}", file=sys.stderr)
        return 2
    if (args.out is None) == (args.table is None):
        print("seqlab: error: give one of --out FILE (measure) or --table FILE (print)", file=sys.stderr)
        return 2
    if args.out is not None:
        names = args.names or INIT_CLAIMS
        rows = measure_all(names)
        if args.names and args.out.is_file():  # some claims again: the file's other claims stay
            old = [r for r in json.loads(args.out.read_text())["rows"] if r["claim"] not in names]
            rows = sorted(old + rows, key=lambda r: INIT_CLAIMS.index(r["claim"]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps({"rows": rows}, indent=1) + "\n")
        print(table(rows))
        return 0
    if not args.table.is_file():
        print(f"seqlab: error: table={args.table}: no such file", file=sys.stderr)
        return 2
    print(table(json.loads(args.table.read_text())["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
