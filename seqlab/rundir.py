"""Run directories: one writer at a time, writable before Hydra touches them, found again to resume.

* ``RunLock``: an exclusive ``flock`` on ``DIR/.seqlab.lock`` for the life of a run; a second
  process into the same directory gets one line naming the holder's pid. The kernel drops the
  lock when its holder dies (even by SIGKILL), so a crash never leaves a stale lock.
* ``prepare(argv)``: what the command line says about run directories, checked before Hydra
  creates one: ``resume=last`` becomes the newest run under ``outputs/`` made by the same
  experiment; ``resume=DIR`` with a different ``hydra.run.dir``, or inside a sweep, is refused;
  a directory that is a file, read-only, under /proc, or held by another run is refused.
* ``resume_command``: the exact command that continues a stopped run (or sweep).
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from .checks import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"
# Keys a resumed run may change: how long to train, how to report, where to log.
MAY_CHANGE_ON_RESUME = ("steps", "progress", "logger", "threads", "resume", "checkpoint_every")

LOCK_NAME = ".seqlab.lock"
DEFAULT_ROOT = Path("outputs")  # where hydra.run.dir puts single runs by default (conf/config.yaml)
_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))
_UMASK = os.umask(0)
os.umask(_UMASK)


class RunDirError(ConfigError):
    """A file in a run directory that cannot be used as it is (damaged, foreign, unwritable).
    ``str(err)`` is one line naming the file and what the user can do."""


def unique_tmp(path: Path) -> Path:
    """A fresh temporary file beside ``path`` (same file system, so ``os.replace`` is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run directory is shared like any other file
    os.close(fd)
    return Path(tmp)


def replace_atomic(path: Path, write) -> None:
    """``write(tmp)`` into a unique temporary file, then rename it to ``path``; no temporary is left
    behind when writing fails."""
    tmp = unique_tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


try:
    import fcntl
except ImportError:  # not POSIX: no locking (documented in the README)
    fcntl = None


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "another process"


class RunLock:
    """Exclusive lock on a run directory, held from ``acquire`` until ``release`` (or process death)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        check_writable(self.path.parent, "hydra.run.dir")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunDirError(f"{self.path.parent}: in use by {_holder(self.path)} (another seqlab run "
                              f"writes there); wait for it to end or choose another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (harmless, reused next time)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def check_unlocked(run_dir: Path) -> None:
    """Refuse (one line) when a live process holds ``run_dir``'s lock; takes no lock itself."""
    path = run_dir / LOCK_NAME
    if fcntl is None or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise RunDirError(f"{run_dir}: in use by {_holder(path)} (another seqlab run writes there); "
                          f"wait for it to end or choose another hydra.run.dir") from None
    finally:
        os.close(fd)


def check_writable(path: str | Path, key: str) -> None:
    """``path`` must be (or be creatable as) a writable directory outside /proc, /sys, /dev."""
    path = Path(path).absolute()
    if any(path == s or s in path.parents for s in _SYSTEM):
        raise RunDirError(f"{key}={str(path)!r}: a system directory; choose a directory of your own")
    probe = path
    while not probe.exists():
        if probe.is_symlink() or probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise RunDirError(f"{key}={str(path)!r}: {probe} is a file, not a directory; choose another path")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"{key}={str(path)!r}: {probe} is not writable; choose a writable directory")


# --- the command line, before Hydra ---------------------------------------------------------------

def _overrides(argv: list[str]) -> tuple[list[str], bool] | None:
    from .preflight import _args

    args = _args(argv)  # a bad flag is one line there, not argparse's usage text
    if args.help or args.hydra_help or args.shell_completion or args.info or args.cfg:
        return None
    return list(args.overrides), bool(args.multirun)


def _value(overrides: list[str], key: str) -> str | None:
    for o in overrides:
        k, sep, v = o.partition("=")
        if sep and k.lstrip("+") == key:
            return v
    return None


