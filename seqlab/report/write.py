"""Writing a report folder: report.md, report.html, report.json and the figures."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

from seqlab.files import write_text
from seqlab.report.across_tasks import task_label, write_across_tasks
from seqlab.report.figures import (_colors, _trained, has_training, plot_decay_curves, plot_learning_curves,
                                   plot_probe_vs_seq_len, theory_notes)
from seqlab.report.layers import _depth_at, _depth_ref, plot_depth_curves, plot_layer_speed
from seqlab.report.runs import DEFAULT_CURVE, FINISHED, Run, group_runs
from seqlab.report.stats import _status_counts, curves_in, setting_row
from seqlab.report import verdicts as verdicts_mod
from seqlab.report.trainability import (TABLE_HEADER as TRAIN_HEADER, misses_lines, notes as train_notes_of,
                                        plot_trainability, table_rows as train_rows, trainability)
from seqlab.report.tables import (RUN_HEADER, _html_table, _json_row, _markdown_table, md_escape, run_cells,
                                  table_cells, table_header)


FIGURES = ("decay_curves", "learning_curves", "probe_vs_seq_len", "depth_curves", "layer_speed")


def figure_notes(settings, runs, written: dict) -> list[str]:
    """What a figure leaves out, said where the reader looks: no learning curves for runs that did not
    train, depth figures for the stacked settings only."""
    notes = []
    if "learning_curves" not in written and runs and not has_training(runs):
        notes.append("No learning curves: no run evaluated after step 0 (steps=0), and one point per run is "
                     "no curve.")
    stacked = [s for s in settings if any(_depth_at(r, "init") or _depth_at(r, "final") for r in s.runs)]
    if "depth_curves" in written and len(stacked) < len(settings):
        notes.append(f"depth_curves.png: the {len(stacked)} of {len(settings)} settings with more than one layer "
                     f"({', '.join(s.label for s in stacked)}).")
    return notes


def write_report(runs: Sequence[Run], out: str | Path, curve: str = DEFAULT_CURVE, title: str = "",
                 root: Path | None = None, by: Sequence[str] | None = None) -> dict[str, Path]:
    """Write the table(s) and figures for ``runs`` into ``out``; returns what was written. The verdicts
    over learning rates and seeds (seqlab.report.verdicts) are a section when the runs span more than one
    learning rate or ``by`` is given, grouped by ``by`` (default: every key of a setting)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = group_runs(runs)
    rows = [setting_row(s, curve) for s in settings]
    colors = _colors(settings)
    written: dict[str, Path] = {}
    figs = {"decay_curves": plot_decay_curves(settings, out / "decay_curves.png", curve, title),
            "learning_curves": plot_learning_curves(settings, out / "learning_curves.png", title),
            "probe_vs_seq_len": plot_probe_vs_seq_len(rows, out / "probe_vs_seq_len.png", colors, title,
                                                      trained=_trained(runs)),
            "depth_curves": plot_depth_curves(settings, out / "depth_curves.png", title),
            "layer_speed": plot_layer_speed(settings, out / "layer_speed.png", title)}
    written.update({k: v for k, v in figs.items() if v is not None})
    if len({task_label(s) for s in settings}) > 1:  # one cell across tasks, on its own page
        written.update(write_across_tasks(settings, out, curve, title))
    train_result = trainability(runs, curve)
    if "refused" not in train_result:
        fig = plot_trainability(runs, out / "trainability.png", curve, title, train_result)
        if fig is not None:
            written["trainability"] = fig
    train_notes = train_notes_of(train_result)
    train_table = [] if "refused" in train_result else train_rows(train_result)

    verdict = _verdicts(runs, out, title, by)
    if verdict.get("figure") is not None:
        written["solved_vs_lr"] = verdict["figure"]
    label_of = {id(r): s.label for s in settings for r in s.runs}
    table = [table_cells(r) for r in rows]
    run_table = [run_cells(r, label_of[id(r)], root) for r in runs]
    n_bad = sum(not r.finished for r in runs)
    notes = [f"{len(runs)} runs in {len(settings)} settings; {len(runs) - n_bad} finished, {n_bad} not "
             f"({', '.join(f'{n} {k}' for k, n in sorted(_status_counts(runs).items()) if k != FINISHED) or 'none'}).",
             "Each cell: mean ± sample std over the seeds (finished runs; the step-0 probe counts every run "
             "that got that far). `solved`: finished runs that reached the task's bar; `solved step` averages "
             f"those. Probe numbers are for the curve `{curve}` (h_l0: the gradient w.r.t. the first layer's "
             "hidden state; c_l0: an LSTM's cell state): "
             "half-life = ln 2 / −ln γ (∞ when γ ≥ 1), horizon = largest lag with g(k)/g(0) ≥ the probe's floor, "
             "λ1 = top Lyapunov exponent of layer 0, per step."]
    notes += curve_notes(settings, rows, curve)
    notes += figure_notes(settings, runs, written)
    notes += theory_notes(settings, curve, time="decay_curves" in written,
                          depth_ref=_depth_ref if "depth_curves" in written else None)
    if "across_tasks_md" in written:
        notes.append("One cell across the tasks, side by side: across_tasks.md (across_tasks.html).")
    md = [f"# {md_escape(title or 'seqlab report')}", "", *map(md_escape, notes), "",
          _markdown_table(table_header(), table), ""]
    for name in FIGURES:
        if name in written:
            md += [f"![{name}]({written[name].name})", ""]
    if verdict:
        md += ["## Verdicts over learning rates and seeds", "", *verdict["notes"], "",
               _markdown_table(*verdict["table"]), "", "Per learning rate:", "", _markdown_table(*verdict["grid"]), ""]
        if "solved_vs_lr" in written:
            md += [f"![solved_vs_lr]({written['solved_vs_lr'].name})", ""]
    md += ["## Trainability: does the step-0 probe predict which runs solve?", "", *train_notes, ""]
    if train_table:
        md += [_markdown_table(TRAIN_HEADER, train_table), "", *misses_lines(train_result), ""]
        if "trainability" in written:
            md += [f"![trainability]({written['trainability'].name})", ""]
    md += ["## Runs", "", _markdown_table(RUN_HEADER, run_table), ""]
    written["markdown"] = out / "report.md"
    write_text(written["markdown"], "\n".join(md))

    style = ("body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right} td:first-child,th:first-child"
             "{text-align:left} tr.bad td{background:#fde2e1} img{max-width:100%}")
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title or 'seqlab report')}"
            f"</title><style>{style}</style></head><body>", f"<h1>{html.escape(title or 'seqlab report')}</h1>",
            *[f"<p>{html.escape(n)}</p>" for n in notes], _html_table(table_header(), table)]
    for name in FIGURES:
        if name in written:
            page.append(f"<p><img src='{written[name].name}' alt='{name}'></p>")
    if verdict:
        page += ["<h2>Verdicts over learning rates and seeds</h2>", *[f"<p>{html.escape(n)}</p>" for n in verdict["notes"]],
                 _html_table(*verdict["table"]), "<p>Per learning rate:</p>", _html_table(*verdict["grid"])]
        if "solved_vs_lr" in written:
            page.append(f"<p><img src='{written['solved_vs_lr'].name}' alt='solved_vs_lr'></p>")
    page += ["<h2>Trainability: does the step-0 probe predict which runs solve?</h2>",
             *[f"<p>{html.escape(n)}</p>" for n in train_notes]]
    if train_table:
        page.append(_html_table(TRAIN_HEADER, train_table))
        page += [f"<p>{html.escape(line)}</p>" for line in misses_lines(train_result) if line]
        if "trainability" in written:
            page.append(f"<p><img src='{written['trainability'].name}' alt='trainability'></p>")
    page += ["<h2>Runs</h2>", _html_table(RUN_HEADER, run_table, status_col=4), "</body></html>"]
    written["html"] = out / "report.html"
    write_text(written["html"], "\n".join(page))

    written["json"] = out / "report.json"
    write_text(written["json"], json.dumps({
        "settings": [_json_row(r) for r in rows],
        "runs": [{"path": str(r.path), "setting": label_of[id(r)], "seq_len": r.seq_len, "seed": r.seed,
                  "status": r.status, "final_loss": r.summary.get("final_loss"),
                  "solved_step": r.summary.get("solved_step"), "error": r.error} for r in runs],
        "trainability": train_result,
        **({"verdicts": {"by": verdict["by"], "settings": verdicts_mod.jsonable(verdict["rows"])}} if verdict else {}),
    }, indent=2, default=str) + "\n")
    return written


