"""Compare runs from their run directories alone (no W&B, no network).

    python -m seqlab.report multirun/2026-11-22/21-50-00            # a sweep
    python -m seqlab.report outputs/2026-11-22/10-00-00 outputs/...  # any run dirs
    python -m seqlab.report multirun/A multirun/B -o report/       # several sweeps together

Reads what every run writes (``config.yaml``, ``metrics.jsonl``, ``summary.json``,
``.hydra/overrides.yaml``, and the probe's ``probe.npz`` when it ran) and writes
into ``OUT`` (default: ``DIR/report`` for one directory, else ``./report``):

  report.md, report.html   a table per *setting* (the runs that differ only in
                           ``seed``): final loss vs the task baseline, runs solved
                           and the step, the gradient's half-life, horizon and gain,
                           the top Lyapunov exponent, as mean +- sample std over
                           seeds; then every run with its status and error
  report.json              the same numbers, machine-readable
  decay_curves.png         the probe's g(k)/g(0) against the lag k, one panel per
                           seq_len, one colour per setting; dashed at step 0,
                           solid at the end (geometric mean over seeds)
  learning_curves.png      eval loss against step with the task baseline, and the
                           pre-clip gradient norm (mean over finished seeds;
                           failed/unfinished runs dotted, ending in an x)
  probe_vs_seq_len.png     half-life, horizon, gain and top Lyapunov exponent
                           against seq_len per setting (against the setting when
                           only one seq_len was run)

A run directory without ``summary.json`` is *unfinished* (still running, or
killed); ``summary.json`` says ``finished``, ``failed`` or ``diverged``. Only
finished runs enter the end-of-training statistics; every run is listed with its
status, and the probe at step 0 counts for every run that got that far.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

FINISHED = "finished"
UNFINISHED = "unfinished"
DEFAULT_CURVE = "h_l0"
# Overrides that do not change what a run measures: runs differing only in these
# (and the seed) are one setting.
IGNORED_KEYS = {"seed", "logger", "progress", "threads", "device", "resume", "checkpoint_every",
                "log_every", "flush_denormal"}
IGNORED_PREFIXES = ("hydra.", "hydra/", "logger.", "probe.plots")
SKIP_DIRS = {"wandb", ".submitit", ".hydra", "report", "__pycache__"}
RUN_FILES = ("summary.json", "metrics.jsonl", "config.yaml", ".hydra/overrides.yaml")


# ----------------------------------------------------------------------------- reading

@dataclass
class Run:
    """One run directory, read back."""

    path: Path
    status: str                                  # finished | failed | diverged | ... | unfinished
    config: dict
    overrides: list[str]
    summary: dict
    metrics: list[dict]
    probe: dict[str, np.ndarray] | None = None
    setting: tuple = ()                          # filled in by ``group_runs``

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def seq_len(self):
        return self.config.get("seq_len")

    @property
    def finished(self) -> bool:
        return self.status == FINISHED

    @property
    def error(self) -> str:
        return str(self.summary.get("error", "") or "")


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory at or under ``paths`` (sorted, each once)."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such directory")
        for root, dirs, _ in os.walk(p):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            r = Path(root)
            if any((r / f).exists() for f in RUN_FILES):
                found.add(r.resolve())
                dirs[:] = []  # a run's own sub-folders are not runs
    return sorted(found, key=_natural_key)


def _natural_key(p: Path):
    return [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in p.parts]


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text()) if path.exists() else None
    except (yaml.YAMLError, OSError):
        return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (json.JSONDecodeError, OSError):
        return {}


def _read_metrics(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                pass
    return rows


def _read_probe(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # a truncated file
        return None


def load_run(path: str | Path) -> Run:
    """Read one run directory; never raises on missing or broken files."""
    path = Path(path)
    config = _read_yaml(path / "config.yaml")
    if not isinstance(config, dict):  # the job died before train() wrote it: Hydra's composed config
        config = _read_yaml(path / ".hydra" / "config.yaml") or {}
        hydra_cfg = _read_yaml(path / ".hydra" / "hydra.yaml") or {}
        choices = (hydra_cfg.get("hydra", {}).get("runtime", {}) or {}).get("choices", {}) or {}
        config["choices"] = {k: v for k, v in choices.items() if not str(k).startswith("hydra")}
        if isinstance(config.get("seq_len"), str):  # unresolved
            config["seq_len"] = None
    overrides = _read_yaml(path / ".hydra" / "overrides.yaml") or []
    summary = _read_json(path / "summary.json")
    status = str(summary.get("status", UNFINISHED)) if summary else UNFINISHED
    return Run(path=path, status=status, config=config, overrides=[str(o) for o in overrides],
               summary=summary, metrics=_read_metrics(path / "metrics.jsonl"),
               probe=_read_probe(path / "probe.npz"))


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    return [load_run(p) for p in find_run_dirs(paths)]


# ----------------------------------------------------------------------------- grouping

def _override_items(overrides: Sequence[str]) -> dict[str, str]:
    """'+model.layer.chrono=true' -> {'model.layer.chrono': 'true'}, minus keys that do not matter."""
    out = {}
    for o in overrides:
        if o.startswith("~") or "=" not in o:
            continue
        key, value = o.split("=", 1)
        key = key.lstrip("+")
        if key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES):
            continue
        out[key] = value
    return out


def setting_of(run: Run) -> dict[str, str]:
    """What identifies a run's setting: its overrides (minus seed and the like), task, model, seq_len."""
    items = _override_items(run.overrides)
    choices = run.config.get("choices") or {}
    for group in ("task", "model"):
        if choices.get(group) is not None:
            items[group] = str(choices[group])
    items["seq_len"] = str(run.seq_len)
    return items


