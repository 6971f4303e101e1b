"""Loading run directories and grouping them into settings (the runs that differ only in seed).

A run directory without ``summary.json`` is *unfinished* (still running, or killed); ``summary.json``
says ``finished``, ``failed`` or ``diverged``; one that cannot be read as a JSON object is *damaged*.
Reading never raises on missing or broken files, never unpickles anything (``allow_pickle=False``,
``yaml.safe_load``), and says what it could not read (``Run.problems``, shown in the runs table).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import yaml

FINISHED = "finished"
UNFINISHED = "unfinished"
DAMAGED = "damaged"
DEFAULT_CURVE = "h_l0"
# Overrides that do not change what a run measures: runs differing only in these
# (and the seed) are one setting.
IGNORED_KEYS = {"seed", "protocol", "logger", "progress", "threads", "device", "resume", "checkpoint_every",
                "log_every", "flush_denormal"}
# protocol.*: how the grid was made; early_stop: cuts hopeless runs short, the setting stays the same
IGNORED_PREFIXES = ("hydra.", "hydra/", "logger.", "probe.plots", "protocol.", "early_stop")
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
    problems: list[str] = field(default_factory=list)  # files that could not be read, and why

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def seq_len(self):
        """The length the task read: summary.json's (a task without ``seq_len``, e.g. digits, has its own
        T), else the config's."""
        return self.summary.get("seq_len", self.config.get("seq_len"))

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


def _read_yaml(path: Path, problems: list[str] | None = None):
    try:
        return yaml.safe_load(path.read_text()) if path.exists() else None
    except (yaml.YAMLError, OSError, UnicodeDecodeError, ValueError) as e:
        if problems is not None:
            problems.append(f"{path.name} unreadable ({type(e).__name__})")
        return None


def _read_json(path: Path, problems: list[str]) -> dict | None:
    """The JSON object in ``path``; {} when there is no file; None (and a problem) when it is damaged."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problems.append(f"{path.name} damaged ({type(e).__name__})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} damaged (a JSON {type(data).__name__}, not an object)")
        return None
    return data


def _read_metrics(path: Path, problems: list[str]) -> list[dict]:
    """Rows with an integer ``step``; a last line cut short by a kill is dropped quietly, any other
    unreadable line is counted as a problem."""
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        problems.append(f"{path.name} unreadable ({type(e).__name__})")
        return []
    lines = text.split("\n")
    torn = lines.pop()  # after the last newline: empty, or a write cut short
    rows, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("step"), int) and not isinstance(row["step"], bool):
            rows.append(row)
        else:
            bad += 1
    if bad:
        problems.append(f"{path.name} damaged ({bad} of {bad + len(rows)} lines are not metrics rows)")
    del torn
    return rows


def _read_probe(path: Path, problems: list[str]) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, ValueError (a pickled array), ...
        problems.append(f"{path.name} damaged ({type(e).__name__})")
        return None
    wrong = _probe_layout(arrays)
    if wrong:
        problems.append(f"{path.name} of another layout ({wrong}); not read")
        return None
    return arrays


def _refuse_foreign(config, where: Path) -> None:
    """A config that names a callable outside the lab's own (``_target_: builtins.open``) is not a
    seqlab run's: the report builds nothing from it, but says so and stops (seqlab.targets)."""
    from seqlab.targets import check_targets

    if isinstance(config, dict):
        check_targets({k: v for k, v in config.items() if k != "hydra"}, where=f"{where}")


# probe.npz's per-run constants (seqlab.probe.history): the rest has one row per probe time
_PROBE_STATIC = {"lags": ("i", 1), "loss_steps": ("i", 1), "task_lag": ("i", 0), "curves": ("U", 1),
                 "param_groups": ("U", 1), "depth_curves": ("U", 1), "theory_json": ("U", 0)}
FLOAT_MAX = 1.7976931348623157e308


