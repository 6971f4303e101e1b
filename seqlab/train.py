"""The one training loop, in plain order:
batch -> forward -> loss -> backward -> (non-finite check) -> clip -> step -> (floss, eval, probe, checkpoint, log).

Only this module and ``__main__`` see the Hydra config. Glossary: B batch,
T time, O outputs.

A run survives what long sweeps meet:
  * a non-finite loss or gradient (an exploding gradient, a subject of this lab)
    is caught at the step it happens: ``on_nonfinite=stop`` records it and ends
    the run as "diverged"; ``skip`` drops that update and counts it;
  * ``checkpoint.pt`` is written every ``checkpoint_every`` updates, at the end,
    and on SIGINT/SIGTERM/SIGUSR2 (at the next step boundary, so it is always a
    consistent state); rerunning into the same directory continues from it and,
    on CPU with a fixed seed, ends with the metrics of an uninterrupted run;
  * the tracker (W&B) can fail without stopping training (seqlab.tracking).
"""
from __future__ import annotations

import json
import math
import signal
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import checkpoint
from .checks import ConfigError
from .config import build_floss, build_optimizer, build_probe, setup
from .flossing import make_flossing
from .lengths import length_row, length_summary, length_tasks
from .models import SequenceModel
from .probe import ProbeHistory, probe
from .probe.layer_stats import LayerStats
from .probe.plots import GRID_PNG, figure_title, plot_grid, write_plots
from .probe.records import log_probe
from .progress import Progress
from .protocol import from_config as early_stop_rule
from .rundir import RunDirError, RunLock
from .theory.beside import beside_probe, theory_scalars
from .tasks import Batch, Task
from .tasks.base import lag_distribution
from .tracking import NullTracker, RunRecorder, make_tracker, results_only

EVAL_CHUNK = 256  # sequences per forward pass when evaluating (bounds memory at long T)
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR2")  # SIGUSR2: SLURM/submitit's "about to be preempted"
MIN_SKIPS_BEFORE_LIMIT = 10  # on_nonfinite=skip: a few early skips are tolerated whatever skip_limit says


class Diverged(RuntimeError):
    """A non-finite loss or gradient under ``on_nonfinite=stop``."""


class Stopped(RuntimeError):
    """A hopeless run stopped at a rung of its budget (``early_stop``; seqlab.protocol): an outcome, not a failure."""


