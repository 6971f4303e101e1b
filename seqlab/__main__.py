"""Entry point: ``python -m seqlab [overrides]`` (Hydra; ``--help`` lists the groups).

Before Hydra creates any output directory, ``preflight`` composes the config for
every combination the command line asks for and validates it, so a bad value
ends in one line naming the key, the value and what is allowed, with exit code
2, and leaves nothing behind that looks like a run.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from ._paths import CONF_DIR
from .checks import ConfigError
from .preflight import fail, preflight  # noqa: F401  (also the entry of python -m seqlab.probe)
from .sweep import QuietStderr, job_failed

if TYPE_CHECKING:
    from .train import RunInfo

EXIT_DIVERGED = 3


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def run(cfg: DictConfig) -> float:
    """One Hydra job: train and return the final eval loss (for sweepers)."""
    from .rundir import CHECKPOINT_NAME, RunLock, accept
    from .train import Diverged, Preempted, train

    job = current_job(cfg)
    info = job.info
    lock = RunLock(info.run_dir, shared=True)
    try:
        lock.acquire()  # before anything is written there: a second run into this directory leaves it as it was
        if (info.run_dir / CHECKPOINT_NAME).exists():  # another run's? only once train() accepts it as this one's
            info.on_accept = lambda: accept(info.run_dir, cfg)
        else:  # a fresh directory is this run's: Hydra's record (.hydra/) now, even if the run fails early
            accept(info.run_dir, cfg)
        outcome = train(cfg, info)
    except (ConfigError, OSError, Preempted, Diverged, KeyboardInterrupt) as e:
        outcome = e
    finally:
        lock.release()
    return report(job, outcome)


@dataclass
class Job:
    """What one Hydra job knows about itself (read from HydraConfig while it is the current job)."""

    info: "RunInfo"
    multirun: bool
    num: int | None
    overrides: str
    sweep_dir: Path | None


def current_job(cfg: DictConfig) -> Job:
    """The current Hydra job's run information: its directory, name, sweep and setting."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .train import RunInfo

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    info = RunInfo(run_dir=Path(hc.runtime.output_dir), name=_run_name(cfg, choices, hc.job.override_dirname),
                   group=_sweep_group(hc) if multirun else None, choices=choices,
                   setting=_run_name(cfg, choices, _without(hc.job.override_dirname, SEEDLESS)))
    return Job(info, multirun, hc.job.num if multirun else None, _overrides(hc),
               Path(hc.sweep.dir) if multirun else None)


def report(job: Job, outcome) -> float:
    """What a job says when it ends (``outcome``: its summary, or what ended it) and its return value,
    the final eval loss; a failed job of a sweep raises ``JobFailed`` (one line), a failed single run
    exits with its code. A member of a population (hydra/launcher=batched) ends here too."""
    from .rundir import resume_command, shown
    from .tracking import sync_hint
    from .train import Diverged, Preempted, format_summary

    info, multirun = job.info, job.multirun
    if isinstance(outcome, ConfigError):  # also a run directory that cannot be used (seqlab.rundir.RunDirError)
        if multirun:  # this job is marked failed (one line, no traceback); the sweep goes on
            raise job_failed(job.num, job.overrides, "failed", outcome, info.run_dir) from None
        fail(str(outcome))
    if isinstance(outcome, OSError):  # the run directory became unwritable mid-run (full disk, read-only mount)
        print(f"seqlab: error: {info.run_dir}: cannot write ({outcome.strerror or type(outcome).__name__}); rerun "
              f"once it is writable to continue from the last checkpoint", file=sys.stderr)
        raise SystemExit(1) from None
    if isinstance(outcome, Preempted):  # the whole process stops (a sweep too); the printed command resumes it
        again = resume_command(sys.argv[1:], info.run_dir, job.sweep_dir)
        print(f"seqlab: {info.name}: {outcome}. Resume with: {again}", file=sys.stderr)
        raise SystemExit(128 + outcome.signum) from None
    if isinstance(outcome, KeyboardInterrupt):  # a second SIGINT while the first one's checkpoint or summary was written
        print(f"seqlab: {info.name}: interrupted at once by a second SIGINT; rerun the same command to continue "
              f"from the last checkpoint in {shown(info.run_dir)}", file=sys.stderr)
        raise SystemExit(130) from None
    if isinstance(outcome, Diverged):
        if multirun:  # this job is marked failed (one line, no traceback); the sweep goes on
            raise job_failed(job.num, job.overrides, "diverged", outcome, info.run_dir) from None
        print(f"seqlab: {info.name}: diverged: {outcome}; summary in {info.run_dir}/summary.json", file=sys.stderr)
        raise SystemExit(EXIT_DIVERGED) from None
    summary = outcome
    if summary.get("already_finished"):
        ended = (f"stopped early at step {summary.get('stopped_at_step')}" if summary.get("status") == "stopped"
                 else f"finished all {summary['steps']} steps")
        print(f"seqlab: {info.run_dir} already {ended}; its results are "
              f"unchanged (give a larger steps= to train further)")
    else:
        print(f"results: {shown(info.run_dir)}")
        hint = sync_hint(shown(info.run_dir), summary.get("wandb_run"))
        if hint:
            print(hint)
    print(format_summary(summary))
    return summary["final_loss"]


