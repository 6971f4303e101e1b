"""Verdicts over a learning-rate grid x seeds (the protocol of seqlab.protocol, ``+protocol=lr_seeds``).

One *record* per run (``record``): its keys (cell, task, seq_len and the setting's other overrides), its
learning rate and seed, and what came out (status, solved, examples to solve, loss / baseline, budget).
Records are plain JSON, so the same numbers come from run directories or from committed result files
(``seqlab.results``).

``aggregate(records, by)`` groups them by any set of keys and, per group (a *setting*):

  * per grid point (learning rate): N runs, k solved, the mean of loss / baseline at the end of each run
    with a 95% interval (Student's t over the seeds), and the same for the examples it took to solve
    (over the runs that solved);
  * the best learning rate: highest solved fraction, then fewest mean examples to solve, then the
    smaller learning rate;
  * the learning-rate window: the grid points where at least half the seeds solve; an end of the
    window that is also an end of the grid is marked (the window may extend past the grid there);
  * a verdict that says what it held over, e.g. "solves at lr 3e-3..2e-2 (5/6 seeds), 60k examples
    [45k, 80k]" (seeds and examples inside the window) or "not solved at any of 5 lr x 3 seeds within
    128k examples".

A run counts towards N when it reached an outcome: finished, stopped (early_stop: hopeless at a rung;
not solved) or diverged (not solved; too large a learning rate is an outcome of the grid). A run that
failed, was preempted or has not finished is left out of N and counted as missing.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from seqlab.files import save_figure
from seqlab.report.runs import Run, setting_of

OUTCOME_STATUSES = ("finished", "stopped", "diverged")
NOT_KEYS = ("optim.lr", "seed")  # the protocol's own axes: collapsed, never a grouping key

# Student's t, 0.975 quantile, for 1..30 degrees of freedom (beyond: a Cornish-Fisher expansion)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_ci(values: Iterable[Any], floor: float | None = None) -> dict:
    """{'mean', 'lo', 'hi', 'n'}: the mean of the finite values and its 95% interval, mean -+ t * s / sqrt(n)
    (Student's t, sample std with ddof 1); lo = hi = nan for fewer than 2 values. ``floor``: the least value
    the quantity can take (0 for a loss ratio or a count of examples): lo is clipped there."""
    xs = [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    m = sum(xs) / n
    if n == 1:
        return {"mean": m, "lo": math.nan, "hi": math.nan, "n": 1}
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    h = t975(n - 1) * s / math.sqrt(n)
    return {"mean": m, "lo": m - h if floor is None else max(floor, m - h), "hi": m + h, "n": n}


# ----------------------------------------------------------------------------- records

def cell_of(run: Run) -> str:
    """The run's cell: its ``remedy`` preset (conf/remedy/), else its model."""
    choices = run.config.get("choices") or {}
    return str(choices.get("remedy") or choices.get("model") or (run.config.get("model") or {}).get("_target_", "?"))


def record(run: Run) -> dict:
    """One run as a plain record (JSON-ready)."""
    cfg, s = run.config, run.summary
    keys = {k: v for k, v in setting_of(run).items() if k not in NOT_KEYS}
    keys["cell"] = cell_of(run)
    keys["task"] = str((cfg.get("choices") or {}).get("task") or s.get("task") or keys.get("task", "?"))
    keys["seq_len"] = run.seq_len
    if (cfg.get("model") or {}).get("hidden_size") is not None:
        keys.setdefault("model.hidden_size", str(cfg["model"]["hidden_size"]))
    batch, steps = cfg.get("batch_size"), cfg.get("steps")
    solved_step = s.get("solved_step") if s.get("solved") else None
    stopped_at = s.get("stopped_at_step")
    run_steps = stopped_at if stopped_at is not None else (s.get("diverged_step") or steps)
    return {
        "keys": {k: (v if isinstance(v, (int, float)) else str(v)) for k, v in keys.items()},
        "lr": (cfg.get("optim") or {}).get("lr"), "seed": cfg.get("seed"), "status": run.status,
        "solved": solved_step is not None,
        "examples_to_solve": None if solved_step is None or batch is None else int(solved_step) * int(batch),
        "loss_over_baseline": s.get("loss_over_baseline"),
        "budget_examples": None if steps is None or batch is None else int(steps) * int(batch),
        "steps": steps, "steps_run": run_steps, "wall_time_s": s.get("wall_time_s"),
        "train_time_s": s.get("train_time_s"), "path": str(run.path),
    }


def jsonable(x):
    """NaN and inf -> None, recursively (report.json and result files are strict JSON)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def check_keys(records: Sequence[dict], by: Sequence[str]) -> None:
    """A grouping key the records do not have: a ValueError naming it and the keys they do have."""
    have = set().union(*(r["keys"] for r in records)) if records else set()
    for k in by:
        if k not in have:
            raise ValueError(f"--by {k}: not a key of these runs; their keys: {', '.join(sorted(have))}")


def records_of(runs: Sequence[Run]) -> list[dict]:
    return [record(r) for r in runs]


# ----------------------------------------------------------------------------- aggregation

def key_value(rec: dict, key: str):
    if key in rec["keys"]:
        return rec["keys"][key]
    return rec.get(key)


def default_keys(records: Sequence[dict]) -> list[str]:
    """cell, task and seq_len, then every other key whose value differs between the records (a setting is
    all of the keys, less lr and seed; a key the same everywhere changes no grouping)."""
    keys = set().union(*(r["keys"] for r in records)) if records else set()
    first = [k for k in ("cell", "task", "seq_len") if k in keys]
    varying = [k for k in sorted(keys - set(first) - {"model", "remedy"})
               if len({str(key_value(r, k)) for r in records}) > 1]
    return first + varying


def _sort_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def aggregate(records: Sequence[dict], by: Sequence[str] | None = None) -> list[dict]:
    """One row per setting (the records that share the values of ``by``), with its grid points, best lr,
    window and verdict."""
    by = list(by) if by else default_keys(records)
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(key_value(r, k) for k in by), []).append(r)
    rows = [setting_row(dict(zip(by, key)), recs) for key, recs in groups.items()]
    return sorted(rows, key=lambda row: [_sort_key(row["keys"][k]) for k in by])


def _point(lr: float, recs: list[dict]) -> dict:
    done = [r for r in recs if r["status"] in OUTCOME_STATUSES]
    solved = [r for r in done if r["solved"]]
    return {"lr": lr, "n": len(done), "k": len(solved),
            "fraction": len(solved) / len(done) if done else math.nan,
            "stopped": sum(r["status"] == "stopped" for r in done),
            "diverged": sum(r["status"] == "diverged" for r in done),
            "missing": len(recs) - len(done),
            "seeds": sorted(r["seed"] for r in done if r["seed"] is not None),
            "loss_over_baseline": mean_ci((r["loss_over_baseline"] for r in done if r["status"] != "diverged"), 0.0),
            "examples": mean_ci((r["examples_to_solve"] for r in solved), 0.0)}


def best_point(points: Sequence[dict]) -> dict | None:
    """Highest solved fraction, then fewest mean examples to solve, then the smaller lr; None if none solved."""
    solved = [p for p in points if p["k"] > 0]
    if not solved:
        return None
    return min(solved, key=lambda p: (-p["fraction"], p["examples"]["mean"], p["lr"]))


def window_of(points: Sequence[dict]) -> dict | None:
    """The grid points where at least half the seeds solve: their lrs, the ends, whether an end is an
    end of the grid (the window may go on past it), and whether it is one contiguous run of grid points."""
    grid = [p["lr"] for p in points if p["n"] > 0]
    inside = [p for p in points if p["n"] > 0 and p["k"] >= p["n"] / 2]
    if not inside:
        return None
    lrs = [p["lr"] for p in inside]
    idx = [grid.index(lr) for lr in lrs]
    return {"lrs": lrs, "lo": lrs[0], "hi": lrs[-1], "open_below": lrs[0] == grid[0] and len(grid) > 1,
            "open_above": lrs[-1] == grid[-1] and len(grid) > 1, "contiguous": idx == list(range(idx[0], idx[-1] + 1)),
            "n": sum(p["n"] for p in inside), "k": sum(p["k"] for p in inside)}


def setting_row(keys: dict, recs: list[dict]) -> dict:
    lrs = sorted({r["lr"] for r in recs if r["lr"] is not None})
    points = [_point(lr, [r for r in recs if r["lr"] == lr]) for lr in lrs]
    done = [r for r in recs if r["status"] in OUTCOME_STATUSES]
    window = window_of(points)
    in_window = [r for r in done if window and r["lr"] in window["lrs"] and r["solved"]]
    budgets = sorted({r["budget_examples"] for r in recs if r["budget_examples"]})
    row = {"keys": keys, "n": len(done), "k": sum(r["solved"] for r in done),
           "missing": len(recs) - len(done), "stopped": sum(r["status"] == "stopped" for r in done),
           "diverged": sum(r["status"] == "diverged" for r in done),
           "n_lr": len([p for p in points if p["n"] > 0]),
           "seeds": sorted({r["seed"] for r in done if r["seed"] is not None}),
           "budget_examples": budgets,
           "loss_over_baseline": mean_ci((r["loss_over_baseline"] for r in done if r["status"] != "diverged"), 0.0),
           "examples": mean_ci((r["examples_to_solve"] for r in done if r["solved"]), 0.0),
           "window_examples": mean_ci((r["examples_to_solve"] for r in in_window), 0.0),
           "points": points, "best": best_point(points), "window": window}
    row["verdict"] = verdict(row)
    return row


# ----------------------------------------------------------------------------- words

def fmt_lr(lr: float) -> str:
    """1e-3 -> '1e-3', 0.00316 -> '3.16e-3', 0.02 -> '2e-2'."""
    if lr is None or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        return "-"
    exp = math.floor(math.log10(lr))
    mant = float(f"{lr / 10 ** exp:.3g}")
    if mant >= 10:
        mant, exp = mant / 10, exp + 1
    return f"{mant:g}e{exp}"


def fmt_examples(x: float) -> str:
    """Examples in thousands: 60000 -> '60k', 6400 -> '6.4k'."""
    if x is None or not math.isfinite(x):
        return "-"
    k = x / 1000
    return f"{k:.0f}k" if k >= 10 else f"{k:.2g}k"


def fmt_ci(ci: dict, fmt=lambda v: f"{v:.3g}") -> str:
    """'0.52 [0.31, 0.73]'; a single value alone; '-' for none."""
    if ci["n"] == 0:
        return "-"
    if ci["n"] == 1 or not math.isfinite(ci["lo"]):
        return fmt(ci["mean"]) + " (1 run)"
    return f"{fmt(ci['mean'])} [{fmt(ci['lo'])}, {fmt(ci['hi'])}]"


def window_text(w: dict | None) -> str:
    if w is None:
        return "none"
    if not w["contiguous"]:
        text = ", ".join(fmt_lr(lr) for lr in w["lrs"])
    else:
        text = fmt_lr(w["lo"]) if w["lo"] == w["hi"] else f"{fmt_lr(w['lo'])}..{fmt_lr(w['hi'])}"
    edges = [e for e, on in (("below", w["open_below"]), ("above", w["open_above"])) if on]
    return text + (f" (grid edge: may extend {' and '.join(edges)})" if edges else "")


def verdict(row: dict) -> str:
    """The verdict with its qualifier: where it solves, over how many seeds, in how many examples; or what
    it was not solved over."""
    budget = "/".join(fmt_examples(b) for b in row["budget_examples"]) or "?"
    n_seeds = len(row["seeds"])
    extra = [f"{row[k]} {k}" for k in ("stopped", "diverged") if row[k]]
    if row["missing"]:
        extra.append(f"{row['missing']} run{'s' if row['missing'] > 1 else ''} missing")
    tail = f" ({', '.join(extra)})" if extra else ""
    if row["n"] == 0:
        return f"no run reached an outcome{tail}"
    w = row["window"]
    if w is not None:
        ex = row["window_examples"]
        examples = fmt_examples(ex["mean"]) + " examples"
        if ex["n"] > 1:
            examples += f" [{fmt_examples(ex['lo'])}, {fmt_examples(ex['hi'])}]"
        return f"solves at lr {window_text(w)} ({w['k']}/{w['n']} seeds), {examples}"
    if row["k"] == 0:
        return f"not solved at any of {row['n_lr']} lr x {n_seeds} seeds within {budget} examples{tail}"
    where = ", ".join(f"lr {fmt_lr(p['lr'])}: {p['k']}/{p['n']}" for p in row["points"] if p["k"])
    return (f"solved by {row['k']} of {row['n']} runs ({where}) but at no lr by half its seeds, "
            f"within {budget} examples{tail}")


# ----------------------------------------------------------------------------- tables

HEADER = ["N", "solved k/N", "loss / baseline (95% CI)", "examples to solve (95% CI)", "best lr", "lr window",
          "verdict"]


def table(rows: Sequence[dict], by: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the verdict table (one line per setting)."""
    header = [*by, *HEADER]
    cells = []
    for r in rows:
        best = r["best"]
        best_text = "-" if best is None else f"{fmt_lr(best['lr'])} ({best['k']}/{best['n']})"
        cells.append([*(str(r["keys"][k]) for k in by), str(r["n"]), f"{r['k']}/{r['n']}",
                      fmt_ci(r["loss_over_baseline"]), fmt_ci(r["examples"], fmt_examples), best_text,
                      window_text(r["window"]), r["verdict"]])
    return header, cells


def grid_table(rows: Sequence[dict], by: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the per-grid-point table (one line per setting x lr)."""
    header = [*by, "lr", "N", "solved k/N", "stopped", "diverged", "loss / baseline (95% CI)",
              "examples to solve (95% CI)"]
    cells = []
    for r in rows:
        for p in r["points"]:
            cells.append([*(str(r["keys"][k]) for k in by), fmt_lr(p["lr"]), str(p["n"]), f"{p['k']}/{p['n']}",
                          str(p["stopped"]), str(p["diverged"]), fmt_ci(p["loss_over_baseline"]),
                          fmt_ci(p["examples"], fmt_examples)])
    return header, cells


def notes(records: Sequence[dict]) -> list[str]:
    return ["Seeds collapsed per setting and learning rate. N: runs that reached an outcome (finished, "
            "stopped early as hopeless, or diverged: each counts as not solved unless it met the bar). "
            "loss / baseline: at the end of each run (at the stop for a stopped run; diverged runs left out); "
            "examples to solve: over the runs that solved. Intervals: 95% for the mean, Student's t over the "
            "runs (none for one run), its lower end clipped at 0 (neither can be negative). Best lr: highest solved fraction, then fewest examples. lr window: the "
            "grid points where at least half the seeds solve; the verdict's seeds and examples are inside it."]


# ----------------------------------------------------------------------------- figure

def plot_solved_vs_lr(rows: Sequence[dict], path, title: str = "", line_keys: Sequence[str] | None = None,
                      panel_keys: Sequence[str] = ("task", "seq_len")):
    """Solved fraction against learning rate: one line per cell (the keys other than the panel's), one
    panel per task/T, each line nudged up or down by at most 0.012 x (lines / 2) so lines on the same values
    stay visible. None when there is nothing to draw."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if any(p["n"] for p in r["points"])]
    if not rows:
        return None
    panel_keys = [k for k in panel_keys if all(k in r["keys"] for r in rows)]
    line_keys = list(line_keys) if line_keys is not None else [k for k in rows[0]["keys"] if k not in panel_keys]
    panels = sorted({tuple(r["keys"][k] for k in panel_keys) for r in rows}, key=lambda t: [_sort_key(v) for v in t])
    lines = list(dict.fromkeys(" ".join(str(r["keys"][k]) for k in line_keys) for r in rows))
    cmap = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20")
    color = {lab: cmap(i % cmap.N) for i, lab in enumerate(lines)}
    ncol = min(len(panels), 3)
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol + 2.2, 3.2 * nrow), squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels):
        for r in rows:
            if tuple(r["keys"][k] for k in panel_keys) != panel:
                continue
            pts = [p for p in r["points"] if p["n"]]
            label = " ".join(str(r["keys"][k]) for k in line_keys)
            nudge = 0.012 * (lines.index(label) - (len(lines) - 1) / 2)  # lines on one value stay visible apart
            ax.plot([p["lr"] for p in pts], [p["fraction"] + nudge for p in pts], "o-", color=color[label],
                    label=label, alpha=0.85, ms=4)
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(", ".join(f"{'T' if k == 'seq_len' else k} = {v}" if k == "seq_len" else str(v)
                               for k, v in zip(panel_keys, panel)) or "all", fontsize=9)
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("solved fraction (seeds)")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    fig.legend(list(handles.values()), list(handles.keys()), loc="center right", fontsize=7, frameon=False)
    fig.suptitle(title or "Solved fraction against learning rate", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / (4.2 * ncol + 2.2), 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)  # atomically, never through a link
    plt.close(fig)
    return path


def log_wandb_table(rows: Sequence[dict], by: Sequence[str], out_dir, title: str = "") -> str | None:
    """The verdict table as a W&B Table (``verdicts``) in an offline run under ``out_dir/wandb``, with the
    per-lr table (``grid``); returns the run's id (None when W&B could not start)."""
    from seqlab.tracking import WandbTracker

    tracker = WandbTracker(run_dir=out_dir, config={"by": list(by), "title": title}, name=title or "verdicts",
                           job_type="report")
    header, cells = table(rows, by)
    tracker.table("verdicts", header, cells)
    header, cells = grid_table(rows, by)
    tracker.table("grid", header, cells)
    run_id = tracker.run_id
    tracker.finish()
    return run_id