def _probe_layout(z: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a probe.npz's layout (seqlab.probe.history), or None: ``steps`` (P,) integers,
    each constant of its kind and rank, every other array numeric with P rows, a ``mean_`` per curve."""
    steps = z.get("steps")
    if steps is None or steps.ndim != 1 or steps.dtype.kind not in "iu":
        return "no steps (P,) of integers"
    for name, value in z.items():
        if name == "steps":
            continue
        if name in _PROBE_STATIC:
            kind, ndim = _PROBE_STATIC[name]
            if value.ndim != ndim or value.dtype.kind not in (kind + ("u" if kind == "i" else "")):
                return f"{name} of the wrong kind"
        elif value.dtype.kind not in "fiub" or value.ndim < 1 or value.shape[0] != len(steps):
            return f"{name} does not have one numeric row per probe ({len(steps)})"
    for c in z.get("curves", []):
        for field in ("mean",):  # the fits (gain_, half_life_, ...) are read where present
            if f"{field}_{c}" not in z:
                return f"curve {c} has no {field}_{c}"
    return None


def _sane_summary(summary: dict, problems: list[str]) -> dict:
    """summary.json with values of the wrong type (a status that is not text, a seq_len that is not a
    number) and numbers beyond float range set to None, each said once."""
    bad = []

    def fix(key, value):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > FLOAT_MAX:
            bad.append(key)
            return None
        if isinstance(value, dict):
            return {k: fix(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(key, v) for v in value]
        return value

    out = {k: fix(k, v) for k, v in summary.items()}
    for key, ok in (("status", lambda v: isinstance(v, str)), ("error", lambda v: isinstance(v, str)),
                    ("probe", lambda v: isinstance(v, dict))):
        if key in out and not ok(out[key]):
            bad.append(key)
            out.pop(key)
    for key in ("seq_len", "steps", "solved_step", "seed", "final_loss", "final_accuracy", "baseline",
                "loss_over_baseline", "lag"):
        if key in out and out[key] is not None and not (isinstance(out[key], (int, float))
                                                         and not isinstance(out[key], bool)):
            bad.append(key)
            out[key] = None
    if bad:
        problems.append(f"summary.json: {', '.join(dict.fromkeys(bad))} of the wrong type or beyond float range (ignored)")
    return out


def _sane_config(config: dict, problems: list[str]) -> dict:
    bad = [k for k in ("seq_len", "seed") if config.get(k) is not None and not (
        isinstance(config[k], (int, float)) and not isinstance(config[k], bool) and abs(config[k]) <= FLOAT_MAX)]
    if "choices" in config and not isinstance(config["choices"], dict):
        bad.append("choices")
    if bad:
        problems.append(f"config.yaml: {', '.join(bad)} of the wrong type (ignored)")
        config = {k: v for k, v in config.items() if k not in bad}
    return config


def _flags(status: str, summary: dict, metrics: list[dict], probe: dict | None, problems: list[str]) -> None:
    """What a reader must not take at face value: a finished run without a finite loss or without
    evaluation rows, evaluation rows of NaN, a probe that measured nothing but NaN."""
    if status == FINISHED:
        loss = summary.get("final_loss")
        if not (isinstance(loss, (int, float)) and math.isfinite(loss)):
            problems.append(f"finished, but its final_loss is {loss} (not a finite number)")
        if not metrics:
            problems.append("finished, but metrics.jsonl has no evaluation rows")
    nan_rows = sum(1 for r in metrics if any(isinstance(v, float) and math.isnan(v) for k, v in r.items()
                                             if k.startswith("eval/")))
    if nan_rows:
        problems.append(f"metrics.jsonl: {nan_rows} of {len(metrics)} rows have a NaN evaluation")
    if probe is not None:
        means = [v for k, v in probe.items() if k.startswith("mean_") and v.size]
        if means and all(np.isnan(v.astype(np.float64)).all() for v in means):
            problems.append("probe.npz: every probe curve is NaN (nothing was measured)")


def load_run(path: str | Path) -> Run:
    """Read one run directory; never raises on missing or broken files (only on a config that names a
    callable outside the lab's own: a ConfigError, one line)."""
    path = Path(path)
    problems: list[str] = []
    config = _read_yaml(path / "config.yaml", problems)
    _refuse_foreign(config, path / "config.yaml")
    if not isinstance(config, dict):  # the job died before train() wrote it: Hydra's composed config
        config = _read_yaml(path / ".hydra" / "config.yaml", problems)
        _refuse_foreign(config, path / ".hydra" / "config.yaml")
        config = config if isinstance(config, dict) else {}
        hydra_cfg = _read_yaml(path / ".hydra" / "hydra.yaml", problems)
        hydra_cfg = hydra_cfg if isinstance(hydra_cfg, dict) else {}
        runtime = (hydra_cfg.get("hydra") or {}).get("runtime") if isinstance(hydra_cfg.get("hydra"), dict) else {}
        choices = (runtime or {}).get("choices") if isinstance(runtime, dict) else {}
        config["choices"] = {k: v for k, v in (choices or {}).items() if not str(k).startswith("hydra")} \
            if isinstance(choices, dict) else {}
        if isinstance(config.get("seq_len"), str):  # unresolved
            config["seq_len"] = None
    config = _sane_config(config, problems)
    overrides = _read_yaml(path / ".hydra" / "overrides.yaml", problems)
    overrides = overrides if isinstance(overrides, list) else []
    summary = _read_json(path / "summary.json", problems)
    if summary is None:
        status, summary = DAMAGED, {"error": problems[-1]}
    else:
        summary = _sane_summary(summary, problems)
        status = str(summary.get("status", UNFINISHED)) if summary else UNFINISHED
    metrics = _read_metrics(path / "metrics.jsonl", problems)
    probe = _read_probe(path / "probe.npz", problems)
    _flags(status, summary, metrics, probe, problems)
    return Run(path=path, status=status, config=config, overrides=[str(o) for o in overrides],
               summary=summary, metrics=metrics, probe=probe, problems=problems)


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
