"""The long-memory table: which cell solves which task at which length, in how many examples.

    python -m seqlab -m +experiment=long_memory hydra/launcher=parallel
    python -m seqlab.report.long_memory multirun/long_memory/DATE_TIME [-o OUT]

Reads the sweep's run directories (seqlab.report.runs) and writes into ``OUT`` (default
``DIR/long_memory``):

  long_memory.md     the grid (largest length solved per cell and task, with the examples it took)
                     and one row per run: solved, examples to solve, loss / baseline at the end,
                     and the probe at step 0 (per-step gain, half-life, horizon of the first
                     state's curve: h_l0, or y_l0 for coRNN; top Lyapunov exponent)
  long_memory.json   the same rows, machine-readable
  long_memory.png    the figure: largest length solved per cell (rows) and task (columns)

A cell is the run's ``remedy`` choice (a preset of conf/remedy/), else its model. "Examples to
solve" = batch_size x the step of the first evaluation that met the task's bar (so it is
resolved to eval_every x batch_size examples). A run that diverged or failed counts as not
solved at its length and is marked; a missing run (not run, or unfinished) is shown as such.
A run stopped before its budget (preempted, unfinished) counts as solved if it had met the bar
by then. Several directories may hold the same run (a sweep finished elsewhere): per cell, task,
length and seed the most complete one is kept (finished, then diverged, then the rest).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from seqlab.files import save_figure, write_text
from seqlab.report.runs import Run, load_runs
from seqlab.report.stats import curve_key, probe_numbers

# the order of the issue's list; any other cell follows alphabetically
CELL_ORDER = ("rnn_tanh", "irnn", "lstm_forget1", "lstm_chrono", "gru", "indrnn", "exprnn", "lru",
              "mingru", "minlstm", "cornn", "selective")
TASK_ORDER = ("adding", "copy", "delayed_recall")


def cell_of(run: Run) -> str:
    choices = run.config.get("choices") or {}
    return str(choices.get("remedy") or choices.get("model") or run.config.get("model", {}).get("_target_", "?"))


def task_of(run: Run) -> str:
    return str((run.config.get("choices") or {}).get("task") or run.summary.get("task") or "?")


def run_row(run: Run) -> dict:
    """One run's entry of the table."""
    s, cfg = run.summary, run.config
    batch = cfg.get("batch_size")
    steps = cfg.get("steps")
    solved_step = s.get("solved_step")
    init = probe_numbers(run, at="init")
    key = curve_key(run.probe) if run.probe is not None else None
    return {
        "cell": cell_of(run), "task": task_of(run), "seq_len": run.seq_len, "status": run.status,
        "solved": bool(s.get("solved")) and solved_step is not None,
        "examples_to_solve": None if solved_step is None or batch is None else int(solved_step) * int(batch),
        "budget_examples": None if steps is None or batch is None else int(steps) * int(batch),
        "loss_over_baseline": s.get("loss_over_baseline"),
        "final_solved": s.get("final_solved"),
        "diverged_step": s.get("diverged_step"),
        "probe_curve": key,
        **{f"init_{k}": v for k, v in init.items()},
        "wall_time_s": s.get("wall_time_s"), "steps_per_s": s.get("steps_per_s"),
        "hidden_size": (cfg.get("model") or {}).get("hidden_size"), "lr": (cfg.get("optim") or {}).get("lr"),
        "path": str(run.path),
    }


def _order(values, preferred) -> list:
    values = sorted(set(values), key=str)
    return [v for v in preferred if v in values] + [v for v in values if v not in preferred]


