"""Results as data: the lab's results tables, generated from committed result files by one command.

    python -m seqlab.results                  # rewrite the generated blocks of DOCS (docs/results.md, docs/population.md)
    python -m seqlab.results --check          # exit 1 (and say which block) if that would change anything
    python -m seqlab.results collect SWEEP_DIR [...] -o results/long_memory/NAME.json --command "..." \
        [--note "..."]                        # a finished (or partly finished) sweep -> one result file

A result file (``results/<table>/<part>.json``) holds the command that made it, a note on what was reduced,
and one record per run (``seqlab.report.verdicts.record``, plus its held-out curve of loss / baseline):
small, plain JSON, no paths of the machine it ran on. The parts of one table are merged (the same run in
two parts: the more complete one is kept), so a sweep that could not finish in one sitting is committed
part by part and the table grows as parts land.

``docs/results.md`` (and ``docs/population.md``: ``DOCS``) hold hand-written prose and generated blocks
between markers::

    <!-- results:long_memory begin -->  ...  <!-- results:long_memory end -->

Only the blocks are rewritten; a block whose table has no result files says so. Blocks:
``long_memory`` (verdicts over lr x seeds per cell, task and T), ``long_memory_detail`` (every setting's
verdict row and per-lr row), ``protocol_cost`` (what each part cost, with and without early stopping,
and what the stopping rule would have saved on full-budget parts), ``recipes`` (paper-recipe runs) and
``long_memory_single_lr`` (the earlier one-lr, one-seed table, from benchmarks/results/long_memory.json) and
``claims`` (the training claims' presets over lr x seeds, results/claims/: per setting and lr, divergence, loss
and the first hidden layer's gradient and update over the last's), ``population_cells`` (docs/population.md:
a population's training step per member against a lone run, per cell, from benchmarks/results/population-sizes-*.json).
Every other table directory ``results/<table>/`` (e.g. ``task_suite``) gets two blocks of the same kind as
the long-memory table's: ``<table>`` (a row per cell, a column per task and T) and ``<table>_detail``.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Sequence

from seqlab.files import write_text
from seqlab.protocol import EarlyStop
from seqlab.report import verdicts as V

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
DOC = ROOT / "docs" / "results.md"
DOCS = (DOC, ROOT / "docs" / "population.md")  # the pages whose marked blocks this command writes
FIGURE = ROOT / "docs" / "figures" / "long_memory_lr_grid.png"
STATUS_RANK = {"finished": 0, "stopped": 1, "diverged": 2, "failed": 3, "preempted": 4}
CELL_ORDER = ("rnn", "rnn_tanh", "irnn", "lstm", "lstm_forget1", "lstm_chrono", "gru", "indrnn", "exprnn", "lru",
              "mingru", "minlstm", "cornn", "selective")  # remedies (conf/remedy/) and plain models alike
TASK_ORDER = ("adding", "copy", "delayed_recall")


# ----------------------------------------------------------------------------- collecting

def collect(dirs: Sequence[str], command: str, note: str = "") -> dict:
    """The result file of the runs under ``dirs``: command, note, records (with their held-out curves)."""
    from seqlab.claims import layer_ratio
    from seqlab.report.runs import load_runs

    runs = load_runs(dirs)
    records = []
    for run in runs:
        if run.status == "unfinished":  # still running (or killed): a later collect picks it up
            continue
        r = V.record(run)
        r.pop("path")
        r["batch_size"] = run.config.get("batch_size")
        r["evals"] = [[m["step"], round(m["eval/loss_over_baseline"], 6)] for m in run.metrics
                      if isinstance(m.get("eval/loss_over_baseline"), (int, float))]
        early = run.config.get("early_stop") or {}
        r["early_stop"] = {"rungs": list(early["rungs"]), "margin": early.get("margin")} if early.get("rungs") else None
        r["eval_every"] = run.config.get("eval_every")
        ratios = {name: layer_ratio(run, metric) for name, metric in (("grad", "grad_norm"), ("update", "update_ratio"))}
        if any(v is not None for v in ratios.values()):  # a net of two or more layers that logged them per layer
            r["first_over_last"] = ratios
        records.append(r)
    return {"command": command, "note": note, "records": V.jsonable(records)}


def load_table(name: str, root: Path = RESULTS) -> tuple[list[dict], list[dict]]:
    """(parts, merged records) of one table: every results/<name>/*.json, one record per run key."""
    parts, best = [], {}
    for path in sorted((root / name).glob("*.json")):
        data = json.loads(path.read_text())
        data["file"] = path.relative_to(root.parent).as_posix()
        parts.append(data)
        for r in data["records"]:
            key = (json.dumps(r["keys"], sort_keys=True), r["lr"], r["seed"])
            if key not in best or STATUS_RANK.get(r["status"], 9) < STATUS_RANK.get(best[key]["status"], 9):
                best[key] = r
    return parts, list(best.values())


# ----------------------------------------------------------------------------- blocks

def _md(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(esc(c) for c in row) + " |" for row in rows)])


def _order(values, preferred):
    values = sorted(set(values), key=lambda v: V._sort_key(v))
    return [v for v in preferred if v in values] + [v for v in values if v not in preferred]


def _sources(parts: list[dict]) -> list[str]:
    out = []
    for p in parts:
        out.append(f"- `{p['file']}` ({len(p['records'])} runs): `{p['command']}`" + (f". {p['note']}" if p["note"] else ""))
    return out


def short_verdict(row: dict) -> str:
    """A grid cell: the window and its seeds, with the examples; or 'none (0/N)'; 'k/N' for scattered solves."""
    w = row["window"]
    if w is not None:
        ex = row["window_examples"]
        return f"{V.window_text(w).split(' (grid')[0]}{'+' if w['open_above'] else ''} ({w['k']}/{w['n']}), " \
               f"{V.fmt_examples(ex['mean'])}"
    if row["k"]:
        return f"scattered ({row['k']}/{row['n']})"
    return f"none (0/{row['n']})"


def grid_block(table: str, parts: list[dict], records: list[dict], cell_order: Sequence[str] = (),
               task_order: Sequence[str] = (), missing: str = "(not run)",
               missing_text: str = "this part has not been run yet") -> str:
    """A table's verdicts over lr x seeds: a row per cell, a column per task and T, each entry the short
    verdict of its setting (``short_verdict``), after the table's sources (each part's command and note)."""
    if not records:
        return f"No result files yet under results/{table}/."
    rows = V.aggregate(records, ["cell", "task", "seq_len"])
    cells = _order([r["keys"]["cell"] for r in rows], cell_order)
    cols = _order([(r["keys"]["task"], r["keys"]["seq_len"]) for r in rows], ())
    cols = sorted(cols, key=lambda c: (task_order.index(c[0]) if c[0] in task_order else 99, str(c[0]),
                                       V._sort_key(c[1])))
    by = {(r["keys"]["cell"], r["keys"]["task"], r["keys"]["seq_len"]): r for r in rows}
    lrs = sorted({r["lr"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    budgets = sorted({r["budget_examples"] for r in records if r["budget_examples"]})
    widths = sorted({str(r["keys"].get("model.hidden_size")) for r in records}, key=V._sort_key)
    head = [f"{len(records)} runs: learning rates {', '.join(V.fmt_lr(x) for x in lrs)} x seeds "
            f"{', '.join(map(str, seeds))}; budget {', '.join(V.fmt_examples(b) for b in budgets)} examples per run; "
            f"H = {', '.join(widths)}. Each entry: the learning-rate window (grid points where at least half the "
            "seeds solve; `+`: it reaches the grid's largest lr and may go on) with the seeds that solved there and "
            "their mean examples to solve; `none (0/N)`: no run of the grid solved; `scattered`: some runs solved, "
            f"at no lr half of the seeds. `{missing}`: {missing_text}.", "",
            *_sources(parts), ""]
    grid = [[c, *(short_verdict(by[(c, t, T)]) if (c, t, T) in by else missing for t, T in cols)] for c in cells]
    return "\n".join(head) + "\n" + _md(["cell", *(f"{t} T={T}" for t, T in cols)], grid)


def long_memory_block(parts: list[dict], records: list[dict]) -> str:
    return grid_block("long_memory", parts, records, CELL_ORDER, TASK_ORDER)


def detail_block(records: list[dict], table: str = "long_memory", cell_order: Sequence[str] = CELL_ORDER,
                 task_order: Sequence[str] = TASK_ORDER) -> str:
    if not records:
        return f"No result files yet under results/{table}/."
    by = ["cell", "task", "seq_len"]
    rows = V.aggregate(records, by)
    order = {c: i for i, c in enumerate(_order([r["keys"]["cell"] for r in rows], cell_order))}
    rows.sort(key=lambda r: (task_order.index(r["keys"]["task"]) if r["keys"]["task"] in task_order else 99,
                             str(r["keys"]["task"]), V._sort_key(r["keys"]["seq_len"]), order[r["keys"]["cell"]]))
    return "\n".join([*V.notes(records), "", _md(*V.table(rows, by)), "", "Per learning rate:", "",
                      _md(*V.grid_table(rows, by))])


def cost_rows(parts: list[dict]) -> list[list[str]]:
    """Per part: runs, stopped, examples trained of the budget, wall time as run and without stopping
    (a stopped run's own rate x its whole budget), and for a full-budget part what the default rule
    (conf/early_stop/rungs.yaml) would have stopped, saved, and lost (runs it would have stopped that went
    on to solve, or that ended under half the baseline without meeting the bar: still learning)."""
    rule = EarlyStop()
    out = []
    for p in parts:
        recs = [r for r in p["records"] if r["status"] in V.OUTCOME_STATUSES]
        if not recs:
            continue
        stopped = [r for r in recs if r["status"] == "stopped"]
        budget = sum(r["steps"] for r in recs)
        trained = sum(r["steps_run"] or r["steps"] for r in recs)
        wall = sum(r["wall_time_s"] or 0 for r in recs)
        full = sum((r["wall_time_s"] or 0) * (r["steps"] / r["steps_run"] if r["status"] == "stopped" and r["steps_run"]
                                              else 1) for r in recs)
        live = any(r.get("early_stop") for r in recs)
        if live:
            replay = "(stopping was on)"
        else:
            stops = {id(r): rule.stop_step(r.get("evals") or [], r["steps"], r.get("eval_every") or 1) for r in recs}
            would = [r for r in recs if stops[id(r)] is not None]
            saved = sum(r["steps"] - stops[id(r)] for r in would)
            lost = [r for r in would if r["solved"]]
            learning = [r for r in would if not r["solved"] and (r["loss_over_baseline"] or 1) < 0.5]
            cells = lambda rs: f" ({', '.join(sorted({str(r['keys']['cell']) for r in rs}))})" if rs else ""  # noqa: E731
            replay = (f"would stop {len(would)}/{len(recs)}, saving {saved / budget:.0%} of the examples; "
                      f"{len(lost)} of them went on to solve{cells(lost)}, {len(learning)} more ended under half "
                      f"the baseline{cells(learning)}")
        out.append([p["file"].rsplit("/", 1)[-1], str(len(recs)), f"{len(stopped)}",
                    f"{trained / budget:.0%}", f"{wall / 60:.0f} min", f"{full / 60:.0f} min",
                    f"{wall / full:.0%}" if full else "-", replay])
    return out


def cost_block(parts: list[dict]) -> str:
    rows = cost_rows(parts)
    if not rows:
        return "No result files yet under results/long_memory/."
    live = [p for p in parts if any(r.get("early_stop") for r in p["records"])]
    if len(live) > 1:  # the parts run with stopping on, together
        (total,) = cost_rows([{"file": "all parts with stopping on", "records": [r for p in live for r in p["records"]]}])
        rows.append([f"**{total[0]}**", *total[1:]])
    return ("Job-minutes of wall time (one thread per job, on this shared 2-core machine; the basic launcher "
            "runs a part's jobs one after another). 'Without stopping' scales each stopped run's own wall time "
            "by its budget over the steps it ran; a full-budget part replays the default rule (rungs 0.25, 0.5 "
            "of the budget, margin 0.05) on its held-out curves.\n\n"
            + _md(["part", "runs", "stopped", "examples trained / budget", "wall (as run)", "wall without stopping",
                   "ratio", "default rule replayed"], rows))


def recipes_block(parts: list[dict]) -> str:
    if not parts:
        return "No result files yet under results/recipes/."
    rows = []
    for p in parts:
        for r in p["records"]:
            k = r["keys"]
            outcome = (f"solved at {V.fmt_examples(r['examples_to_solve'])} examples" if r["solved"] else "not solved")
            last = r["evals"][-1] if r.get("evals") else None
            status = r["status"] + (f" (last evaluation: step {last[0]} of {r['steps']})"
                                    if r["status"] == "preempted" and last else "")
            rows.append([p["file"].rsplit("/", 1)[-1].removesuffix(".json"), str(k.get("cell")), str(k.get("task")),
                         str(k.get("seq_len")), str(k.get("model.hidden_size", "-")), V.fmt_lr(r["lr"]), V.fmt_examples(r["budget_examples"]), status, outcome,
                         f"{last[1]:.3g}" if last else "-", f"`{p['command']}`"])
    return _md(["recipe", "cell", "task", "T", "H", "lr", "budget", "status", "outcome", "last loss / baseline",
                "command"], rows)


def _geo(values) -> float | None:
    xs = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def claims_block(parts: list[dict], records: list[dict]) -> str:
    """The training claims under the protocol (results/claims/): per claim preset (the runs' ``experiment``),
    its sources, then one row per setting (the keys its runs differ in, e.g. optim or grad_clip) and learning
    rate: N, solved k/N, diverged, loss / baseline, and the first hidden layer's gradient norm and update
    ratio over the last hidden layer's (``seqlab.claims.layer_ratio``: the median over training; the
    geometric mean over the seeds); then each setting's verdict over the grid."""
    if not records:
        return "No result files yet under results/claims/."
    exps = sorted({str(r["keys"].get("experiment")) for r in records})
    out = ["Per claim preset and learning rate. N: runs that reached an outcome; diverged: stopped by a non-finite "
           "loss or gradient (counted in N, not solved), with the steps it happened at; loss / baseline: held-out, "
           "at the end of each run, diverged runs left out (mean and 95% interval over the seeds); examples to "
           "solve: over the runs that met the task's bar; first / last layer: the first hidden layer's "
           "gradient norm (update ratio ||dW|| / ||W||) over the last hidden layer's, the median over training, the "
           "geometric mean over the seeds (`-`: a one-layer net, or every run diverged before it was logged)."]
    for exp in exps:
        recs = [r for r in records if str(r["keys"].get("experiment")) == exp]
        by = V.default_keys(recs)
        shown = [k for k in by if len({str(V.key_value(r, k)) for r in recs}) > 1] or ["cell"]
        rows = V.aggregate(recs, by)
        budgets = sorted({r["budget_examples"] for r in recs if r["budget_examples"]})
        first = rows[0]["keys"]
        cells = ", ".join(map(str, _order([r["keys"]["cell"] for r in recs], CELL_ORDER)))
        out += ["", f"**{exp}** ({cells} on {first['task']}"
                    + (f", T = {first['seq_len']}" if first["seq_len"] not in (None, 1) else "")
                    + f"; {len(recs)} runs; budget {', '.join(V.fmt_examples(b) for b in budgets)} examples per run)", ""]
        exp_parts = [p for p in parts if any(str(r["keys"].get("experiment")) == exp for r in p["records"])]
        out += _sources(exp_parts)
        table = []
        for row in rows:
            for pt in row["points"]:
                at = [r for r in recs if r["lr"] == pt["lr"] and all(V.key_value(r, k) == row["keys"][k] for k in by)]
                ratio = lambda name: _geo((r.get("first_over_last") or {}).get(name) for r in at)  # noqa: E731
                div = sorted(r["steps_run"] for r in at if r["status"] == "diverged" and r["steps_run"] is not None)
                table.append([*(str(row["keys"][k]) for k in shown), V.fmt_lr(pt["lr"]), str(pt["n"]),
                              f"{pt['k']}/{pt['n']}", f"{pt['diverged']}/{pt['n']}"
                              + (f" (step {', '.join(map(str, div))})" if div else ""), V.fmt_ci(pt["loss_over_baseline"]),
                              V.fmt_ci(pt["examples"], V.fmt_examples), _fmt_ratio(ratio("grad")),
                              _fmt_ratio(ratio("update"))])
        out += ["", _md([*shown, "lr", "N", "solved k/N", "diverged", "loss / baseline (95% CI)",
                         "examples to solve (95% CI)", "first / last layer: gradient",
                         "first / last layer: update ratio"], table), ""]
        out += ["- " + ", ".join(f"{k}={row['keys'][k]}" for k in shown) + f": {row['verdict']}" for row in rows]
        for part in exp_parts:  # a full-budget part: what the protocol's default stopping rule would have done
            for cost in cost_rows([part]):
                if not cost[-1].startswith("(stopping was on)"):
                    out.append(f"- the default stopping rule (rungs 0.25, 0.5 of the budget; margin 0.05) replayed on "
                               f"`{cost[0]}`: {cost[-1]}")
    return "\n".join(out)


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def single_lr_block(root: Path = ROOT) -> str:
    path = root / "benchmarks" / "results" / "long_memory.json"
    if not path.exists():
        return "benchmarks/results/long_memory.json is missing."
    from seqlab.report.long_memory import markdown

    rows = json.loads(path.read_text())["runs"]
    text = markdown(rows, "x").split("\n\nEvery run")[0]
    return text.split("\n", 2)[2].strip()  # without the title line


def population_cells_block(root: Path = ROOT) -> str:
    """Per member, one training step of a population against a lone run, per cell, at the trainability sizes
    and the long-memory sizes: from ``benchmarks/results/population-sizes-{small,long}-*.json``
    (``benchmarks/population_sizes.py``); where two files measured one cell at one size, the newer."""
    newest: dict[tuple[str, str], dict] = {}
    for size in ("small", "long"):
        for path in sorted((root / "benchmarks" / "results").glob(f"population-sizes-{size}*.json")):
            data = json.loads(path.read_text())
            cell = next((o.split("=", 1)[1] for o in data["sizes"] if o.startswith("model=")), "?")
            data["file"] = path.name
            if (size, cell) not in newest or data["started"] > newest[size, cell]["started"]:
                newest[size, cell] = data
    if not newest:
        return "No population-sizes result file in benchmarks/results/."
    ms = {size: sorted({r["members"] for (s, _), d in newest.items() if s == size for r in d["rows"]
                        if r["members"] != "lone"}) for size in ("small", "long")}
    header = ["cell", *(h for size in ("small", "long") for h in
                        [f"lone ms ({size})", *(f"M = {m}" for m in ms[size])])]
    rows = []
    for cell in _order({c for _, c in newest}, CELL_ORDER):
        row = [cell]
        for size in ("small", "long"):
            data = newest.get((size, cell))
            got = {r["members"]: r for r in data["rows"]} if data else {}
            row += [f"{got['lone']['step_ms_per_member']:.1f}" if "lone" in got else "-",
                    *(f"{got[m]['per_member_speedup']:.2f}x" if m in got else "-" for m in ms[size])]
        rows.append(row)
    files = sorted(d["file"] for d in newest.values())
    return _md(header, rows) + "\n\nFrom " + ", ".join(f"`{f}`" for f in files) + "."


SPECIAL_TABLES = ("long_memory", "recipes", "claims")  # their own blocks; every other results/<table>/ is a grid table


def blocks(root: Path = ROOT) -> dict[str, str]:
    lm_parts, lm = load_table("long_memory", root / "results")
    rec_parts, _ = load_table("recipes", root / "results")
    out = {"long_memory": long_memory_block(lm_parts, lm), "long_memory_detail": detail_block(lm),
           "protocol_cost": cost_block(lm_parts), "recipes": recipes_block(rec_parts),
           "long_memory_single_lr": single_lr_block(root), "claims": claims_block(*load_table("claims", root / "results")),
           "population_cells": population_cells_block(root)}
    for d in sorted(p for p in (root / "results").glob("*") if p.is_dir() and p.name not in SPECIAL_TABLES):
        parts, records = load_table(d.name, root / "results")
        out[d.name] = grid_block(d.name, parts, records, CELL_ORDER, missing="-",
                                 missing_text="not a cell of that task's sweep")
        out[f"{d.name}_detail"] = detail_block(records, d.name, CELL_ORDER, ())
    return out


MARK = re.compile(r"(<!-- results:(\w+) begin -->\n)(.*?)(<!-- results:\2 end -->)", re.S)


def render(text: str, generated: dict[str, str], doc: str = "docs/results.md") -> tuple[str, list[str]]:
    """``text`` with every marked block replaced; also the names of the blocks that changed."""
    changed = []

    def sub(m):
        name = m.group(2)
        if name not in generated:
            raise ValueError(f"{doc}: unknown block results:{name}; blocks: {', '.join(generated)}")
        new = generated[name].rstrip() + "\n"
        if new != m.group(3):
            changed.append(name)
        return m.group(1) + new + m.group(4)

    return MARK.sub(sub, text), changed


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["collect"]:
        p = argparse.ArgumentParser(prog="python -m seqlab.results collect")
        p.add_argument("dirs", nargs="+")
        p.add_argument("-o", "--out", required=True, help="results/<table>/<part>.json")
        p.add_argument("--command", required=True, help="the command that ran the sweep")
        p.add_argument("--note", default="", help="what was reduced, what remains")
        a = p.parse_args(argv[1:])
        try:
            data = collect(a.dirs, a.command, a.note)
        except FileNotFoundError as e:
            print(f"seqlab.results: error: {e}", file=sys.stderr)
            return 2
        if not data["records"]:
            print(f"seqlab.results: error: no finished, stopped or diverged run under {' '.join(a.dirs)}",
                  file=sys.stderr)
            return 2
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, json.dumps(data, indent=1) + "\n")
        print(f"{out}: {len(data['records'])} runs")
        return 0
    p = argparse.ArgumentParser(prog="python -m seqlab.results", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page's blocks are not current")
    p.add_argument("--figures", action="store_true",
                   help=f"also draw {FIGURE.relative_to(ROOT)} (solved fraction against lr, a line per cell, a panel "
                        "per task/T; pixels are not compared by --check)")
    a = p.parse_args(argv)
    if a.figures and not a.check:
        _, lm = load_table("long_memory")
        rows = V.aggregate(lm, ["cell", "task", "seq_len"])
        if V.plot_solved_vs_lr(rows, FIGURE, "Long-memory table: solved fraction of the seeds against the learning "
                               "rate", line_keys=["cell"]) is not None:
            print(f"{FIGURE.relative_to(ROOT)} written")
    generated, stale = blocks(), []
    for doc in DOCS:
        name = doc.relative_to(ROOT).as_posix()
        text = doc.read_text()
        new, changed = render(text, generated, name)
        if changed:
            stale.append(f"{name} (blocks: {', '.join(changed)})")
        if a.check:
            continue
        if new != text:
            write_text(doc, new)
        print(f"{name}: {', '.join(changed) or 'nothing'} changed")
    if a.check:
        if stale:
            print(f"seqlab.results: not current: {'; '.join(stale)}; run python -m seqlab.results", file=sys.stderr)
            return 1
        print(f"{', '.join(d.relative_to(ROOT).as_posix() for d in DOCS)}: current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
