"""Evaluation at lengths other than the training length (``eval_lengths``): length generalization.

    python -m seqlab task=parity model=lstm seq_len=40 eval_lengths=[40,128,256]

At every evaluation the loop also evaluates on a held-out set of each length L in
``eval_lengths``: the same task with ``seq_len=L`` (its other knobs unchanged), ``eval_size``
examples from ``eval_seed``. The rows of metrics.jsonl (and W&B) gain ``eval_len{L}/loss``,
``eval_len{L}/accuracy`` and ``eval_len{L}/loss_over_baseline`` (the baseline of the task at
that length); summary.json gains ``length_eval``: {L: {loss, accuracy, loss_over_baseline,
solved}} at the last evaluation, ``solved`` by the task's own bar. Only tasks whose config reads
``seq_len`` have a length to change; any other is refused with one line before the run.
"""
from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from .checks import ConfigError
from .files import write_text
from .tasks import Batch, Task


def length_tasks(cfg: DictConfig, task: Task, device) -> dict[int, tuple[Task, Batch]]:
    """{L: (the task at length L, its held-out batch)} for every L of ``cfg.eval_lengths``."""
    from .config import build_task

    lengths = list(cfg.get("eval_lengths") or [])
    if not lengths:
        return {}
    if "seq_len" not in cfg.task:
        raise ConfigError(f"eval_lengths={lengths}: task {task.name} has no seq_len to change")
    out = {}
    for length in dict.fromkeys(int(x) for x in lengths):
        other = OmegaConf.merge(cfg, {"seq_len": length})
        other.task.seq_len = length  # a task that sets its own seq_len (not ${seq_len}) follows too
        t = build_task(other)
        out[length] = (t, t.eval_batch(cfg.eval_size, torch.Generator().manual_seed(cfg.eval_seed)).to(device))
    return out


def length_row(model, tasks: dict[int, tuple[Task, Batch]], evaluate) -> dict[str, float]:
    """The metrics row's extra keys: eval_len{L}/loss, /accuracy, /loss_over_baseline."""
    row = {}
    for length, (t, batch) in tasks.items():
        loss, acc = evaluate(model, t, batch)
        row.update({f"eval_len{length}/loss": loss, f"eval_len{length}/accuracy": acc,
                    f"eval_len{length}/loss_over_baseline": loss / t.baseline})
    return row


def length_summary(last_eval: dict, tasks: dict[int, tuple[Task, Batch]]) -> dict[str, dict]:
    """summary.json's ``length_eval`` from the last evaluation row."""
    out = {}
    for length, (t, _) in tasks.items():
        loss, acc = last_eval.get(f"eval_len{length}/loss"), last_eval.get(f"eval_len{length}/accuracy")
        if loss is None:
            continue
        out[str(length)] = {"loss": loss, "accuracy": acc, "loss_over_baseline": loss / t.baseline,
                            "solved": bool(t.solved(loss, acc))}
    return out


# ----------------------------------------------------------------------------- a sweep's length table

def collect(sweeps: list) -> dict:
    """One row per run directory under ``sweeps``: cell, eigenvalue range, lr, seed, status, the held-out
    accuracy at the training length and at every other length (summary.json's length_eval)."""
    import json
    from pathlib import Path

    import yaml

    rows = []
    for sweep in sweeps:
        for path in sorted(Path(sweep).glob("*/summary.json")):
            s = json.loads(path.read_text())
            cfg = yaml.safe_load((path.parent / ".hydra" / "config.yaml").read_text()) \
                if (path.parent / ".hydra" / "config.yaml").exists() else yaml.safe_load((path.parent / "config.yaml").read_text())
            layer = cfg["model"]["layer"]
            min_len = (cfg.get("task") or {}).get("train_min_len")  # parity trained on lengths min_len..T
            cell = layer["_target_"].rsplit(".", 1)[-1].replace("Layer", "")
            rows.append({"cell": cell + (f", trained on {min_len}..{s.get('seq_len')}" if min_len else ""),
                         "eigenvalues": layer.get("eigenvalues", "-"), "lr": cfg["optim"]["lr"], "seed": cfg["seed"],
                         "train_len": s.get("seq_len"), "status": s.get("status"), "steps": cfg["steps"],
                         "stopped_at": s.get("stopped_at_step"), "solved_step": s.get("solved_step"),
                         "accuracy": {str(s.get("seq_len")): s.get("final_accuracy"),
                                      **{k: v["accuracy"] for k, v in (s.get("length_eval") or {}).items()}},
                         **_init_probe(path.parent / "probe.npz")})
    return {"rows": rows}


