"""Where a run's results go: its own directory (always) and W&B (offline by default).

The run directory is the lab's record, independent of any tracker:
  config.yaml     the resolved config (plus the group choices, e.g. model: rnn)
  metrics.jsonl   one JSON row per evaluation
  summary.json    final metrics, baseline, solved flag and step, timings, status;
                  written atomically, once, when the run ends (a run without it
                  did not finish)
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    """Floats that JSON cannot hold (nan, inf) become strings, never silent numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` via a temporary file and a rename, so a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class RunRecorder:
    """Writes config.yaml, metrics.jsonl and summary.json into ``run_dir``."""

    def __init__(self, run_dir: str | Path, config: dict, keep_until_step: int | None = None):
        """A fresh record, or (resuming) the rows up to ``keep_until_step`` kept and the rest dropped:
        those were written after the checkpoint and will be written again."""
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        self.metrics_path = self.dir / "metrics.jsonl"
        kept = []
        if keep_until_step is not None and self.metrics_path.exists():
            kept = [line for line in self.metrics_path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= keep_until_step]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))
        stale = self.dir / "summary.json"  # a resumed run is not finished until it says so again
        stale.unlink(missing_ok=True)

    def metrics(self, row: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(_jsonable(row)) + "\n")

    def summary(self, data: dict) -> None:
        write_json_atomic(self.dir / "summary.json", data)


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


class NullTracker:
    """No external tracker (``logger=none``)."""

    run_id = None

    def __init__(self, **_: Any):
        pass

    def log(self, row: dict) -> None:
        pass

    def summary(self, data: dict) -> None:
        pass

    def image(self, name: str, path: str | Path) -> None:
        pass

    def table(self, name: str, columns: list[str], rows: list[list], extra: dict | None = None) -> None:
        pass

    def define_axis(self, x: str, glob: str) -> None:
        pass

    def mark_preempting(self) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbTracker:
    """A W&B run that lives inside the run directory; offline unless told otherwise.

    Metrics are logged without an explicit ``step=``: training rows carry
    ``step`` as their x axis (``define_metric``), so other row kinds (the
    probe's curves against ``probe/lag``) can be logged in between.
    """

    def __init__(self, run_dir: str | Path, config: dict, name: str, job_type: str,
                 group: str | None = None, project: str = "seqlab", entity: str | None = None,
                 mode: str | None = None, tags: list[str] | tuple[str, ...] = (),
                 resume_id: str | None = None, init_timeout: float = 60.0):
        import wandb

        self._wandb = wandb
        mode = mode or os.environ.get("WANDB_MODE") or "offline"
        kwargs = dict(project=project, entity=entity, dir=str(run_dir), config=config, name=name,
                      group=group, job_type=job_type, tags=list(tags), reinit="finish_previous",
                      id=resume_id, resume="allow" if resume_id else None,
                      settings=wandb.Settings(init_timeout=init_timeout))
        self.run = None
        try:
            self.run = wandb.init(mode=mode, **kwargs)
        except Exception as e:  # logging must never kill training
            if mode != "online":
                log.warning("W&B could not start (%s); training goes on without it, the run directory "
                            "keeps every result", _first_line(e))
                return
            log.warning("W&B online start failed (%s); logging offline instead, upload later with "
                        "`wandb sync %s/wandb/offline-run-*`", _first_line(e), run_dir)
            try:
                self.run = wandb.init(mode="offline", **kwargs)
            except Exception as e2:
                log.warning("W&B offline start failed too (%s); training goes on without it", _first_line(e2))
                return
        self.run.define_metric("step")
        for prefix in ("train", "eval", "probe_summary"):
            self.run.define_metric(f"{prefix}/*", step_metric="step")
        # the probe's decay curves: x = lag, so every run's curves overlay in one chart
        self.run.define_metric("probe/lag")
        self.run.define_metric("probe/*", step_metric="probe/lag")

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def _guard(self, what: str, fn, *args, **kwargs) -> None:
        """Call a W&B method; on failure warn once and stop using W&B for this run."""
        if self.run is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:
            log.warning("W&B %s failed (%s); training goes on, W&B logging is off for this run",
                        what, _first_line(e))
            self.run = None

    def log(self, row: dict) -> None:
        self._guard("log", lambda: self.run.log(row))

    def summary(self, data: dict) -> None:
        self._guard("summary", lambda: self.run.summary.update(data))

    def image(self, name: str, path: str | Path) -> None:
        """Log a PNG from the run directory (the probe's figures)."""
        self._guard("image", lambda: self.run.log({name: self._wandb.Image(str(path))}))

    def table(self, name: str, columns: list[str], rows: list[list], extra: dict | None = None) -> None:
        """Log a W&B Table under ``name`` in one row with ``extra`` (e.g. {"step": 250}); a
        table logged at every probe gets W&B's step slider and can be queried across runs."""
        self._guard("table", lambda: self.run.log({name: self._wandb.Table(columns=columns, data=rows),
                                                   **(extra or {})}))

    def define_axis(self, x: str, glob: str) -> None:
        """Plot every metric matching ``glob`` against ``x`` (e.g. probe/layer for probe_depth/*), so
        curves overlay across runs; defined once per run."""
        defined = self.__dict__.setdefault("_axes", set())
        if (x, glob) not in defined:
            defined.add((x, glob))
            self._guard("define_axis", lambda: (self.run.define_metric(x), self.run.define_metric(glob, step_metric=x)))

    def mark_preempting(self) -> None:
        """The run will be resumed (W&B shows it as preempted, not failed)."""
        self._guard("mark_preempting", lambda: self.run.mark_preempting())

    def finish(self, exit_code: int = 0) -> None:
        """Always called, with exit_code=1 on error, so a multirun's next job gets a fresh run."""
        self._guard("finish", lambda: self.run.finish(exit_code=exit_code))
        self.run = None