class Preempted(RuntimeError):
    """Stopped by a signal after writing a checkpoint."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint written")
        self.signum, self.step = signum, step


@dataclass
class RunInfo:
    """What the entry point knows about this run from Hydra (plain values)."""

    run_dir: Path
    name: str
    group: str | None = None  # the sweep this run belongs to (a W&B tag and config "sweep"), None for one run
    choices: dict = field(default_factory=dict)  # config-group choices, e.g. {"model": "rnn"}
    setting: str | None = None  # the name without seed: the W&B group, so the UI averages seeds by default
    on_accept: Callable[[], None] | None = None  # called once the directory is this run's (fresh, or a resume of it)


@dataclass
class LoopState:
    """Everything about the loop's progress that a checkpoint must carry (besides model/optimizer/RNG);
    the summary is computed from it alone, so a run resumed at any point ends with the same summary."""

    step: int = 0
    window_loss: float = 0.0      # sums over the current log window
    window_norm: float = 0.0
    window_n: int = 0
    last_finite_norm: float = math.nan
    skipped: int = 0              # updates dropped under on_nonfinite=skip
    solved_step: int | None = None
    train_time: float = 0.0       # seconds inside training steps (not eval), across resumes
    wall_time: float = 0.0        # seconds of the processes that trained this run, up to the checkpoint
    segments: int = 1             # processes that trained it (1 + resumes)
    evals: int = 0                # rows written to metrics.jsonl
    probes: int = 0               # probe times written to probe.npz
    last_eval: dict = field(default_factory=dict)
    last_probe: dict | None = None  # the latest probe's summary (summary.json "probe")


class StopFlag:
    """Signal handlers that ask the loop to stop at the next step boundary.

    A second SIGINT interrupts at once. On the way out, the handler that was
    installed before (e.g. submitit's requeue on SIGUSR2) is called.
    """

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self):
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    self.previous[sig] = signal.signal(sig, self._handle)
                except ValueError:  # not the main thread (e.g. a thread-based launcher): no handlers
                    pass
        return self

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        pass  # the handlers stay until train() has written the summary (restore): a signal during the
        # shutdown is the same request, not a KeyboardInterrupt or a death halfway through the writes

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def chain(self) -> None:
        """Hand the signal to whoever had it before us (submitit requeues on SIGUSR2)."""
        handler = self.previous.get(self.signum)
        if callable(handler) and self.signum != signal.SIGINT:
            handler(self.signum, None)


@torch.no_grad()
def evaluate(model: SequenceModel, task: Task, batch: Batch) -> tuple[float, float]:
    """Mean loss and answer accuracy over a fixed batch, in chunks."""
    was_training = model.training
    model.eval()
    loss_sum, acc_sum, n = 0.0, 0.0, 0
    for i in range(0, batch.inputs.shape[0], EVAL_CHUNK):
        chunk = batch[i:i + EVAL_CHUNK]
        out = model(chunk.inputs)  # (b, T, O)
        w = chunk.weight  # examples (or answers, for a task with a per-example loss mask)
        loss_sum += float(task.loss(out, chunk)) * w
        acc_sum += task.accuracy(out, chunk) * w
        n += w
    model.train(was_training)
    return loss_sum / max(n, 1), acc_sum / max(n, 1)


def train(cfg: DictConfig, info: RunInfo) -> dict:
    """Train, evaluate and record one run (resuming from its checkpoint if it has one); returns its
    summary. The run directory is locked for the life of the run (one writer at a time)."""
    run_dir = Path(info.run_dir)
    lock = RunLock(run_dir, shared=True).acquire()  # joins the entry point's hold, if it took one
    stop = StopFlag()
    try:
        return _train(cfg, info, run_dir, stop)
    except Preempted:
        stop.restore()
        lock.release(force=True)  # the requeued job (stop.chain) must find the directory free
        stop.chain()  # e.g. submitit requeues the job, which then finds the directory free
        raise
    finally:
        stop.restore()
        lock.release()


def _train(cfg: DictConfig, info: RunInfo, run_dir: Path, stop: "StopFlag") -> dict:
    device, task, model = setup(cfg)
    optimizer = build_optimizer(cfg, model)
    flossing = make_flossing(build_floss(cfg), cfg, model, task)  # None unless floss=...: then nothing changes
    params = list(model.parameters())
    try:
        early_stop = early_stop_rule(cfg.get("early_stop"))  # None: every run trains its whole budget
    except ValueError as e:
        raise ConfigError(str(e)) from None

    def due(step: int) -> bool:  # steps that log a train row (and feed the next eval row)
        return step % cfg.log_every == 0 or step % cfg.eval_every == 0 or step == cfg.steps

    layer_stats = LayerStats(model, optimizer, due)  # per-layer gradient norms and update ratios
    data_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    eval_batch = task.eval_batch(cfg.eval_size, torch.Generator().manual_seed(cfg.eval_seed)).to(device)
    other_lengths = length_tasks(cfg, task, device)  # eval_lengths: the task at other lengths (seqlab.lengths)

    config = OmegaConf.to_container(cfg, resolve=True)
    config["choices"] = dict(info.choices)
    ckpt_path = run_dir / checkpoint.CHECKPOINT_NAME
    saved, state = restore(ckpt_path, config, cfg, model, optimizer, data_gen, device)
    if saved is not None:
        done = finished_summary(run_dir, state, cfg)
        if done is not None:
            return done  # a rerun of a finished run: its results stay as they are
        state.segments += 1
        if flossing and "floss" in saved:
            flossing.load_state_dict(saved["floss"])
    if info.on_accept is not None:  # e.g. Hydra's record (.hydra/), written only into a directory this run owns
        info.on_accept()
    name = saved.get("name", info.name) if saved else info.name
    probe_settings = build_probe(cfg)
    probe_path = run_dir / "probe.npz"
    probes = load_probes(probe_path, task, state) if probe_settings and saved else ProbeHistory(task.lag)
    probes.drop_lyapunov(lambda i, step: probe_settings.lyapunov_due(step, first=i == 0, last=step == cfg.steps))
    recorder = RunRecorder(run_dir, config, keep_until_step=state.step if saved else None,
                           expected_rows=state.evals if saved else None)
    tracker = (_make_tracker(cfg, info, config, task, name, saved) if cfg.logger else None) or NullTracker()

    # The gradient probe: its own fixed batch and generator, so training is the same with it on or off.
    probe_batch = probe_settings.make_batch(task, device) if probe_settings else None
    length = cfg.seq_len if "seq_len" in cfg.task else task.total_len  # digits, random_labels: their own T
    summary = {"status": "running", "name": name, "task": task.name, "seq_len": length, "seed": cfg.seed,
               "baseline": task.baseline, "lag": task.lag,
               "lag_distribution": lag_distribution(task, eval_batch),  # the answers' lags (probe's lag axis)
               "solved": False, "solved_step": None, "steps": cfg.steps,
               **{k: v for k, v in info.choices.items() if k not in ("probe", "logger")}}
    if saved is not None:
        summary["resumed_from_step"] = state.step
    exit_code, probe_time = 1, 0.0
    start, wall_before = time.perf_counter(), state.wall_time

    def save_checkpoint() -> None:
        state.wall_time = wall_before + time.perf_counter() - start
        checkpoint.save(ckpt_path, {
            "config": config, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "data_rng": data_gen.get_state(), "rng": checkpoint.rng_state(device), "loop": asdict(state),
            "name": name, "setting": (saved or {}).get("setting", info.setting),
            **({"wandb_id": tracker.run_id, "wandb_step": tracker.step} if tracker.run_id else
               {k: saved[k] for k in ("wandb_id", "wandb_step") if saved and k in saved}),
            **({"floss": flossing.state_dict()} if flossing else {}),
        })

    def do_eval(step: int, extra: dict, tracked: dict | None = None) -> None:
        """Evaluate; one metrics.jsonl row (with ``extra``, the training window) and one tracker row
        (with ``tracked`` too: the training row of this step, so W&B gets one row per step)."""
        loss, acc = evaluate(model, task, eval_batch)
        if not math.isfinite(loss):
            summary.update(diverged_step=step, diverged_loss=loss, last_finite_grad_norm=state.last_finite_norm)
            raise Diverged(f"non-finite evaluation loss at step {step}")
        row = {"step": step, "eval/loss": loss, "eval/accuracy": acc,
               "eval/loss_over_baseline": loss / task.baseline, **length_row(model, other_lengths, evaluate), **extra}
        recorder.metrics(row)
        state.evals += 1
        tracker.log({**row, **(tracked or {})})
        if state.solved_step is None and task.solved(loss, acc):
            state.solved_step = step
        state.last_eval = row
        reason = early_stop.check(step, cfg.steps, cfg.eval_every, loss / task.baseline) if early_stop else None
        if reason is not None and state.solved_step is None:
            raise Stopped(reason)

    def do_floss(step: int) -> None:
        """Gradient flossing when an episode is due (seqlab/flossing.py): before training, at step 0.
        Its rows go to the tracker and summary.json (metrics.jsonl holds the evaluations only)."""
        row = flossing(step) if flossing else None
        if row is not None:
            tracker.log(row)
            summary["flossing"] = flossing.rows

    def do_probe(step: int, final: bool = False) -> float:
        """Probe the gradient through time; returns the seconds it took (not training time)."""
        nonlocal probe_time
        t0 = time.perf_counter()
        result = probe(model, task, probe_batch, probe_settings,
                       lyapunov=probe_settings.lyapunov_due(step, first=len(probes) == 0, last=final))
        probes.append(step, result)
        if step == 0 and probes.theory is None:  # the mean-field prediction beside the probe at init
            probes.theory = beside_probe(model, config.get("model"), task, probe_batch, probe_settings, result, step)
            tracker.log({"step": step, **theory_scalars(probes.theory)})
        probes.save(probe_path)
        state.probes = len(probes)
        labels = (("init",) if step == 0 else ()) + (("final",) if final else ())
        log_probe(tracker, step, result, labels, task.lag, _grid_image(probes, info, tracker, probe_settings))
        state.last_probe = {"step": step, **result.summary()}
        probe_time += time.perf_counter() - t0
        return time.perf_counter() - t0

    try:
        with stop:
            if saved is None:
                do_floss(0)
                do_eval(0, {})
                if probe_settings:
                    do_probe(0, final=cfg.steps == 0)
            bar = Progress(cfg.steps, state.step, name, enabled=cfg.progress)
            tick = time.perf_counter()
            for step in range(state.step + 1, cfg.steps + 1):
                batch = task.make_batch(cfg.batch_size, data_gen, device)
                outputs = model(batch.inputs, steps=task.loss_steps)  # (B, T, O), read out at the loss steps only
                loss = task.loss(outputs, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                layer_stats.measure(step)  # due steps: per-layer raw gradient norms; update ratios after the step
                # Pre-clip global norm (clip_grad_norm_ returns it; inf max_norm = measure only).
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or math.inf)
                if cfg.get("grad_clip_value") is not None:  # after the norm above is measured (it is logged pre-clip)
                    torch.nn.utils.clip_grad_value_(params, cfg.grad_clip_value)
                loss_value, norm_value = torch.stack([loss.detach(), norm]).tolist()  # one sync per step
                if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                    state.step = step
                    what = "loss" if not math.isfinite(loss_value) else "gradient"
                    state.skipped += 1  # on_nonfinite=skip: drop this update
                    optimizer.zero_grad(set_to_none=True)
                    if cfg.on_nonfinite == "stop" or too_many_skipped(state.skipped, step, cfg):
                        summary.update(diverged_step=step, diverged_loss=loss_value,
                                       last_finite_grad_norm=state.last_finite_norm)
                        raise Diverged(f"non-finite {what} at step {step} (last finite grad norm "
                                       f"{state.last_finite_norm:.4g})" + (
                                           f"; {state.skipped} of {step} updates skipped, past "
                                           f"skip_limit={cfg.skip_limit}" if cfg.on_nonfinite == "skip" else ""))
                else:
                    optimizer.step()
                    state.last_finite_norm = norm_value
                    state.window_loss += loss_value
                    state.window_norm += norm_value
                    state.window_n += 1
                state.step = step

                do_floss(step)
                if due(step):
                    state.train_time += time.perf_counter() - tick
                    n = max(state.window_n, 1)
                    train_row = {"train/loss": state.window_loss / n if state.window_n else math.nan,
                                 "train/grad_norm": state.window_norm / n if state.window_n else math.nan,
                                 **layer_stats.row}
                    tracked = {"step": step, **train_row}  # skipped updates and speed: summary.json and W&B summary
                    bar.update(step, loss=train_row["train/loss"])
                    state.window_loss = state.window_norm = 0.0
                    state.window_n = 0
                    if step % cfg.eval_every == 0 or step == cfg.steps:
                        do_eval(step, train_row, tracked)  # one W&B row: training window and evaluation
                    else:
                        tracker.log(tracked)
                    tick = time.perf_counter()
                else:
                    bar.update(step)
                if probe_settings and (step % probe_settings.every == 0 or step == cfg.steps):
                    tick += do_probe(step, final=step == cfg.steps)
                if step % cfg.checkpoint_every == 0 or stop.signum is not None:
                    save_checkpoint()
                if stop.signum is not None:
                    raise Preempted(stop.signum, state.step)
            bar.close()
            save_checkpoint()
        summary.update(result_summary(state, task, cfg), parameters=sum(p.numel() for p in params),
                       device=str(device))
        exit_code = 0
        return summary
    except Stopped as e:  # a hopeless grid point: its results so far, as status "stopped"
        save_checkpoint()
        summary.update(result_summary(state, task, cfg), status="stopped", stopped_at_step=state.step,
                       stop_reason=str(e), parameters=sum(p.numel() for p in params), device=str(device))
        exit_code = 0
        return summary
    except Preempted as e:
        summary.update(status="preempted", error=str(e), stopped_at_step=state.step)
        tracker.mark_preempting()
        exit_code = 128 + e.signum
        raise
    except Diverged as e:
        summary.update(status="diverged", error=str(e))
        if probe_settings:  # the gradient through time at the step it blew up (parameters not yet updated)
            try:
                do_probe(state.step, final=True)
            except Exception as probe_error:  # noqa: BLE001 - the divergence is what gets reported
                summary["probe_error"] = f"{type(probe_error).__name__}: {probe_error}".splitlines()[0]
        raise
    except KeyboardInterrupt:  # a second SIGINT: stop at once (the last checkpoint is where a rerun resumes)
        summary.update(status="interrupted", error="stopped at once by a second SIGINT", stopped_at_step=state.step)
        raise
    except BaseException as e:
        summary.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    finally:
        summary.update(solved=state.solved_step is not None, solved_step=state.solved_step,
                       wall_time_s=wall_before + time.perf_counter() - start, segments=state.segments,
                       skipped_updates=state.skipped)  # also when it diverged under on_nonfinite=skip
        if state.last_probe is not None:
            summary["probe"] = state.last_probe
        if other_lengths and state.last_eval:
            summary["length_eval"] = length_summary(state.last_eval, other_lengths)
        if probe_settings and probes.theory is not None:
            summary["theory"] = probes.theory
        if probe_settings:
            summary["probe_time_s"] = probe_time
            if probe_settings.plots and len(probes):
                _probe_figures(probes, info, tracker, figure_title(task.name, info.choices.get("model"),
                                                                    cfg.seq_len if task.total_len > 1 else None,
                                                                    probes.n_layers))
        summary["wandb_run"] = tracker.run_id
        try:
            recorder.summary(summary)
        finally:  # the W&B run is finished even when the run directory has become unwritable
            tracker.summary(results_only(summary, config))
            tracker.finish(exit_code=exit_code)


def too_many_skipped(skipped: int, step: int, cfg: DictConfig) -> bool:
    """``on_nonfinite=skip`` gives up (diverged) once more than ``skip_limit`` of the updates so far,
    and at least ``MIN_SKIPS_BEFORE_LIMIT`` of them, were skipped: a run that mostly skips is not
    training, whatever its last finite loss says."""
    return skipped >= MIN_SKIPS_BEFORE_LIMIT and skipped > cfg.get("skip_limit", 0.1) * step


def result_summary(state: LoopState, task: Task, cfg: DictConfig) -> dict:
    """The finished run's results, from its loop state alone (so a resumed run reports what an
    uninterrupted one would). Wall time spans every segment; steps/s counts training time only."""
    last = state.last_eval
    return dict(status="finished", final_loss=last["eval/loss"], final_accuracy=last["eval/accuracy"],
                loss_over_baseline=last["eval/loss_over_baseline"],
                final_solved=task.solved(last["eval/loss"], last["eval/accuracy"]),
                skipped_updates=state.skipped, train_time_s=state.train_time,
                steps_per_s=state.step / state.train_time if state.train_time > 0 else None)


def restore(path: Path, config: dict, cfg: DictConfig, model, optimizer, data_gen, device):
    """(checkpoint dict, its LoopState) for a run directory with a checkpoint, else (None, a fresh
    LoopState). A checkpoint of another experiment, or beyond ``steps``, is refused with one line."""
    saved = checkpoint.load(path)
    if saved is None:
        return None, LoopState()
    checkpoint.check_compatible(saved["config"], config, str(path.parent))
    try:
        state = LoopState(**saved["loop"])
    except TypeError:
        raise RunDirError(f"{path}: its loop state is not this version's; delete it to start afresh") from None
    if cfg.steps < state.step:
        raise ConfigError(f"steps={cfg.steps}: the checkpoint in {path.parent} is at step {state.step}; "
                          f"a resumed run can only train further (steps >= {state.step})")
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        data_gen.set_state(saved["data_rng"])
        checkpoint.set_rng_state(saved["rng"], device)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        why = " ".join(str(e).split())[:160]
        raise RunDirError(f"{path}: does not fit this model ({type(e).__name__}: {why}); delete it to "
                          f"start afresh") from None
    return saved, state


def finished_summary(run_dir: Path, state: LoopState, cfg: DictConfig) -> dict | None:
    """The summary of a run that already trained all ``cfg.steps`` and says so, else None."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):  # damaged: the rerun writes it again, from the checkpoint's state
        return None
    if not isinstance(summary, dict) or summary.get("steps") != cfg.steps:
        return None
    ended = state.step == cfg.steps and summary.get("status") == "finished"
    stopped = summary.get("status") == "stopped" and summary.get("stopped_at_step") == state.step  # early_stop
    if not (ended or stopped):
        return None
    return {**summary, "already_finished": True}


