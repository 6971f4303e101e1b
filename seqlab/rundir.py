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
from pathlib import Path

from .argv import is_multirun, override_value, parse_args
from .checks import ConfigError
from .files import LinkedFile, open_own, replace_atomic, unique_tmp  # noqa: F401  (the one writer; re-exported)

CHECKPOINT_NAME = "checkpoint.pt"
# Keys a resumed run may change: how long to train, how to report, where to log.
MAY_CHANGE_ON_RESUME = ("steps", "progress", "logger", "threads", "resume", "checkpoint_every")

LOCK_NAME = ".seqlab.lock"
DEFAULT_ROOT = Path("outputs")  # where hydra.run.dir puts single runs by default (conf/config.yaml)
_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


class RunDirError(ConfigError):
    """A file in a run directory that cannot be used as it is (damaged, foreign, unwritable).
    ``str(err)`` is one line naming the file and what the user can do."""


try:
    import fcntl
except ImportError:  # not POSIX: no locking (documented in docs/guide.md)
    fcntl = None


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "another process"


_HELD: dict[str, list] = {}  # lock path -> [fd, holders]: this process's locks (the entry point, then train)


class RunLock:
    """Exclusive lock on a run directory, held from ``acquire`` until ``release`` (or process death).

    The lock file is opened with ``O_NOFOLLOW`` and must be a plain file with one name: a link placed
    there by someone else is refused (one line), never truncated. Within one process the lock is
    shared by the holds made with ``shared=True`` (the entry point takes it before Hydra writes anything;
    the training loop joins it); any other hold on a locked directory is refused."""

    def __init__(self, run_dir: str | Path, shared: bool = False):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None
        self.shared = shared
        self._key = os.path.abspath(self.path)

    def acquire(self) -> "RunLock":
        check_writable(self.path.parent, "hydra.run.dir")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        if self.shared and self._key in _HELD:
            _HELD[self._key][1] += 1
            self.fd = _HELD[self._key][0]
            return self
        try:
            fd = open_own(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            raise RunDirError(f"{self.path}: cannot be opened ({e.strerror or type(e).__name__}); "
                              f"choose another hydra.run.dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunDirError(f"{self.path.parent}: in use by {_holder(self.path)} (another seqlab run "
                              f"writes there); wait for it to end or choose another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        if self.shared:
            _HELD[self._key] = [fd, 1]
        return self

    def release(self, force: bool = False) -> None:
        """Drop this hold; the lock itself goes with the last hold (or at once with ``force``: a
        preempted run frees the directory for its requeued job before handing the signal on)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        if self.shared:
            held = _HELD.get(self._key)
            if held is None or held[0] != fd:  # already dropped by a forced release
                return
            held[1] -= 1
            if held[1] > 0 and not force:
                return
            del _HELD[self._key]
        os.close(fd)  # closing drops the flock; the file stays (harmless, reused next time)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def check_unlocked(run_dir: Path) -> None:
    """Refuse (one line) when a live process holds ``run_dir``'s lock; takes no lock itself."""
    path = run_dir / LOCK_NAME
    if fcntl is None or not path.is_file() or os.path.abspath(path) in _HELD:
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
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


# Files a run (or a probe) writes into its directory: a directory holding any of them has an owner.
RESULT_FILES = (CHECKPOINT_NAME, "summary.json", "metrics.jsonl", "probe.npz", "config.yaml")
HYDRA_RECORD = ".hydra"


def check_fresh(run_dir: Path, tool: str = "the probe") -> None:
    """Refuse (one line) a directory that already holds a run's results: ``tool`` never writes over
    results it did not make."""
    run_dir = Path(run_dir)
    found = [name for name in RESULT_FILES if os.path.lexists(run_dir / name)]
    if found:
        raise RunDirError(f"hydra.run.dir={shown(run_dir)}: holds another run's results ({', '.join(found)}); "
                          f"{tool} never writes over them: drop hydra.run.dir (a fresh directory is made) or "
                          f"choose an empty one")


def write_hydra_record(run_dir: Path, cfg, hydra_cfg=None) -> None:
    """Hydra's record of this job (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``, what Hydra
    itself would write), written by seqlab once it holds the run's lock (conf/config.yaml sets
    ``hydra.output_subdir: null``), atomically and never through a link. ``hydra_cfg``: the job's Hydra
    config when it is not the current one (a population's members, hydra/launcher=batched)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from .files import write_text

    hydra_cfg = hydra_cfg if hydra_cfg is not None else HydraConfig.instance().cfg
    if hydra_cfg is None or hydra_cfg.hydra.output_subdir is not None:  # Hydra wrote it (or not under Hydra)
        return
    where = Path(run_dir) / HYDRA_RECORD
    if where.is_symlink():
        raise LinkedFile(f"{where} is a symbolic link (to {os.readlink(where)}) that seqlab did not create; "
                         f"refused, nothing was written through it: remove the link")
    where.mkdir(exist_ok=True)
    write_text(where / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text(where / "hydra.yaml", OmegaConf.to_yaml(hydra_cfg))
    write_text(where / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task))


def remove_stale_tmp(run_dir: Path) -> list[str]:
    """Remove the temporary files (``.NAME.XXXXXXXX.tmp``, seqlab.files.unique_tmp) that a kill during
    a write left in ``run_dir`` and its .hydra/; call only while holding the run's lock (no writer of
    ours is at work there). Returns their names."""
    removed = []
    for where in (Path(run_dir), Path(run_dir) / HYDRA_RECORD):
        if not where.is_dir() or where.is_symlink():
            continue
        for p in where.glob(".*.tmp"):
            if p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                removed.append(p.name)
    return removed


def accept(run_dir: Path, cfg, hydra_cfg=None) -> None:
    """What an entry point does once a run directory is this run's (the lock held, the run accepted):
    clear what a killed writer left, write Hydra's record."""
    remove_stale_tmp(run_dir)
    write_hydra_record(run_dir, cfg, hydra_cfg)


def check_run_dir_value(run_dir: str | None, key: str = "hydra.run.dir") -> None:
    """An empty ``hydra.run.dir=`` would put the run's files into the working directory: refused."""
    if run_dir is not None and not run_dir.strip():
        raise RunDirError(f"{key}={run_dir!r}: empty; it would write the run's files into the working directory. "
                          f"Give a directory, or drop {key} for a fresh one under outputs/")


# --- the command line, before Hydra ---------------------------------------------------------------

def _overrides(argv: list[str]) -> tuple[list[str], bool] | None:
    args = parse_args(argv)  # a bad flag is one line there, not argparse's usage text
    if args.help or args.hydra_help or args.shell_completion or args.info or args.cfg:
        return None
    return list(args.overrides), is_multirun(argv)


_value = override_value


def prepare(argv: list[str], config_name: str = "config") -> list[str]:
    """Check what ``argv`` says about run directories (one line, exit 2, on a problem) and return it
    with ``resume=last`` replaced by the directory it stands for."""
    parsed = _overrides(argv)
    if parsed is None:
        return argv
    overrides, multirun = parsed
    resume = _value(overrides, "resume")
    run_dir = _value(overrides, "hydra.run.dir")
    check_run_dir_value(run_dir)
    check_run_dir_value(_value(overrides, "hydra.sweep.dir"), "hydra.sweep.dir")
    if multirun:
        if resume not in (None, "null"):
            raise RunDirError(f"resume={resume}: not in a sweep (-m, hydra.mode=MULTIRUN); rerun the sweep's command with "
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
