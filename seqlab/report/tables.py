"""Tables: the per-setting and per-run rows as text cells, and as markdown, HTML and JSON."""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Sequence

from seqlab.report.runs import FINISHED, UNFINISHED, Run

COLUMNS = [  # (key, header, digits)
    ("final_loss", "final loss", 4),
    ("loss_over_baseline", "loss / baseline", 3),
    ("solved_step", "solved step", 0),
    ("half_life_init", "half-life init", 3),
    ("half_life", "half-life", 3),
    ("gain_init", "gain init", 3),
    ("gain", "gain", 3),
    ("horizon", "horizon", 0),
    ("lyapunov_max_init", "λ1 init", 3),
    ("lyapunov_max", "λ1", 3),
]


def fmt(stat, digits: int) -> str:
    """(mean, std, n) -> '0.153 ± 0.0041': ``digits`` significant digits (0: an integer), the std with 2,
    shown only when n >= 2; '—' when there is nothing."""
    mean, std, n = stat
    if n == 0 or math.isnan(mean):
        return "—"

    def one(x: float, sig: int) -> str:
        if math.isinf(x):
            return "∞" if x > 0 else "-∞"
        if abs(x) < 1e-9 * max(1.0, abs(mean)):  # float noise in a spread of equal values
            return "0"
        return f"{x:.0f}" if digits == 0 else f"{x:.{sig}g}"

    return one(mean, digits) + (f" ± {one(std, 2)}" if n > 1 and not math.isnan(std) else "")


def _status_text(row: dict) -> str:
    st = row["status"]
    text = f"{st.get(FINISHED, 0)}/{row['runs']}"
    others = [f"{n} {k}" for k, n in sorted(st.items()) if k != FINISHED]
    return text + (f" ({', '.join(others)})" if others else "")


def table_cells(row: dict) -> list[str]:
    solved = f"{row['solved']}/{row['finished']}" if row["finished"] else "—"
    base = f"{row['baseline']:.4g}" if isinstance(row["baseline"], (int, float)) else "—"
    cells = [row["label"], str(row["seq_len"]), _status_text(row), base]
    for key, _, digits in COLUMNS:
        cells.append(fmt(row[key], digits))
        if key == "loss_over_baseline":
            cells.append(solved)
    return cells


def table_header() -> list[str]:
    head = ["setting", "T", "finished", "baseline"]
    for key, title, _ in COLUMNS:
        head.append(title)
        if key == "loss_over_baseline":
            head.append("solved")
    return head


RUN_HEADER = ["run", "setting", "T", "seed", "status", "final loss", "solved step", "note"]


def run_cells(run: Run, label: str, root: Path | None) -> list[str]:
    s = run.summary
    loss = s.get("final_loss")
    note = run.error
    if run.status == UNFINISHED:
        last = run.metrics[-1]["step"] if run.metrics else None
        note = f"no summary.json: still running or killed (last eval at step {last})" if last is not None \
            else "no summary.json: still running or killed before its first evaluation"
    note = "; ".join(n for n in [note, *(p for p in run.problems if p != note)] if n)
    return [_rel(run.path, root), label, str(run.seq_len), str(run.seed), run.status if run.status in OUTCOMES else run.status.upper(),
            f"{loss:.4g}" if isinstance(loss, (int, float)) else "—",
            str(s["solved_step"]) if s.get("solved_step") is not None else "—", note]


# a run that ended as planned: its whole budget, or stopped early as hopeless by early_stop (seqlab.protocol)
OUTCOMES = (FINISHED, "stopped")


def _rel(path: Path, root: Path | None) -> str:
    try:
        return str(path.relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- writing

def md_escape(text) -> str:
    """Text for a markdown page: a run's name or value is shown, never rendered as HTML."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: md_escape(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]], status_col: int | None = None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        bad = status_col is not None and row[status_col] not in OUTCOMES
        cls = ' class="bad"' if bad else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _json_row(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, tuple) and len(v) == 3:
            out[k] = {"mean": _finite(v[0]), "std": _finite(v[1]), "n": v[2]}
        else:
            out[k] = v
    return out


def _finite(x: float):
    return x if math.isfinite(x) else (None if math.isnan(x) else ("inf" if x > 0 else "-inf"))


def short_table(rows: Sequence[dict], curve: str, limit: int = 30) -> str:
    """The few columns a terminal needs, aligned: setting, T, finished, loss / baseline, solved,
    half-life at step 0 and at the end (the full table is in report.md)."""
    head = ["setting", "T", "finished", "loss / baseline", "solved", f"half-life {curve} (step 0 -> end)"]
    body = []
    for r in rows[:limit]:
        solved = f"{r['solved']}/{r['finished']}" if r["finished"] else "—"
        half = f"{fmt(r['half_life_init'], 3)} -> {fmt(r['half_life'], 3)}" if r["curves"] else "—"
        body.append([r["label"], str(r["seq_len"]), _status_text(r), fmt(r["loss_over_baseline"], 3), solved, half])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more settings (report.md has them all)")
    return "\n".join(lines)
