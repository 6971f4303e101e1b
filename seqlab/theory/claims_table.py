"""The claims' init gains beside the mean-field prediction: one JSON file of rows, one markdown table.

    python -m seqlab.theory.claims_table --out docs/results/theory_claims.json   # measure + predict
    python -m seqlab.theory.claims_table --table docs/results/theory_claims.json  # the markdown table
    python -m seqlab.theory.claims_table --table docs/results/theory_claims.json --column
        # docs/notebook.md's "theory" column and README.md's sentence on where they disagree

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


def _short(override: str) -> str:
    """'model.layer.activation=tanh' -> 'tanh'; a number or a boolean keeps its key: 'gain=0.5', 'norm=none'."""
    key, value = override.split("=", 1)
    try:
        float(value)
        named = True
    except ValueError:
        named = value in ("true", "false", "none")
    return f"{key.rsplit('.', 1)[-1]}={value}" if named else value


def _grouped(rows: list[dict]) -> dict[tuple, dict]:
    """(claim, axis, setting) -> {'label', 'measured', 'predicted' (nan: absent), 'absent'}: seeds averaged."""
    out: dict[tuple, dict] = {}
    for r in rows:
        setting = tuple(o for o in r["overrides"] if not o.startswith("seed="))
        out.setdefault((r["claim"], r["axis"], setting), []).append(r)
    for key, rs in out.items():
        meas = [r["measured_gain"] for r in rs if isinstance(r.get("measured_gain"), (int, float))]
        pred = [r["gain"] for r in rs if isinstance(r.get("gain"), (int, float))]
        label = "/".join(_short(o) for o in key[2]) or "-"
        out[key] = {"label": label, "measured": sum(meas) / len(meas) if meas else math.nan,
                    "predicted": sum(pred) / len(pred) if pred else math.nan, "absent": rs[0].get("absent")}
    return out


def theory_column(rows: list[dict]) -> dict[str, str]:
    """The notebook's claims table's "theory" cell per claim: the mean-field gain of every setting in the
    order of the claim's sweep ('absent' where the library gives none), and the largest gap."""
    cells: dict[str, list[str]] = {}
    worst: dict[str, tuple[float, str]] = {}
    for (claim, axis, _), g in _grouped(rows).items():
        parts = cells.setdefault(claim, [])
        text = f"{g['label']} {_g(g['predicted'])}" if math.isfinite(g["predicted"]) else f"{g['label']} absent"
        if parts and parts[-1].startswith(f"{axis}: "):
            parts[-1] += f", {text}"
        else:
            parts.append(f"{axis}: {text}")
        if math.isfinite(g["predicted"]) and math.isfinite(g["measured"]):
            gap = g["measured"] / g["predicted"] - 1
            if abs(gap) > abs(worst.get(claim, (0.0, ""))[0]):
                worst[claim] = (gap, f"{g['label']}, {axis}")
    out = {}
    for claim, parts in cells.items():
        text = "; ".join(parts)
        if claim in worst:
            gap, where = worst[claim]
            text += f" (largest gap {100 * gap:+.1f}%: {where})"
        out[claim] = text
    return out


def disagreements(rows: list[dict], threshold: float = 0.02) -> str:
    """One sentence: how many predicted settings meet the measurement within ``threshold``, and every
    one that does not (claim, axis, setting, gap)."""
    groups = list(_grouped(rows).items())
    have = [(k, g) for k, g in groups if math.isfinite(g["predicted"]) and math.isfinite(g["measured"])]
    far = [(k, g, g["measured"] / g["predicted"] - 1) for k, g in have
           if abs(g["measured"] / g["predicted"] - 1) > threshold]
    absent = sum(not math.isfinite(g["predicted"]) for _, g in groups)
    text = (f"Mean-field theory meets the measured init gain within {100 * threshold:g}% in {len(have) - len(far)} "
            f"of the {len(have)} claim settings it predicts ({absent} more have no prediction, with the reason)")
    if far:
        text += "; beyond that: " + ", ".join(f"{k[0]} {k[1]} {g['label']} {100 * gap:+.1f}%" for k, g, gap in far)
    return text + "."


INIT_CLAIMS = [n for n, c in claims_mod.CLAIMS.items() if c.kind == "init"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqlab.theory.claims_table", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"init claims (default all: {', '.join(INIT_CLAIMS)})")
    parser.add_argument("--out", type=Path, help="measure and predict, write the rows here (JSON)")
    parser.add_argument("--table", type=Path, help="print the markdown table of a rows file")
    parser.add_argument("--column", action="store_true", help="with --table: print docs/notebook.md's theory cell "
                        "per claim and the sentence on where theory and measurement disagree (README.md)")
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
    rows = json.loads(args.table.read_text())["rows"]
    if args.column:
        for claim, cell in theory_column(rows).items():
            print(f"{claim}: {cell}")
        print(disagreements(rows))
        return 0
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