def _init_probe(path) -> dict:
    """The probe at init (step 0) of a run, if it has one: h_l0's per-step gain and the decades it loses
    over the sequence (what says whether a failure could be a vanishing gradient)."""
    import numpy as np

    if not path.exists():
        return {}
    with np.load(path) as d:
        if "gain_h_l0" not in d.files or not len(d["steps"]) or d["steps"][0] != 0:
            return {}
        return {"init_gain": float(d["gain_h_l0"][0]), "init_decades": float(d["attenuation_decades_h_l0"][0])}


def _run_key(r: dict) -> tuple:
    return r["cell"], r["eigenvalues"], r["lr"], r["seed"], r["train_len"]


def merge(old: dict, new: dict) -> dict:
    """``old``'s rows and ``new``'s, a run in both (same cell, eigenvalues, lr, seed, length) taken from ``new``."""
    fresh = {_run_key(r) for r in new["rows"]}
    return {"rows": [r for r in old["rows"] if _run_key(r) not in fresh] + new["rows"]}


def table(data: dict, bar: float = 0.99) -> str:
    """Markdown: per (cell, eigenvalues, lr), the seeds whose held-out accuracy >= ``bar`` at each length,
    and the mean accuracy there."""
    rows = data["rows"]
    lengths = sorted({int(k) for r in rows for k in r["accuracy"]})
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["cell"], r["eigenvalues"], r["lr"]), []).append(r)
    head = "| cell | eigenvalues | lr | runs | " + " | ".join(f"T = {n}: solved, mean acc." for n in lengths) + " | stopped early | probe at init: gain/step, decades over T |"
    lines = [head, "|" + "---|" * (6 + len(lengths))]
    for (cell, eig, lr), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        cols = []
        for n in lengths:
            acc = [r["accuracy"].get(str(n)) for r in rs if r["accuracy"].get(str(n)) is not None]
            ok = sum(a >= bar for a in acc)
            cols.append(f"{ok}/{len(rs)}, {sum(acc) / len(acc):.3f}" if acc else "n/a")
        stopped = sum(r["status"] == "stopped" for r in rs)
        probed = [r for r in rs if "init_gain" in r]
        init = (f"{sum(r['init_gain'] for r in probed) / len(probed):.3f}, "
                f"{sum(r['init_decades'] for r in probed) / len(probed):.2f}") if probed else "n/a"
        lines.append(f"| {cell} | {eig} | {lr:.2g} | {len(rs)} | " + " | ".join(cols) + f" | {stopped}/{len(rs)} | {init} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse
    import json
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m seqlab.lengths",
                                     description="Length generalization: a sweep's runs -> rows (JSON) -> a table.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("sweeps", nargs="+", type=Path)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--add", action="store_true", help="keep --out's rows from other sweeps (a run of the same cell, "
                   "eigenvalues, lr, seed and length is replaced)")
    t = sub.add_parser("table")
    t.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    if args.command == "collect":
        missing = [s for s in args.sweeps if not s.is_dir()]
        if missing:
            print(f"seqlab: error: sweep={missing[0]}: not a directory", file=sys.stderr)
            return 2
        data = collect(args.sweeps)
        if args.add and args.out.is_file():
            data = merge(json.loads(args.out.read_text()), data)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(data, indent=1) + "\n")
        print(f"{len(data['rows'])} runs -> {args.out}")
        print(table(data))
        return 0
    if not args.results.is_file():
        print(f"seqlab: error: results={args.results}: no such file", file=sys.stderr)
        return 2
    print(table(json.loads(args.results.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