def largest_solved(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(cell, task) -> {'length': largest T solved or None, 'examples': at that T, 'lengths': all run,
    'solved': the solved T, 'gaps': shorter T not solved though a longer one was}."""
    out: dict[tuple[str, str], dict] = {}
    for r in rows:
        e = out.setdefault((r["cell"], r["task"]), {"lengths": [], "solved": [], "examples": {}, "incomplete": []})
        e["lengths"].append(r["seq_len"])
        if r.get("status", "finished") not in ("finished", "diverged", "stopped"):  # cut short: outcome unknown
            # ("stopped" is early_stop's verdict on a hopeless run, an outcome of the protocol)
            e["incomplete"].append(r["seq_len"])
        if r["solved"]:
            e["solved"].append(r["seq_len"])
            e["examples"][r["seq_len"]] = r["examples_to_solve"]
    for e in out.values():
        e["lengths"].sort()
        e["solved"].sort()
        top = max(e["solved"]) if e["solved"] else None
        e["length"] = top
        e["examples_at_length"] = e["examples"].get(top)
        e["gaps"] = [t for t in e["lengths"] if top is not None and t < top and t not in e["solved"]]
        e["incomplete"] = sorted(t for t in e["incomplete"] if t not in e["solved"])  # unknown outcome
    return out


def _fmt(v, spec=".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def markdown(rows: list[dict], title: str = "") -> str:
    cells = _order([r["cell"] for r in rows], CELL_ORDER)
    tasks = _order([r["task"] for r in rows], TASK_ORDER)
    lengths = sorted({r["seq_len"] for r in rows})
    grid = largest_solved(rows)
    budgets = sorted({r["budget_examples"] for r in rows if r["budget_examples"]})
    out = [f"# {title or 'The long-memory table'}", "",
           f"{len(rows)} runs; lengths {', '.join(map(str, lengths))}; budget {', '.join(f'{b:,}' for b in budgets)} "
           "training examples per run. Largest length solved (examples it took, in thousands); "
           "`-`: solved at no length run; `*`: a shorter length was not solved; `?T`: the run at T stopped "
           "before its budget unsolved (outcome unknown).", "",
           "| cell | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for c in cells:
        entries = []
        for t in tasks:
            e = grid.get((c, t))
            unknown = "".join(f" ?{t}" for t in e["incomplete"]) if e is not None else ""
            if e is None:
                entries.append("(not run)")
            elif e["length"] is None:
                entries.append("-" + unknown)
            else:
                ex = e["examples_at_length"]
                entries.append(f"{e['length']}{'*' if e['gaps'] else ''} ({ex / 1000:.0f}k){unknown}")
        out.append(f"| {c} | " + " | ".join(entries) + " |")
    out += ["", "Every run: loss / baseline at the end of the budget; the probe at step 0 on the first state's "
            "curve (gain: the per-step factor gamma of a log-linear fit to ||dL/dh_(t-k)|| over the lag k; half-life "
            "ln 2 / -ln gamma and horizon (largest lag before g(k)/g(0) < 1e-3) in steps; top Lyapunov exponent per "
            "step).", "",
            "| cell | task | T | status | solved | examples to solve | loss / baseline | gain@0 | half-life@0 "
            "| horizon@0 | lyapunov@0 | s / run |", "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    key = {c: i for i, c in enumerate(cells)}
    tkey = {t: i for i, t in enumerate(tasks)}
    for r in sorted(rows, key=lambda r: (key[r["cell"]], tkey[r["task"]], r["seq_len"])):
        status = r["status"] + (f" (step {r['diverged_step']})" if r.get("diverged_step") else "")
        out.append(f"| {r['cell']} | {r['task']} | {r['seq_len']} | {status} | {'yes' if r['solved'] else 'no'} | "
                   f"{_fmt(r['examples_to_solve'], ',')} | {_fmt(r['loss_over_baseline'])} | "
                   f"{_fmt(r['init_gain'])} | {_fmt(r['init_half_life'])} | {_fmt(r['init_horizon'])} | "
                   f"{_fmt(r['init_lyapunov_max'], '.4f')} | {_fmt(r['wall_time_s'], '.0f')} |")
    return "\n".join(out) + "\n"


def figure(rows: list[dict], path: Path, title: str = "") -> Path:
    """Largest length solved per cell (rows) and task (columns), coloured by length, annotated
    with the examples it took."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cells = _order([r["cell"] for r in rows], CELL_ORDER)
    tasks = _order([r["task"] for r in rows], TASK_ORDER)
    lengths = sorted({r["seq_len"] for r in rows})
    grid = largest_solved(rows)
    level = np.full((len(cells), len(tasks)), np.nan)  # 0 = none solved, i + 1 = lengths[i]
    for i, c in enumerate(cells):
        for j, t in enumerate(tasks):
            e = grid.get((c, t))
            if e is not None:
                level[i, j] = 0 if e["length"] is None else lengths.index(e["length"]) + 1
    colours = ["#e9e9e9"] + [plt.cm.viridis(x) for x in np.linspace(0.25, 0.95, len(lengths))]
    cmap = ListedColormap(colours).with_extremes(bad="white")
    norm = BoundaryNorm(np.arange(-0.5, len(lengths) + 1.5), cmap.N)
    fig, ax = plt.subplots(figsize=(1.9 * len(tasks) + 2.6, 0.42 * len(cells) + 1.6))
    im = ax.imshow(np.ma.masked_invalid(level), cmap=cmap, norm=norm, aspect="auto")
    for i, c in enumerate(cells):
        for j, t in enumerate(tasks):
            e = grid.get((c, t))
            if e is None:
                text = "not run"
            elif e["length"] is None:
                text = "none"
            else:
                text = f"T={e['length']}{'*' if e['gaps'] else ''}\n{e['examples_at_length'] / 1000:.0f}k ex."
            if e is not None and e["incomplete"]:
                text += "\n" + " ".join(f"?{t}" for t in e["incomplete"])
            ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                    color="white" if e is not None and e["length"] is not None and level[i, j] <= len(lengths) / 2
                    else "black")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_yticks(range(len(cells)), cells)
    ax.tick_params(length=0)
    budgets = sorted({r["budget_examples"] for r in rows if r["budget_examples"]})
    bar = fig.colorbar(im, ax=ax, ticks=range(len(lengths) + 1), fraction=0.05)
    bar.ax.set_yticklabels(["none"] + [str(t) for t in lengths])
    bar.set_label("largest T solved")
    ax.set_title((title or "Largest length solved") + f"\n(budget {', '.join(f'{b:,}' for b in budgets)} examples "
                 "per run; * = a shorter T failed; ?T = the run at T stopped early, unsolved)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_figure(fig, path, dpi=130)  # atomically, never through a link
    finally:
        plt.close(fig)
    return path


STATUS_RANK = {"finished": 0, "stopped": 1, "diverged": 2, "failed": 3, "preempted": 4}


def pick(runs: list[Run]) -> list[Run]:
    """One run per (cell, task, length, seed, lr): the most complete (finished > stopped > diverged > failed >
    preempted > unfinished), the first given on a tie."""
    best: dict[tuple, Run] = {}
    for r in runs:
        key = (cell_of(r), task_of(r), r.seq_len, r.seed, (r.config.get("optim") or {}).get("lr"))  # a grid's lrs
        if key not in best or STATUS_RANK.get(r.status, 9) < STATUS_RANK.get(best[key].status, 9):
            best[key] = r
    return list(best.values())


def write(runs: list[Run], out: Path, title: str = "") -> dict[str, Path]:
    rows = [run_row(r) for r in pick(runs)]
    out.mkdir(parents=True, exist_ok=True)
    md = out / "long_memory.md"
    write_text(md, markdown(rows, title))
    js = out / "long_memory.json"
    grid = {f"{c}/{t}": v for (c, t), v in largest_solved(rows).items()}
    write_text(js, json.dumps({"runs": rows, "largest_solved": grid}, indent=1, default=str) + "\n")
    png = figure(rows, out / "long_memory.png", title)
    return {"markdown": md, "json": js, "figure": png}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seqlab.report.long_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("dirs", nargs="+", help="the sweep directory (multirun/long_memory/DATE_TIME) or run directories")
    p.add_argument("-o", "--out", help="output folder (default: DIR/long_memory for one DIR, else ./long_memory)")
    p.add_argument("--title", default="", help="title of the table and figure")
    args = p.parse_args(argv)
    from seqlab.report.cli import load_or_say, write_or_say

    runs = load_or_say(args.dirs, "seqlab.report.long_memory")
    if runs is None:
        return 2
    runs = [r for r in runs if r.summary or r.config]
    if not runs:
        print(f"seqlab.report.long_memory: error: no run directories under {' '.join(args.dirs)}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (Path(args.dirs[0]) / "long_memory" if len(args.dirs) == 1
                                           else Path("long_memory"))
    written = write_or_say(lambda: write(runs, out, args.title), out, "seqlab.report.long_memory")
    if written is None:
        return 2
    print(written["markdown"].read_text().split("\n\nEvery run")[0])
    print(f"\nwritten: {', '.join(str(p) for p in written.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