@dataclass
class Setting:
    """The runs of one setting (seeds), and how it is shown."""

    items: dict[str, str]
    label: str                  # what tells it apart from the other settings (colour in the figures)
    runs: list[Run] = field(default_factory=list)

    @property
    def seq_len(self):
        return self.runs[0].seq_len

    @property
    def task(self) -> str:
        return str((self.runs[0].config.get("choices") or {}).get("task") or self.items.get("task", ""))

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.finished]


def _short(key: str, keys: Iterable[str]) -> str:
    """'model.layer.activation' -> 'activation' unless that is ambiguous among ``keys``."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key


def group_runs(runs: Sequence[Run]) -> list[Setting]:
    """Runs that differ only in seed (and ignored keys) form one setting; labels name what varies."""
    items = [setting_of(r) for r in runs]
    keys = sorted(set().union(*items)) if items else []
    varying = [k for k in keys if k != "seq_len" and len({it.get(k) for it in items}) > 1]
    settings: dict[tuple, Setting] = {}
    for run, it in zip(runs, items):
        key = tuple(sorted(it.items()))
        run.setting = key
        if key not in settings:
            parts = [f"{_short(k, varying)}={it[k]}" for k in varying if k in it]
            if not parts:
                parts = [f"{it.get('task', 'task')}-{it.get('model', 'model')}"]
            settings[key] = Setting(items=it, label=" ".join(parts))
        settings[key].runs.append(run)
    return sorted(settings.values(), key=lambda s: (s.label, _num(s.seq_len)))


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


# ----------------------------------------------------------------------------- numbers

def mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; nan for one value) of the finite or inf numbers."""
    xs = np.asarray([_num(v) for v in values if v is not None], dtype=np.float64)
    xs = xs[~np.isnan(xs)]
    if xs.size == 0:
        return math.nan, math.nan, 0
    if np.isinf(xs).any():  # e.g. a half-life of a curve that does not decay
        return float(np.mean(xs)) if len(set(np.sign(xs[np.isinf(xs)]))) == 1 else math.nan, math.nan, xs.size
    return float(xs.mean()), float(xs.std(ddof=1)) if xs.size > 1 else math.nan, int(xs.size)


def curve_key(probe: dict[str, np.ndarray], curve: str = DEFAULT_CURVE) -> str | None:
    keys = [str(k) for k in probe.get("curves", [])]
    if curve in keys:
        return curve
    return keys[0] if keys else None