def load_probes(path: Path, task: Task, state: LoopState) -> ProbeHistory:
    """probe.npz up to the checkpoint; fewer probes than the checkpoint recorded (a deleted or damaged
    file) is refused with one line rather than a run whose early probes are silently gone."""
    history = ProbeHistory(task.lag)
    if path.exists():
        try:
            history = ProbeHistory.load(path, until_step=state.step)
        except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, ValueError, KeyError, ...
            raise RunDirError(f"{path}: damaged ({type(e).__name__}); restore it, or delete "
                              f"{path.parent / checkpoint.CHECKPOINT_NAME} to start this run afresh") from None
    if len(history) and _nan_where_the_checkpoint_measured(history, state.last_probe):
        raise RunDirError(f"{path}: damaged (its last probe is NaN where the checkpoint recorded finite numbers); "
                          f"restore it, or delete {path.parent / checkpoint.CHECKPOINT_NAME} to start this run afresh")
    if len(history) != state.probes:
        raise RunDirError(f"{path}: has {len(history)} of the {state.probes} probes up to step {state.step} "
                          f"that the checkpoint recorded; restore it, or delete "
                          f"{path.parent / checkpoint.CHECKPOINT_NAME} to start this run afresh")
    return history


def _nan_where_the_checkpoint_measured(history: ProbeHistory, last_probe: dict | None) -> bool:
    """Whether the last probe in probe.npz is all NaN although the checkpoint's record of that probe has a
    finite gain (a file emptied of numbers; a probe that really measured NaN agrees with the checkpoint)."""
    finite = any(isinstance(v, dict) and isinstance(v.get("gain"), (int, float)) and math.isfinite(v["gain"])
                 for v in (last_probe or {}).values())
    last = {k: v[-1] for k, v in history.arrays().items() if k.startswith("mean_")}
    return finite and bool(last) and all(np.isnan(np.asarray(v, dtype=np.float64)).all() for v in last.values())


