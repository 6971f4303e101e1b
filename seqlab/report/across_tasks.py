"""One cell across tasks, on one page: across_tasks.md / .html / .png.

Written by ``write_report`` whenever the runs span more than one task setting
(e.g. ``python -m seqlab -m task=adding,parity,flip_flop model=rnn,lstm`` or
several sweeps given together). A *task setting* is the task, its seq_len and
its ``task.*`` overrides; a *cell* is everything else that tells settings apart
(the model, a remedy, optimizer knobs). Tables, cells as rows and task settings
as columns, mean ± std over seeds (finished runs):

  loss / baseline    the final eval loss over the task's memoryless baseline,
                     with the runs that reached the task's solved bar
  accuracy           the final answer accuracy
  gain, half-life    the probe's decay fit at the last probe

and a figure with one panel per task setting: the decay curve g(k)/g(0) at the
last probe for every cell, over the task's answer-lag distribution (shaded
25-75%, dashed median; from summary.json's ``lag_distribution``), so a curve can
be read against where that task keeps its information.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np

from seqlab.files import save_figure, write_text
from seqlab.report.runs import DEFAULT_CURVE, Setting, _num
from seqlab.report.stats import curve_key, mean_std, setting_row
from seqlab.report.tables import _html_table, _markdown_table, fmt

_TASK_KEYS = ("task", "seq_len")
_SWEEP_KEYS = ("experiment",)  # the preset a run came from names its sweep, not its cell


def task_label(s: Setting, extra_keys: Sequence[str] = ()) -> str:
    """'parity T=32 every_step=true': the task, its length and its own overrides (and ``extra_keys``,
    overrides that are the same for every run of this task, e.g. a budget the sweep set for it)."""
    extra = [f"{k.split('.', 1)[1]}={v}" for k, v in sorted(s.items.items()) if k.startswith("task.")]
    extra += [f"{k}={s.items[k]}" for k in extra_keys if k in s.items]
    return " ".join([s.task or s.items.get("task", "task"), f"T={s.seq_len}", *extra])


def cell_label(s: Setting, varying: Sequence[str]) -> str:
    """What tells the cells apart: 'lstm', or 'model=lstm optim.lr=0.01' when more than the model varies."""
    keys = [k for k in varying if k in s.items]
    if keys == ["model"]:
        return s.items["model"]
    return " ".join(f"{k}={s.items[k]}" for k in keys) or s.items.get("model", "run")


def _split_keys(settings: Sequence[Setting]) -> tuple[list[str], list[str]]:
    """(cell keys, task keys). An override that varies between the settings of one task is part of the cell
    (model, remedy, lr); one that takes one value per task and differs only between tasks (``steps=1000`` given
    to one sweep) belongs to that task's column, so it does not split a cell into a row of its own."""
    keys = sorted({k for s in settings for k in s.items
                   if k not in _TASK_KEYS + _SWEEP_KEYS and not k.startswith("task.")})
    varying = [k for k in keys if len({s.items.get(k) for s in settings}) > 1]
    columns: dict[str, list[Setting]] = {}
    for s in settings:
        columns.setdefault(task_label(s), []).append(s)
    per_task = [k for k in varying if k != "model"
                and all(len({s.items.get(k) for s in group}) == 1 for group in columns.values())]
    cell = (["model"] if "model" in keys else []) + [k for k in varying if k != "model" and k not in per_task]
    return cell, per_task


def across_tasks(settings: Sequence[Setting], curve: str = DEFAULT_CURVE):
    """(cells, tasks, {(cell, task): [settings]}) in order of appearance."""
    varying, per_task = _split_keys(settings)
    grid: dict[tuple[str, str], list[Setting]] = {}
    for s in settings:
        grid.setdefault((cell_label(s, varying), task_label(s, per_task)), []).append(s)
    cells = list(dict.fromkeys(c for c, _ in grid))
    tasks = sorted(dict.fromkeys(t for _, t in grid), key=lambda t: (t.split()[0], _num(t.split()[1][2:]), t))
    return cells, tasks, grid


def _lag_quartiles(settings: Sequence[Setting]) -> tuple[float, float, float] | None:
    """Mean over the task's runs of the answer-lag 25/50/75% (summary.json's lag_distribution)."""
    qs = [(d["q25"], d["q50"], d["q75"]) for s in settings for r in s.runs
          if isinstance(d := r.summary.get("lag_distribution"), dict) and "q50" in d]
    return tuple(float(np.mean(x)) for x in zip(*qs)) if qs else None


def _cells_text(rows: list[dict], key: str, digits: int, solved: bool = False) -> str:
    stat = rows[0][key] if len(rows) == 1 else mean_std(r[key][0] for r in rows)
    text = fmt(stat, digits)
    if solved and rows and text != "—":
        text += f" ({sum(r['solved'] for r in rows)}/{sum(r['finished'] for r in rows)} solved)"
    return text