def _overrides(hc) -> str:
    return " ".join(hc.overrides.task)


def _run_name(cfg: DictConfig, choices: dict, override_dirname: str) -> str:
    """Readable W&B name: task-model-T (T only for a task that reads seq_len), then the other overrides."""
    base = f"{choices.get('task', 'task')}-{choices.get('model', 'model')}"
    if "seq_len" in (cfg.get("task") or {}):  # random_labels and the digits tasks have a length of their own
        base += f"-T{cfg.seq_len}"
    extra = [o for o in override_dirname.split(",")
             if o and o.split("=")[0].lstrip("+~") not in ("task", "model", "seq_len", "resume")]
    return base + (" " + ",".join(extra) if extra else "")


# Overrides that do not make a different setting: runs that differ only in these are repeats
# (the seed), or the same computation watched differently (threads, progress, checkpoints, logging).
SEEDLESS = ("seed", "resume", "threads", "progress", "checkpoint_every", "logger")


def _without(override_dirname: str, keys: tuple[str, ...]) -> str:
    return ",".join(o for o in override_dirname.split(",")
                    if o.split("=")[0].lstrip("+~").split(".")[0] not in keys)


def _sweep_group(hc) -> str:
    """The sweep's directory, e.g. 'multirun/2026-11-22/21-50-00' -> 'sweep-2026-11-22-21-50-00'."""
    parts = Path(hc.sweep.dir).parts[-2:]
    return "sweep-" + "-".join(parts)


def _one_line_warnings() -> None:
    """seqlab's own warnings (seqlab.tracking.SeqlabWarning) as one line on stderr, where warnings go."""
    import warnings

    from .tracking import SeqlabWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SeqlabWarning):
            print(f"seqlab: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def quiet_logging_errors() -> None:
    """A logging handler that cannot write (W&B's debug log on a full disk) is dropped silently instead of
    printing a '--- Logging error ---' traceback per record: seqlab's own line says what went wrong."""
    import logging

    logging.raiseExceptions = False


def ignore_stop_signals() -> None:
    """The process is leaving: a further Ctrl-C or SIGTERM is the same request, not a traceback in the
    interpreter's shutdown."""
    import signal

    for name in ("SIGINT", "SIGTERM"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def main() -> None:
    from .rundir import prepare
    from .train import StopFlag

    quiet_logging_errors()
    StopFlag.process_ends_on_stop = True

    try:
        sys.argv[1:] = prepare(sys.argv[1:])
    except ConfigError as e:
        fail(str(e))
    preflight(sys.argv[1:])
    _one_line_warnings()
    sys.stderr = QuietStderr(sys.stderr)
    try:
        run()
    except KeyboardInterrupt:  # Ctrl-C before or after a run (starting up, printing): no traceback
        ignore_stop_signals()
        print("seqlab: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # `python -m seqlab --help | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1)


if __name__ == "__main__":
    main()