def probe_numbers(run: Run, curve: str = DEFAULT_CURVE, at: str = "final") -> dict[str, float]:
    """gain, half_life, horizon, attenuation and top Lyapunov exponent of one probe of a run.

    ``at="init"``: the probe at step 0; ``"final"``: the last probe (of a finished run).
    """
    p = run.probe
    out = {k: math.nan for k in ("gain", "half_life", "horizon", "attenuation_decades", "lyapunov_max")}
    if p is None or "steps" not in p or len(p["steps"]) == 0:
        return out
    key = curve_key(p, curve)
    steps = np.asarray(p["steps"])
    if at == "init":
        idx = np.flatnonzero(steps == 0)
        if idx.size == 0:
            return out
        i = int(idx[0])
    else:
        i = len(steps) - 1
    if key is not None:
        for name in ("gain", "half_life", "horizon", "attenuation_decades"):
            if f"{name}_{key}" in p:
                out[name] = float(p[f"{name}_{key}"][i])
    if "lyapunov_l0" in p and p["lyapunov_l0"].ndim == 2 and p["lyapunov_l0"].shape[1] > 0:
        out["lyapunov_max"] = float(p["lyapunov_l0"][i][0])
    return out


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


def setting_row(s: Setting, curve: str = DEFAULT_CURVE) -> dict[str, Any]:
    """The table row of one setting: {column: (mean, std, n)} plus counts."""
    fin = s.finished
    row: dict[str, Any] = {"label": s.label, "seq_len": s.seq_len, "task": s.task,
                           "runs": len(s.runs), "finished": len(fin),
                           "status": _status_counts(s.runs),
                           "baseline": next((r.summary.get("baseline") for r in s.runs if "baseline" in r.summary), None),
                           "solved": sum(bool(r.summary.get("solved")) for r in fin),
                           "seeds": sorted(r.seed for r in s.runs if r.seed is not None)}
    row["final_loss"] = mean_std(r.summary.get("final_loss") for r in fin)
    row["loss_over_baseline"] = mean_std(r.summary.get("loss_over_baseline") for r in fin)
    row["solved_step"] = mean_std(r.summary.get("solved_step") for r in fin if r.summary.get("solved"))
    final = [probe_numbers(r, curve, "final") for r in fin]
    init = [probe_numbers(r, curve, "init") for r in s.runs]
    for name in ("half_life", "gain", "horizon", "lyapunov_max", "attenuation_decades"):
        row[name] = mean_std(n[name] for n in final)
        row[f"{name}_init"] = mean_std(n[name] for n in init)
    return row