def write_across_tasks(settings: Sequence[Setting], out: Path, curve: str = DEFAULT_CURVE,
                       title: str = "") -> dict[str, Path]:
    """Write across_tasks.md, .html and .png into ``out``; returns what was written."""
    cells, tasks, grid = across_tasks(settings, curve)
    rows = {key: [setting_row(s, curve) for s in group] for key, group in grid.items()}
    header = ["cell", *tasks]
    lag_row = ["answer lag: median [25%, 75%]"]
    base_row = ["memoryless baseline"]
    for t in tasks:
        group = [s for (c, tt), g in grid.items() if tt == t for s in g]
        q = _lag_quartiles(group)
        lag_row.append(f"{q[1]:.0f} [{q[0]:.0f}, {q[2]:.0f}]" if q else "—")
        b = next((r["baseline"] for (c, tt), rs in rows.items() if tt == t for r in rs if r["baseline"]), None)
        base_row.append(f"{b:.4g}" if isinstance(b, (int, float)) else "—")

    def table(key, digits, solved=False):
        out_rows = []
        for c in cells:
            out_rows.append([c, *[_cells_text(rows[(c, t)], key, digits, solved) if (c, t) in rows else ""
                                  for t in tasks]])
        return out_rows

    acc = {key: mean_std(r.summary.get("final_accuracy") for s in group for r in s.finished)
           for key, group in grid.items()}
    acc_rows = [[c, *[fmt(acc[(c, t)], 3) if (c, t) in acc else "" for t in tasks]] for c in cells]
    sections = [
        ("loss / baseline (final eval loss over the memoryless baseline; runs that reached the task's bar)",
         [base_row, lag_row] + table("loss_over_baseline", 3, solved=True)),
        ("final answer accuracy", acc_rows),
        (f"gain γ of the gradient's decay at the last probe (curve {curve}; 1 = no decay)", table("gain", 3)),
        ("half-life in steps at the last probe (ln 2 / −ln γ; ∞ when γ ≥ 1)", table("half_life", 3)),
    ]
    written: dict[str, Path] = {}
    fig = plot_across_tasks(grid, cells, tasks, out / "across_tasks.png", curve, title)
    if fig is not None:
        written["across_tasks_png"] = fig
    name = title or "seqlab report"
    intro = (f"{len(cells)} cells x {len(tasks)} task settings; mean ± std over seeds (finished runs). "
             "The probe's lag k counts back from each answer step (from each example's own answer steps where "
             "they vary per example); read the curves against the answer-lag distribution of each task.")
    md = [f"# {name}: one cell across tasks", "", intro, ""]
    for caption, body in sections:
        md += [f"## {caption}", "", _markdown_table(header, body), ""]
    if fig is not None:
        md += [f"![across tasks]({fig.name})", ""]
    written["across_tasks_md"] = out / "across_tasks.md"
    write_text(written["across_tasks_md"], "\n".join(md))
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)} across tasks</title>"
            "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right} td:first-child,th:first-child"
            "{text-align:left} img{max-width:100%}</style></head><body>",
            f"<h1>{html.escape(name)}: one cell across tasks</h1>", f"<p>{html.escape(intro)}</p>"]
    for caption, body in sections:
        page += [f"<h2>{html.escape(caption)}</h2>", _html_table(header, body)]
    if fig is not None:
        page.append(f"<p><img src='{fig.name}' alt='across tasks'></p>")
    written["across_tasks_html"] = out / "across_tasks.html"
    write_text(written["across_tasks_html"], "\n".join(page + ["</body></html>"]))
    return written


def plot_across_tasks(grid, cells, tasks, path: Path, curve: str = DEFAULT_CURVE, title: str = "") -> Path | None:
    """One panel per task setting: g(k)/g(0) at the last probe per cell, over the task's lag distribution."""
    from seqlab.report.figures import (THEORY_CAPTION, _mean_log_curve, _pyplot, _time_ref, _trained,
                                       draw_prediction, setting_prediction, theory_legend_entry)

    plt = _pyplot()
    have = [t for t in tasks if any(r.probe is not None for (c, tt), g in grid.items() if tt == t
                                    for s in g for r in s.runs)]
    if not have:
        return None
    ncol = min(3, len(have))
    nrow = -(-len(have) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.4 * nrow), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(cells) <= 10 else "tab20")
    colors = {c: cmap(i % cmap.N) for i, c in enumerate(cells)}
    any_theory = False
    for ax, t in zip(axes.flat, have):
        group = []
        drawn = False
        for c in cells:
            for s in grid.get((c, t), []):
                group.append(s)
                key_of = lambda p: curve_key(p, curve)  # noqa: E731
                got = _mean_log_curve(s.finished or s.runs, key_of, "final")
                if got is not None:
                    lags, g = got
                    ax.plot(lags, g, color=colors[c], lw=1.3, label=c)
                    if not _trained(s.runs):  # the last probe is the one at init: the prediction applies
                        pred, refs, _ = setting_prediction(s, "time", _time_ref(key_of))
                        if pred is not None:
                            drawn |= draw_prediction(ax, np.arange(len(pred)), pred, refs, colors[c])
        if drawn:
            theory_legend_entry(ax)
            any_theory = True
        q = _lag_quartiles(group)
        if q is not None:
            ax.axvspan(q[0], q[2], color="0.85", zorder=0, label="answer lags 25-75%")
            ax.axvline(q[1], color="0.4", ls="--", lw=0.8, label="median answer lag")
        ax.set_yscale("log")
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("lag k (steps back from the answer)")
        ax.set_ylabel(f"g(k)/g(0), {curve}, last probe")
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(have):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[1:len(have)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.suptitle((title + ": " if title else "") + "the gradient's decay across tasks"
                 + (f"\n{THEORY_CAPTION}" if any_theory else ""), fontsize=11 if not any_theory else 9)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) > 6), 1, 0.96))
    try:
        save_figure(fig, path, dpi=110)  # atomically, never through a link
    finally:
        plt.close(fig)
    return path