def _probe_figures(probes: ProbeHistory, info: RunInfo, tracker, title: str) -> None:
    """The probe's figures (seqlab.probe.plots) into the run directory and the tracker; a failure
    here is reported, never raised (the run's numbers are already in probe.npz)."""
    try:
        for path in write_plots(probes, info.run_dir, title=title):
            tracker.image(f"probe_figures/{path.stem}", path)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"probe figures not written: {type(e).__name__}: {e}")


def _grid_image(probes: ProbeHistory, info: RunInfo, tracker, settings) -> str | None:
    """The latest probe's layer x lag heat map for the tracker (W&B shows one per probe, with a step
    slider): only for a live tracker, a stacked model and ``probe.plots``; rewritten at every probe."""
    if tracker.run_id is None or not settings.plots or probes.n_layers < 2 or len(probes.lags) < 2:
        return None
    try:
        path = plot_grid(probes, Path(info.run_dir) / GRID_PNG, f"step {probes.steps[-1]}", probes=[len(probes) - 1])
        return None if path is None else str(path)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"probe grid figure not written: {type(e).__name__}: {e}")
        return None


def _make_tracker(cfg: DictConfig, info: RunInfo, config: dict, task: Task, name: str, saved: dict | None):
    """This run's tracker (seqlab.tracking.make_tracker): grouped by its setting, the sweep as a tag; a
    resumed run continues its W&B run."""
    length = cfg.seq_len if "seq_len" in cfg.task else task.total_len  # digits, random_labels: their own T
    return make_tracker(cfg.logger, info.run_dir, config, name, job_type=task.name, T=length, setting=info.setting,
                        sweep=info.group, saved=saved)


