"""What a sweep says while it runs and when a job fails: one line per job, never a traceback.

* A job that diverges or is misconfigured raises ``JobFailed``: Hydra prints a compact
  exception as its one line (no traceback), after its own "Error executing job with
  overrides: [...]". The job also prints that line when it fails, so every failed job of a
  sweep has its line, not only the first one Hydra re-raises.
* ``SweepMonitor`` (a Hydra callback, ``hydra.callbacks`` in conf/config.yaml) runs in the
  process that launches the jobs. Under submitit (local or SLURM), whose jobs write to log files,
  it prints where those logs are and one line per job as it ends (read from its summary.json),
  so the sweep is not silent; at exit it prints a one-line tally of the sweep and removes the
  empty ``.submitit/%j`` directory that submitit leaves behind.

Only standard-library and Hydra imports here: the callback is built in every Hydra process.
"""
from __future__ import annotations

import atexit
import sys
import threading
from pathlib import Path

from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback

FINAL = ("finished", "stopped", "diverged", "failed", "preempted")
POLL_S = 2.0


class JobFailed(CompactHydraException):
    """One job of a sweep failed; Hydra prints ``str()`` as it is, without a traceback."""


def job_failed(num, overrides: str, kind: str, error: Exception | str, run_dir: Path) -> JobFailed:
    """Print the one line of a failed job now (under submitit: into its log, and SweepMonitor prints
    it from the job's summary), and return the exception that marks the job failed for Hydra."""
    where = f"results in {run_dir}"
    log = _submitit_log()
    if log:
        where += f", log {log}"
    print(f"seqlab: job {num} ({overrides or 'defaults'}) {kind}: {error}; {where}", file=sys.stderr, flush=True)
    return JobFailed(f"seqlab: error: job {num} {kind} ({where}); the sweep ran its other jobs")


class QuietStderr:
    """sys.stderr, less Hydra's "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack
    trace" when the error it reports is a JobFailed (there is no stack trace to see)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        if "HYDRA_FULL_ERROR" in text and isinstance(sys.exc_info()[1], JobFailed):
            return len(text)
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _submitit_log() -> str | None:
    """The log file of this job when submitit runs it (its stderr), else None."""
    if "submitit" not in sys.modules:
        return None
    try:
        import submitit

        return str(submitit.JobEnvironment().paths.stderr)
    except Exception:  # not inside a submitit job
        return None


class SweepMonitor(Callback):
    """Prints a sweep's progress where its jobs cannot (submitit) and a one-line tally at the end."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.reported: set[str] = set()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __getstate__(self) -> dict:  # submitit pickles the launcher's context (callbacks too): no thread
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def on_multirun_start(self, config, **kwargs) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if "submitit" in launcher.lower():
            print(f"seqlab: jobs run under submitit; their output goes to {self.sweep_dir}/.submitit/; "
                  "a line here as each job ends", file=sys.stderr, flush=True)
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        atexit.register(self.on_exit)

    def on_multirun_end(self, config, **kwargs) -> None:
        self.on_exit()

    def _poll(self) -> None:
        while not self.stop.wait(POLL_S):
            self.report_new()

    def report_new(self) -> None:
        """One line for each job that has ended since the last look."""
        for num, status, summary in self.jobs():
            if status in FINAL and num not in self.reported:
                self.reported.add(num)
                print(self.job_line(num, status, summary), file=sys.stderr, flush=True)

    def jobs(self):
        import json

        if self.sweep_dir is None or not self.sweep_dir.is_dir():
            return
        for d in sorted((d for d in self.sweep_dir.iterdir() if d.name.isdigit()), key=lambda d: int(d.name)):
            try:
                summary = json.loads((d / "summary.json").read_text())
                status = summary.get("status", "unknown") if isinstance(summary, dict) else "unknown"
            except (OSError, ValueError):
                summary, status = {}, "unfinished"
            yield d.name, status, summary

    def job_line(self, num: str, status: str, summary: dict) -> str:
        d = self.sweep_dir / num
        overrides = _overrides(d)
        if status in ("finished", "stopped"):  # stopped: early_stop ended a hopeless run (an outcome, not a failure)
            what = f"{status}: final eval loss {summary.get('final_loss')}"
        else:
            what = f"{status}: {summary.get('error', 'see its summary.json')}"
        log = _job_log(self.sweep_dir, d)
        return f"seqlab: job {num} ({overrides}) {what}; results in {d}" + (f", log {log}" if log else "")

    def on_exit(self) -> None:
        """Last lines: jobs not yet reported (submitit), the tally, and no stray '.submitit/%j'."""
        if self.sweep_dir is None:
            return
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=POLL_S + 1)
            self.report_new()
            self.thread = None
        stray = self.sweep_dir / ".submitit" / "%j"
        if stray.is_dir() and not any(stray.iterdir()):
            stray.rmdir()
        counts: dict[str, list[str]] = {}
        for num, status, _ in self.jobs():
            counts.setdefault(status, []).append(num)
        if counts:
            parts = [f"{len(nums)} {status}" + ("" if status in ("finished", "stopped") else f" (job {', '.join(nums)})")
                     for status, nums in sorted(counts.items(), key=lambda kv: kv[0] != "finished")]
            hint = sweep_sync_hint(self.sweep_dir)
            if hint:
                print(hint, file=sys.stderr, flush=True)
            print(f"seqlab: sweep {self.sweep_dir}: {sum(map(len, counts.values()))} jobs: {', '.join(parts)}",
                  file=sys.stderr, flush=True)
        self.sweep_dir = None


def sweep_sync_hint(sweep_dir: Path) -> str | None:
    """How to upload a sweep's offline W&B runs: one ``wandb sync`` of every job's run folders (a shell
    glob; the segments of a resumed job are uploaded in start-time order: seqlab.tracking.sync_command)."""
    if not any(sweep_dir.glob("*/wandb/offline-run-*")):
        return None
    try:
        where = sweep_dir.relative_to(Path.cwd())
    except ValueError:
        where = sweep_dir
    return f"seqlab: W&B offline runs of the sweep; upload with: wandb sync {where}/*/wandb/offline-run-*"


def _overrides(job_dir: Path) -> str:
    import yaml

    try:
        return " ".join(yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []) or "defaults"
    except (OSError, ValueError, yaml.YAMLError, TypeError):
        return "?"


def _job_log(sweep_dir: Path, job_dir: Path) -> str | None:
    """submitit's log of the job (hydra.job.id in the job's .hydra/hydra.yaml is submitit's job id)."""
    import yaml

    try:
        job_id = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    logs = sorted((sweep_dir / ".submitit").glob(f"**/{job_id}_*_log.err")) if job_id else []
    return str(logs[0]) if logs else None
