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
import os
import warnings
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from . import files
from .files import jsonable as _jsonable
from .rundir import CHECKPOINT_NAME, RunDirError


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` via a uniquely named temporary file and a rename, so a reader never sees
    half of it, two writers never share a temporary file, and a link there is replaced, not followed."""
    files.write_json(path, data)


def _damaged(path: Path, what: str) -> RunDirError:
    return RunDirError(f"{path}: {what}; the run cannot continue with its record intact: restore the file, "
                       f"or delete {path.parent / CHECKPOINT_NAME} to start this run afresh")


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a damaged file (not UTF-8, a line that is not a JSON object with a
    ``step``) is one line naming it. A last line cut short by a kill (no newline) is dropped."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise _damaged(path, "damaged (not text)") from None
    lines = text.split("\n")
    torn = lines.pop() if lines else ""  # after the last newline: empty, or a write cut short
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise _damaged(path, f"damaged (line {i} is not a metrics row)")
        rows.append(row)
    del torn
    return rows


class RunRecorder:
    """Writes config.yaml, metrics.jsonl and summary.json into ``run_dir``."""

    def __init__(self, run_dir: str | Path, config: dict, keep_until_step: int | None = None,
                 expected_rows: int | None = None):
        """A fresh record, or (resuming) the rows up to ``keep_until_step`` kept and the rest dropped:
        those were written after the checkpoint and will be written again. ``expected_rows``: how many
        rows the checkpoint says were written by then; fewer (a deleted or truncated file) is refused."""
        self.dir = Path(run_dir)
        self.metrics_path = self.dir / "metrics.jsonl"
        kept = []
        if keep_until_step is not None:
            if self.metrics_path.exists():
                kept = [r for r in read_metrics(self.metrics_path) if r["step"] <= keep_until_step]
            if expected_rows is not None and len(kept) != expected_rows:
                raise _damaged(self.metrics_path, f"has {len(kept)} of the {expected_rows} evaluation rows "
                                                  f"up to step {keep_until_step} that the checkpoint recorded")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
            write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
            (self.dir / "summary.json").unlink(missing_ok=True)  # a resumed run is not finished until it says so
        except OSError as e:
            raise unwritable(self.dir, e) from None

    def metrics(self, row: dict) -> None:
        try:
            files.append_text(self.metrics_path, json.dumps(_jsonable(row)) + "\n")  # never through a link
        except OSError as e:
            raise unwritable(self.dir, e) from None

    def summary(self, data: dict) -> None:
        try:
            write_json_atomic(self.dir / "summary.json", data)
        except OSError as e:
            raise unwritable(self.dir, e) from None


def write_text_atomic(path: Path, text: str) -> None:
    files.write_text(path, text)


def unwritable(run_dir: Path, err: OSError) -> RunDirError:
    return RunDirError(f"{run_dir}: cannot write the run's files ({err.strerror or type(err).__name__}); "
                       f"free the space or choose a writable hydra.run.dir, then rerun to continue "
                       f"from the last checkpoint")


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


class SeqlabWarning(UserWarning):
    """A fault seqlab works around (W&B cannot start, goes away, ...): a warning on stderr, one line."""


def warn(message: str) -> None:
    warnings.warn(message, SeqlabWarning, stacklevel=3)


# Keys of summary.json that are not results: the run's settings (W&B config already has them), the
# probe dict (its numbers are the last probe_summary/* values, W&B's summary of those series) and
# bookkeeping (the W&B id, where a resume started, the device; lists and dicts such as the answers'
# lag distribution and the flossing rows stay in summary.json).
NOT_RESULTS = ("probe", "task", "steps", "seed", "seq_len", "name", "wandb_run", "lag", "resumed_from_step",
               "device", "mode", "checkpoint", "step", "already_finished")


def results_only(summary: dict, config: dict) -> dict:
    """The W&B summary: the results of summary.json (numbers, flags, status and error), without config
    values, bookkeeping, or nested dicts and lists (those stay in the run directory)."""
    choices = config.get("choices") or {}
    return {k: v for k, v in summary.items()
            if v is not None and not isinstance(v, (dict, list, tuple))
            and k not in NOT_RESULTS and k not in config and k not in choices}


# The run's config as W&B shows it (flat keys a researcher groups, filters and makes columns from).
# config.yaml in the run directory keeps the complete Hydra config; these are left out of W&B's:
BOOKKEEPING = ("progress", "resume", "threads", "checkpoint_every", "logger", "choices", "seq_len", "hydra")
HOISTED = ("task", "model", "optim")  # groups whose knobs become top-level keys (model.layer's too)


def _knobs(node: dict, prefix: str = "") -> dict:
    """The leaf values of a Hydra node by name, without ``_target_``/``_partial_`` (nested nodes, e.g.
    model.layer, are flattened into the same level; a name seen twice keeps its dotted path)."""
    out: dict = {}
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict):
            for k, v in _knobs(value, f"{prefix}{key}.").items():
                out[k if k not in out else f"{prefix}{key}.{k}"] = v
        else:
            out[key] = value
    return out


def _node(value: Any) -> Any:
    """A group that is on (a dict of knobs, internals dropped) or off (its option name, e.g. 'none')."""
    if isinstance(value, dict):
        knobs = _knobs(value)
        return knobs or None
    return value


def wandb_config(config: dict, T: int | None = None) -> dict:
    """W&B's config of a run: the choices by name (``cell`` = the model option, ``task``, ``optimizer``,
    ``remedy``), ``T``, every knob of the task, the model (and its layer) and the optimizer as a top-level
    key (``lr``, ``init``, ``hidden_size``, ``activation``, ...), the loop's own settings (``seed``,
    ``steps``, ``batch_size``, ``grad_clip``, ...), and the probe's and flossing's knobs under ``probe``
    and ``floss``. No Hydra internals (``_target_``, ``_partial_``), no empty nodes, no bookkeeping
    (threads, progress, logger, resume, checkpoint_every). A knob whose name is taken keeps its group's
    prefix (``task.seed``)."""
    choices = config.get("choices") or {}
    out: dict = {"cell": choices.get("model"), "task": choices.get("task"), "T": T,
                 "optimizer": choices.get("optim")}
    if choices.get("remedy"):
        out["remedy"] = choices["remedy"]
    for key, value in config.items():
        if key in BOOKKEEPING or key in HOISTED or isinstance(value, dict):
            continue
        out[key] = value
    for group in HOISTED:
        for key, value in _knobs(config.get(group) or {}).items():
            if key == "seq_len":
                continue
            out[key if key not in out else f"{group}.{key}"] = value
    for group in ("probe", "floss"):
        if group in config:
            node = _node(config[group])
            out[group] = node if node is not None else (choices.get(group) or "none")
    return out


GROUP_MAX = 128  # W&B's limit on a group name


def wandb_group(setting: str) -> str:
    """The W&B group of a setting: the setting itself, or (past W&B's length limit) its start and a
    hash of the whole, so two long settings never share a group by accident."""
    if len(setting) <= GROUP_MAX:
        return setting
    import hashlib

    return setting[:GROUP_MAX - 9] + "~" + hashlib.sha1(setting.encode()).hexdigest()[:8]


def sync_command(folders: list) -> str:
    """The one command that uploads offline W&B run folders: ``wandb sync A B ...``. The folders of one
    resumed run (same id) are uploaded one after the other in start-time order whatever their order
    here: wandb 0.31's `wandb sync` hands the set of .wandb files to wandb-core, whose
    ``RunSyncOperation.initAndPlan`` groups them by entity/project/run id and sorts each group by the
    run's start time (``wandb sync --help``, option -n). There is no ``--append`` in wandb 0.31."""
    return "wandb sync " + " ".join(str(f) for f in folders)


def make_tracker(logger, run_dir: str | Path, config: dict, name: str, job_type: str, T: int | None = None,
                 setting: str | None = None, sweep: str | None = None, saved: dict | None = None,
                 extra_config: dict | None = None):
    """The tracker a run's ``logger`` config node asks for (W&B, offline unless told; None/NullTracker for
    ``logger=none``), for the training loop and the probe's command line alike. W&B runs are grouped by
    ``setting`` (the UI's default grouping averages the seeds of one setting), tagged with the ``sweep``;
    ``saved`` (a checkpoint) continues its W&B run (same id, setting, _step). Its W&B config is
    ``wandb_config`` of the run's (flat: cell, task, T, lr, ...) and ``extra_config``. Only the lab's own
    tracker classes are built (seqlab.targets)."""
    if not logger:
        return NullTracker()
    from hydra.utils import instantiate

    from .targets import check_targets

    check_targets(logger, "logger")
    saved = saved or {}
    setting = saved.get("setting", setting)
    kwargs = {}
    if "group" in logger:
        kwargs["group"] = logger.group or (wandb_group(setting) if setting else None)
    if sweep and "tags" in logger:
        kwargs["tags"] = [*logger.tags, sweep]
    if saved.get("wandb_id"):
        kwargs.update(resume_id=saved["wandb_id"], start_step=saved.get("wandb_step", 0))
    config = {**wandb_config(config, T=T), **({"setting": setting} if setting else {}),
              **({"sweep": sweep} if sweep else {}), **(extra_config or {})}
    return instantiate(logger)(run_dir=run_dir, config=config, name=name, job_type=job_type, **kwargs)


def sync_hint(run_dir: Path, run_id: str | None) -> str | None:
    """How to upload an offline run: every segment (the first run and each resume) in one
    ``wandb sync``, which keeps them one run, in start-time order."""
    if not run_id:
        return None
    segments = sorted(Path(run_dir).glob(f"wandb/offline-run-*-{run_id}"))
    if not segments:
        return None
    return f"W&B offline run {run_id}; upload with: {sync_command(segments)}"


class NullTracker:
    """No external tracker (``logger=none``)."""

    run_id = None
    step = 0

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


# W&B's own directories (config, cache, data) default to HOME; where they are not writable (a read-only
# HOME on a cluster node), the run directory holds them, instead of wandb-core printing ERROR lines.
_WANDB_DIRS = {"WANDB_CONFIG_DIR": ".config/wandb", "WANDB_CACHE_DIR": ".cache/wandb",
               "WANDB_DATA_DIR": ".local/share/wandb"}
OFFLINE_INIT_TIMEOUT = 120.0  # starting wandb-core on a loaded machine; nothing remote is waited for


def _writable(path: Path) -> bool:
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _ensure_writable_wandb_dirs(run_dir: Path) -> None:
    home = Path(os.environ.get("HOME") or "/nonexistent")
    for var, rel in _WANDB_DIRS.items():
        where = Path(os.environ[var]) if os.environ.get(var) else home / rel
        if not _writable(where):
            os.environ[var] = str(run_dir / "wandb" / ("." + var.lower()))


class WandbTracker:
    """A W&B run that lives inside the run directory; offline unless told otherwise.

    Every row is logged with an explicit W&B ``_step`` from one counter that a checkpoint carries, so a
    resumed run is one W&B run whose steps continue where the last segment ended (upload the segments
    with one ``wandb sync A B``: ``sync_command``). Rows a killed segment had already sent (those after its last
    checkpoint, which the resumed run computes again, identically) are not sent twice: the counter and
    the last training step sent are kept in ``wandb/seqlab_logged`` as rows go out. Training rows carry
    ``step`` as their x axis (``define_metric``).
    """

    def __init__(self, run_dir: str | Path, config: dict, name: str, job_type: str,
                 group: str | None = None, project: str = "seqlab", entity: str | None = None,
                 mode: str | None = None, tags: list[str] | tuple[str, ...] = (),
                 resume_id: str | None = None, start_step: int = 0, init_timeout: float = 15.0,
                 quiet: bool = True):
        import wandb

        self._wandb = wandb
        run_dir = Path(run_dir)
        mode = mode or os.environ.get("WANDB_MODE") or "offline"
        _ensure_writable_wandb_dirs(run_dir)
        settings = dict(silent=True) if quiet else {}
        # create_new: several W&B runs live at once in one process (a population's members, seqlab.population)
        kwargs = dict(project=project, entity=entity, dir=str(run_dir), config=config, name=name,
                      group=group, job_type=job_type, tags=list(tags), reinit="create_new",
                      id=resume_id, resume="allow" if resume_id else None)
        timeout = init_timeout if mode == "online" else max(init_timeout, OFFLINE_INIT_TIMEOUT)
        self.run = None
        self.step = start_step
        self._skip_until: int | None = None  # training rows up to this step were sent by a killed segment
        self._skipping = False
        self._last_train_step: int | None = None
        self._mark_fd: int | None = None
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=timeout, **settings), **kwargs)
        except Exception as e:  # logging must never kill training
            if mode != "online":
                warn(f"W&B could not start ({_first_line(e)}); training goes on without it, the run "
                     f"directory keeps every result")
                return
            warn(f"W&B online start failed within {init_timeout:g} s ({_first_line(e)}); logging offline "
                 f"instead, upload later with `wandb sync {run_dir}/wandb/offline-run-*`")
            try:
                self.run = wandb.init(mode="offline", settings=wandb.Settings(
                    init_timeout=OFFLINE_INIT_TIMEOUT, **settings), **kwargs)
            except Exception as e2:
                warn(f"W&B offline start failed too ({_first_line(e2)}); training goes on without it")
                return
        self._open_marks(run_dir / "wandb" / "seqlab_logged", resume_id)
        self._define_metrics()

    def _define_metrics(self) -> None:
        """x axes and summaries: W&B's summary holds results only (the held-out loss's min and last, the
        accuracy's max and last, the last training and probe-fit values), never the last point of a curve
        against lag or layer, a table or an image."""
        define = self.run.define_metric
        define("step")
        for name, summary in (("eval/loss", "min,last"), ("eval/loss_over_baseline", "min,last"),
                              ("eval/accuracy", "max,last")):
            define(name, step_metric="step", summary=summary)
        for prefix in ("train", "eval", "probe_summary", "floss", "theory"):
            define(f"{prefix}/*", step_metric="step")
        for glob in ("probe_tables/*", "probe_figures/*"):
            define(glob, summary="none")
        # the probe's decay curves: x = lag, so every run's curves overlay in one chart
        self.define_axis("probe/lag", "probe/*")

    def _open_marks(self, path: Path, resume_id: str | None) -> None:
        """Read what a previous segment of this W&B run sent, then keep the file up to date."""
        try:
            fields = path.read_text().split() if resume_id and path.is_file() and not path.is_symlink() else []
            if len(fields) == 3 and fields[2] == resume_id:
                self.step = max(self.step, int(fields[0]))
                self._skip_until = self._last_train_step = int(fields[1])
            self._mark_fd = files.open_own(path, os.O_RDWR | os.O_CREAT)  # never through a link
        except files.LinkedFile as e:
            warn(f"{e}; W&B goes on without resume marks")
            self._mark_fd = None
        except (OSError, ValueError):
            self._mark_fd = None

    def _mark(self) -> None:
        if self._mark_fd is not None:
            line = f"{self.step} {-1 if self._last_train_step is None else self._last_train_step} {self.run_id}"
            os.pwrite(self._mark_fd, line.ljust(80).encode() + b"\n", 0)

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
            warn(f"W&B {what} failed ({_first_line(e)}); training goes on, W&B logging is off for this run")
            self.run = None

    def log(self, row: dict) -> None:
        """One W&B row at the next ``_step``; rows of a training step a killed segment already sent
        (and the rows without ``step`` that follow them, e.g. probe curves) are skipped."""
        if self.run is None:
            return
        if "step" in row:
            self._skipping = self._skip_until is not None and row["step"] <= self._skip_until
        if self._skipping:
            return
        self._guard("log", lambda: self.run.log(row, step=self.step))
        self.step += 1
        if "step" in row:
            self._last_train_step = row["step"]
        self._mark()

    def summary(self, data: dict) -> None:
        self._guard("summary", lambda: self.run.summary.update(data))

    def image(self, name: str, path: str | Path) -> None:
        """Log a PNG from the run directory (the probe's figures)."""
        if self.run is not None:
            self.log({name: self._wandb.Image(str(path))})

    def table(self, name: str, columns: list[str], rows: list[list], extra: dict | None = None) -> None:
        """Log a W&B Table under ``name`` in one row with ``extra`` (e.g. {"step": 250}); a
        table logged at every probe gets W&B's step slider and can be queried across runs."""
        if self.run is not None:
            self.log({name: self._wandb.Table(columns=columns, data=rows), **(extra or {})})

    def define_axis(self, x: str, glob: str) -> None:
        """Plot every metric matching ``glob`` against ``x`` (e.g. probe/layer for probe_depth/*), so
        curves overlay across runs; defined once per run."""
        defined = self.__dict__.setdefault("_axes", set())
        if (x, glob) not in defined:
            defined.add((x, glob))  # a curve's points are not results: no summary for the axis or the curve
            self._guard("define_axis", lambda: (self.run.define_metric(x, summary="none"),
                                                self.run.define_metric(glob, step_metric=x, summary="none")))

    def mark_preempting(self) -> None:
        """The run will be resumed (W&B shows it as preempted, not failed)."""
        self._guard("mark_preempting", lambda: self.run.mark_preempting())

    def finish(self, exit_code: int = 0) -> None:
        """Always called, with exit_code=1 on error, so a multirun's next job gets a fresh run."""
        self._guard("finish", lambda: self.run.finish(exit_code=exit_code))
        self.run = None
        if self._mark_fd is not None:
            os.close(self._mark_fd)
            self._mark_fd = None