def curve_notes(settings, rows: Sequence[dict], curve: str) -> list[str]:
    """Say which settings lack the curve asked for (an RNN has no c_l0), and which stand in another
    curve for the default (a cell without h_l0)."""
    notes = []
    where = lambda r: f"{r['label']} (T={r['seq_len']})"  # noqa: E731
    missing = [(s, r) for s, r in zip(settings, rows) if r["probed"] and not r["curves"]]
    if missing:
        have = ", ".join(curves_in(r for s, _ in missing for r in s.runs))
        notes.append(f"`{curve}` was not measured in {', '.join(where(r) for _, r in missing)} (their probes "
                     f"have {have}): their half-life, gain and horizon cells are empty and they are not in "
                     "decay_curves.png.")
    stand_in = [r for r in rows if any(k != curve for k in r["curves"])]
    if stand_in:
        notes.append(f"No `{curve}` in {', '.join(where(r) for r in stand_in)}: their probe numbers and decay "
                     f"curves are for {', '.join(sorted({k for r in stand_in for k in r['curves'] if k != curve}))}, "
                     "the model's first curve.")
    return notes


def _verdicts(runs: Sequence[Run], out: Path, title: str, by: Sequence[str] | None) -> dict:
    """The verdict section's pieces ({} when the runs hold one learning rate and no grouping was asked)."""
    records = verdicts_mod.records_of(runs)
    if not by and len({r["lr"] for r in records}) < 2:
        return {}
    by = list(by) if by else verdicts_mod.default_keys(records)
    rows = verdicts_mod.aggregate(records, by)
    figure = verdicts_mod.plot_solved_vs_lr(rows, out / "solved_vs_lr.png", title,
                                            line_keys=[k for k in by if k not in ("task", "seq_len")])
    return {"by": by, "rows": rows, "notes": verdicts_mod.notes(records), "table": verdicts_mod.table(rows, by),
            "grid": verdicts_mod.grid_table(rows, by), "figure": figure}