def prepare(argv: list[str], config_name: str = "config") -> list[str]:
    """Check what ``argv`` says about run directories (one line, exit 2, on a problem) and return it
    with ``resume=last`` replaced by the directory it stands for."""
    parsed = _overrides(argv)
    if parsed is None:
        return argv
    overrides, multirun = parsed
    resume = _value(overrides, "resume")
    run_dir = _value(overrides, "hydra.run.dir")
    if multirun:
        if resume not in (None, "null"):
            raise RunDirError(f"resume={resume}: not in a sweep (-m); rerun the sweep's command with "
                              f"hydra.sweep.dir=SWEEP_DIR and each job continues in its own directory")
        sweep_dir = _value(overrides, "hydra.sweep.dir")
        check_writable(sweep_dir or "multirun", "hydra.sweep.dir")
        return argv
    if resume == "last":
        found = find_last([o for o in overrides if not o.lstrip("+").startswith("resume=")], config_name)
        argv = [f"resume={found}" if a.lstrip("+").startswith("resume=") else a for a in argv]
        resume = str(found)
    if resume not in (None, "null"):
        if run_dir is not None and Path(run_dir).absolute() != Path(resume).absolute():
            raise RunDirError(f"hydra.run.dir={run_dir}: resume={resume} continues the run in its own "
                              f"directory; drop hydra.run.dir (or set it to {resume})")
        run_dir = resume
    check_writable(run_dir or DEFAULT_ROOT, "hydra.run.dir")
    if run_dir is not None and Path(run_dir).is_dir():
        check_unlocked(Path(run_dir))
    return argv


def _load_config(run_dir: Path) -> dict | None:
    from omegaconf import OmegaConf

    try:
        config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    except Exception:  # noqa: BLE001 - a damaged or foreign directory is simply not a match
        return None
    return config if isinstance(config, dict) else None


def same_experiment(saved: dict, current: dict) -> bool:
    keys = (set(saved) | set(current)) - set(MAY_CHANGE_ON_RESUME) - {"choices"}
    return all(saved.get(k) == current.get(k) for k in keys)


def _steps_to_go(run_dir: Path, steps) -> bool:
    """Whether the run in ``run_dir`` has not finished, or finished fewer than ``steps`` steps."""
    import json

    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return True  # no readable summary yet: it stopped before its end
    if not isinstance(summary, dict) or summary.get("status") != "finished":
        return True
    done = summary.get("steps")
    return isinstance(done, int) and isinstance(steps, int) and done < steps


def find_last(overrides: list[str], config_name: str = "config", root: Path = DEFAULT_ROOT) -> Path:
    """The newest run directory under ``root`` (by its checkpoint's time) made by the experiment
    ``overrides`` describe (only MAY_CHANGE_ON_RESUME keys may differ) that still has steps to go; when
    every such run has finished, the newest of them (which then says so)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ._paths import CONF_DIR

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=[*overrides, "resume=null"])
        current = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - the preflight that follows names the bad override
        raise RunDirError("resume=last: the other overrides do not compose; fix them first") from None
    candidates = sorted((p.parent for p in root.glob(f"*/*/{CHECKPOINT_NAME}")),
                        key=lambda d: (d / CHECKPOINT_NAME).stat().st_mtime, reverse=True)
    matches = [d for d in candidates if (saved := _load_config(d)) is not None and same_experiment(saved, current)]
    if matches:  # the newest that still has steps to go (stopped, or asked for more steps), else the newest
        return next((d for d in matches if _steps_to_go(d, current.get("steps"))), matches[0])
    raise RunDirError(f"resume=last: none of the {len(candidates)} runs with a checkpoint under {root}/ was "
                      f"made with these overrides; give resume=DIR, or drop resume to start a new run")


def _program() -> str:
    name = Path(sys.argv[0]).name
    return "seqlab" if name == "seqlab" else "python -m seqlab"


def shown(path: Path) -> str:
    """``path`` relative to the working directory when under it (what a user types), else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def resume_command(argv: list[str], run_dir: Path, sweep_dir: Path | None = None) -> str:
    """The command that continues this run: the same arguments, with ``resume=RUN_DIR`` (or, for a
    sweep, ``hydra.sweep.dir=SWEEP_DIR``: every job continues in its own directory)."""
    drop = ("hydra.sweep.dir=",) if sweep_dir else ("resume=", "hydra.run.dir=")
    kept = [a for a in argv if not a.lstrip("+").startswith(drop)]
    extra = f"hydra.sweep.dir={shown(sweep_dir)}" if sweep_dir else f"resume={shown(run_dir)}"
    return " ".join([_program(), *map(shlex.quote, kept), shlex.quote(extra)])