def format_summary(s: dict) -> str:
    """The line printed last: which run (task, model, T, seed, other overrides), then its results."""
    name = s.get("name") or f"{s.get('task')} {s.get('model', '')} T={s.get('seq_len')}"
    who = name if "seed=" in name else f"{name} seed={s.get('seed')}"
    if s.get("status") == "stopped":
        return (f"{who}: stopped early (not solved): {s.get('stop_reason', '')}; final eval loss {s['final_loss']:.4g} "
                f"vs baseline {s['baseline']:.4g}, {s['wall_time_s']:.1f} s wall")
    if s.get("status") != "finished":
        return f"{who}: run {s.get('status')}: {s.get('error', '')}"
    solved = f"solved at step {s['solved_step']}" if s["solved"] else "not solved"
    resumed = f", {s['segments']} segments" if s.get("segments", 1) > 1 else ""
    return (f"{who}: final eval loss {s['final_loss']:.4g} vs baseline {s['baseline']:.4g} "
            f"(ratio {s['loss_over_baseline']:.3g}), accuracy {s['final_accuracy']:.3f}; {solved}; "
            f"{s['steps']} steps, {s['wall_time_s']:.1f} s wall{resumed} "
            f"({s['steps_per_s'] or 0:.1f} steps/s in {s.get('train_time_s') or 0:.1f} s of training)")