def _status_counts(runs: Sequence[Run]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        out[r.status] = out.get(r.status, 0) + 1
    return out


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
    return [_rel(run.path, root), label, str(run.seq_len), str(run.seed), run.status.upper() if not run.finished else run.status,
            f"{loss:.4g}" if isinstance(loss, (int, float)) else "—",
            str(s["solved_step"]) if s.get("solved_step") is not None else "—", note]


def _rel(path: Path, root: Path | None) -> str:
    try:
        return str(path.relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- figures

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(settings: Sequence[Setting]) -> dict[str, Any]:
    labels = list(dict.fromkeys(s.label for s in settings))
    cmap = _pyplot().get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _facets(settings: Sequence[Setting]) -> list[tuple[str, Any]]:
    """One panel per (task, seq_len), in order."""
    facets = sorted({(s.task, s.seq_len) for s in settings}, key=lambda f: (f[0], _num(f[1])))
    return facets


def _facet_title(facet, facets) -> str:
    task, T = facet
    multi_task = len({f[0] for f in facets}) > 1
    return (f"{task}, " if multi_task else "") + f"T = {T}"


def _mean_log_curve(runs: Sequence[Run], key_of, at: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Geometric mean over runs of g(k)/g(0) at step 0 (``init``) or the last probe (``final``)."""
    curves, lags = [], None
    for r in runs:
        p = r.probe
        if p is None or "steps" not in p or len(p["steps"]) == 0:
            continue
        key = key_of(p)
        if key is None or f"mean_{key}" not in p:
            continue
        steps = np.asarray(p["steps"])
        if at == "init":
            idx = np.flatnonzero(steps == 0)
            if idx.size == 0:
                continue
            i = int(idx[0])
        else:
            i = len(steps) - 1
        g = np.asarray(p[f"mean_{key}"][i], dtype=np.float64)
        if g.size == 0 or not g[0] > 0:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            curves.append(np.where(g > 0, np.log10(g / g[0]), np.nan))
        lags = np.asarray(p["lags"])
    if not curves:
        return None
    n = min(len(c) for c in curves)
    with np.errstate(all="ignore"):
        return lags[:n], 10 ** np.nanmean(np.stack([c[:n] for c in curves]), axis=0)


def plot_decay_curves(settings: Sequence[Setting], path: Path, curve: str = DEFAULT_CURVE,
                      title: str = "") -> Path | None:
    plt = _pyplot()
    colors = _colors(settings)
    has = [s for s in settings if any(r.probe is not None for r in s.runs)]
    if not has:
        return None
    facets = _facets(has)
    fig, axes = plt.subplots(1, len(facets), figsize=(4.2 * len(facets) + 1.5, 3.6), squeeze=False)
    key_of = lambda p: curve_key(p, curve)  # noqa: E731
    for ax, facet in zip(axes[0], facets):
        task_lag = None
        for s in has:
            if (s.task, s.seq_len) != facet:
                continue
            for at, style in (("init", "--"), ("final", "-")):
                runs = s.runs if at == "init" else s.finished
                res = _mean_log_curve(runs, key_of, at)
                if res is None:
                    continue
                lags, g = res
                ax.plot(lags, g, style, color=colors[s.label], lw=1.4 if at == "final" else 1.0,
                        label=s.label if at == "final" or not s.finished else None)
            for r in s.runs:
                if r.probe is not None and "task_lag" in r.probe:
                    task_lag = int(r.probe["task_lag"])
        if task_lag is not None:
            ax.axvline(task_lag, color="0.6", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("lag k = τ − t")
        ax.set_title(_facet_title(facet, facets))
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel(f"||dL/d{curve.split('_')[0]}(τ−k)|| / ||dL/d{curve.split('_')[0]}(τ)||")
    _finish(plt, fig, axes[0], path, title, "gradient through time (dashed: step 0, solid: end; "
                 "geometric mean over seeds)")
    return path


def _finish(plt, fig, top_axes, path: Path, title: str, what: str) -> None:
    """The ending every report figure shares: one legend beside the panels, the title, save, close."""
    handles, labels = _legend_items(top_axes)
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle((title + ": " if title else "") + what, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _legend_items(axes):
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen.keys())


def _series(runs: Sequence[Run], key: str, spread: bool = False):
    """Mean over runs of metric ``key`` at each step that any of them reached (and min, max)."""
    by_step: dict[int, list[float]] = {}
    for r in runs:
        for row in r.metrics:
            v = _num(row.get(key))
            if "step" in row and math.isfinite(v):
                by_step.setdefault(int(row["step"]), []).append(v)
    steps = np.asarray(sorted(by_step), dtype=np.int64)
    mean = np.asarray([np.mean(by_step[s]) for s in steps])
    if not spread:
        return steps, mean
    return steps, mean, np.asarray([min(by_step[s]) for s in steps]), np.asarray([max(by_step[s]) for s in steps])


def plot_learning_curves(settings: Sequence[Setting], path: Path, title: str = "") -> Path | None:
    plt = _pyplot()
    facets = _facets(settings)
    colors = _colors(settings)
    if not any(r.metrics for s in settings for r in s.runs):
        return None
    fig, axes = plt.subplots(2, len(facets), figsize=(4.2 * len(facets) + 1.5, 6.0), squeeze=False, sharex="col")
    for j, facet in enumerate(facets):
        top, bottom = axes[0][j], axes[1][j]
        baselines = set()
        for s in settings:
            if (s.task, s.seq_len) != facet:
                continue
            c = colors[s.label]
            for ax, key in ((top, "eval/loss"), (bottom, "train/grad_norm")):
                steps, y, lo, hi = _series(s.finished, key, spread=True)
                if len(steps):
                    ax.plot(steps, y, "-", color=c, lw=1.4, label=s.label)
                    if len(s.finished) > 1:
                        ax.fill_between(steps, lo, hi, color=c, alpha=0.15, lw=0)
                for r in s.runs:
                    if r.finished:
                        continue
                    st, yr = _series([r], key)
                    # where it stopped: the step it diverged at (with its last finite gradient
                    # norm), else its last evaluation
                    stop = r.summary.get("diverged_step")
                    last_norm = _num(r.summary.get("last_finite_grad_norm"))
                    if key == "train/grad_norm" and stop is not None and math.isfinite(last_norm):
                        st, yr = np.append(st, stop), np.append(yr, last_norm)
                    if len(st):
                        ax.plot(st, yr, ":", color=c, lw=1.0, label=s.label if not s.finished else None)
                        ax.plot([stop if stop is not None else st[-1]], yr[-1:], "x", color=c, ms=7)
            for r in s.runs:
                if isinstance(r.summary.get("baseline"), (int, float)):
                    baselines.add(float(r.summary["baseline"]))
        for b in sorted(baselines):
            top.axhline(b, color="k", ls="--", lw=0.9, label="baseline")
        top.set_yscale("log")
        bottom.set_yscale("log")
        top.set_title(_facet_title(facet, facets))
        bottom.set_xlabel("training step")
        for ax in (top, bottom):
            ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("eval loss")
    axes[1][0].set_ylabel("gradient norm (pre-clip)")
    _finish(plt, fig, axes[0], path, title, "learning curves (mean and min-max band over finished seeds; "
                 "dotted: each failed/diverged/unfinished run, x = where it stopped)")
    return path


PROBE_PANELS = [("half_life", "half-life (steps)"), ("horizon", "horizon (lags)"), ("gain", "gain γ per step"),
                ("lyapunov_max", "top Lyapunov exponent λ1")]


def plot_probe_vs_seq_len(rows: Sequence[dict], path: Path, colors: dict, title: str = "") -> Path | None:
    plt = _pyplot()
    have = [r for r in rows if any(r[f"{k}_init"][2] or r[k][2] for k, _ in PROBE_PANELS)]
    if not have:
        return None
    seq_lens = sorted({_num(r["seq_len"]) for r in have})
    by_seq_len = len(seq_lens) > 1
    labels = list(dict.fromkeys(r["label"] for r in have))
    fig, axes = plt.subplots(1, len(PROBE_PANELS), figsize=(3.6 * len(PROBE_PANELS) + 1.5, 3.4), squeeze=False)
    for ax, (key, name) in zip(axes[0], PROBE_PANELS):
        for lab in labels:
            mine = sorted((r for r in have if r["label"] == lab), key=lambda r: _num(r["seq_len"]))
            for at, style, fill in (("_init", "--", "none"), ("", "-", None)):
                xs, ms, ss = [], [], []
                for r in mine:
                    m, s, n = r[key + at]
                    if n and math.isfinite(m):  # categories: step 0 just left of the end
                        xs.append(_num(r["seq_len"]) if by_seq_len else labels.index(lab) + (-0.12 if at else 0.12))
                        ms.append(m)
                        ss.append(s if math.isfinite(s) else 0.0)
                if xs:
                    ax.errorbar(xs, ms, yerr=ss, fmt="o" + style, color=colors.get(lab), mfc=fill,
                                ms=5, lw=1.2, capsize=2, label=lab if not at else None)
        ax.set_title(name, fontsize=9)
        if by_seq_len:
            ax.set_xlabel("seq_len T")
            ax.set_xscale("log")
            ax.set_xticks(seq_lens, [f"{t:g}" for t in seq_lens])
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        if key == "gain":
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
        if key == "lyapunov_max":
            ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
        ax.grid(True, alpha=0.3)
    _finish(plt, fig, axes[0], path, title, "probe summaries (hollow/dashed: step 0, filled: end; "
                 "mean ± std over seeds; ∞ half-lives not drawn)")
    return path


# ----------------------------------------------------------------------------- writing

def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]], status_col: int | None = None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        bad = status_col is not None and row[status_col].lower() != FINISHED
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


def write_report(runs: Sequence[Run], out: str | Path, curve: str = DEFAULT_CURVE, title: str = "",
                 root: Path | None = None) -> dict[str, Path]:
    """Write the table(s) and figures for ``runs`` into ``out``; returns what was written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = group_runs(runs)
    rows = [setting_row(s, curve) for s in settings]
    colors = _colors(settings)
    written: dict[str, Path] = {}
    figs = {"decay_curves": plot_decay_curves(settings, out / "decay_curves.png", curve, title),
            "learning_curves": plot_learning_curves(settings, out / "learning_curves.png", title),
            "probe_vs_seq_len": plot_probe_vs_seq_len(rows, out / "probe_vs_seq_len.png", colors, title)}
    written.update({k: v for k, v in figs.items() if v is not None})

    label_of = {id(r): s.label for s in settings for r in s.runs}
    table = [table_cells(r) for r in rows]
    run_table = [run_cells(r, label_of[id(r)], root) for r in runs]
    n_bad = sum(not r.finished for r in runs)
    notes = [f"{len(runs)} runs in {len(settings)} settings; {len(runs) - n_bad} finished, {n_bad} not "
             f"({', '.join(f'{n} {k}' for k, n in sorted(_status_counts(runs).items()) if k != FINISHED) or 'none'}).",
             "Each cell: mean ± sample std over the seeds (finished runs; the step-0 probe counts every run "
             "that got that far). `solved`: finished runs that reached the task's bar; `solved step` averages "
             f"those. Probe numbers are for the curve `{curve}` (h_l0: the gradient w.r.t. the first layer's "
             "hidden state; c_l0: an LSTM's cell state; a model without it shows its first curve): "
             "half-life = ln 2 / −ln γ (∞ when γ ≥ 1), horizon = largest lag with g(k)/g(0) ≥ the probe's floor, "
             "λ1 = top Lyapunov exponent of layer 0, per step."]
    md = [f"# {title or 'seqlab report'}", "", *notes, "", _markdown_table(table_header(), table), ""]
    for name in ("decay_curves", "learning_curves", "probe_vs_seq_len"):
        if name in written:
            md += [f"![{name}]({written[name].name})", ""]
    md += ["## Runs", "", _markdown_table(RUN_HEADER, run_table), ""]
    written["markdown"] = out / "report.md"
    written["markdown"].write_text("\n".join(md))

    style = ("body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right} td:first-child,th:first-child"
             "{text-align:left} tr.bad td{background:#fde2e1} img{max-width:100%}")
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title or 'seqlab report')}"
            f"</title><style>{style}</style></head><body>", f"<h1>{html.escape(title or 'seqlab report')}</h1>",
            *[f"<p>{html.escape(n)}</p>" for n in notes], _html_table(table_header(), table)]
    for name in ("decay_curves", "learning_curves", "probe_vs_seq_len"):
        if name in written:
            page.append(f"<p><img src='{written[name].name}' alt='{name}'></p>")
    page += ["<h2>Runs</h2>", _html_table(RUN_HEADER, run_table, status_col=4), "</body></html>"]
    written["html"] = out / "report.html"
    written["html"].write_text("\n".join(page))

    written["json"] = out / "report.json"
    written["json"].write_text(json.dumps({
        "settings": [_json_row(r) for r in rows],
        "runs": [{"path": str(r.path), "setting": label_of[id(r)], "seq_len": r.seq_len, "seed": r.seed,
                  "status": r.status, "final_loss": r.summary.get("final_loss"),
                  "solved_step": r.summary.get("solved_step"), "error": r.error} for r in runs],
    }, indent=2, default=str) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seqlab.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="sweep directories (multirun/DATE/TIME) or run directories")
    parser.add_argument("-o", "--out", help="output folder (default: DIR/report for one DIR, else ./report)")
    parser.add_argument("--curve", default=DEFAULT_CURVE,
                        help=f"probe curve for the numbers and decay figure (default {DEFAULT_CURVE}; e.g. c_l0)")
    parser.add_argument("--title", default="", help="title of the report and figures")
    args = parser.parse_args(argv)
    try:
        runs = load_runs(args.dirs)
    except FileNotFoundError as e:
        print(f"seqlab.report: error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print(f"seqlab.report: error: no run directories under {' '.join(args.dirs)}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (Path(args.dirs[0]) / "report" if len(args.dirs) == 1 else Path("report"))
    root = Path(args.dirs[0]).resolve() if len(args.dirs) == 1 else None
    written = write_report(runs, out, curve=args.curve, title=args.title, root=root)
    print(written["markdown"].read_text().split("## Runs")[0].strip())
    print(f"\nreport: {written['html']} ({', '.join(p.name for k, p in written.items() if k != 'html')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
