"""The one training loop, in plain order:
batch -> forward -> loss -> backward -> (non-finite check) -> clip -> step -> (floss, eval, probe, checkpoint, log).

The loop runs one run, or a population of same-shaped runs (``train_members``; seqlab.population):
then the forward and backward are batched along a leading member dimension and every other line is
each member's own (its data, clipping, optimizer, non-finite policy, evaluations, probe, checkpoint).

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
from .population import Population, clip_members, step_members
from .probe import ProbeHistory, probe
from .probe.layer_stats import LayerStats
from .probe.measure import population_lyapunov_of
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

    A second SIGINT interrupts at once, unless the runs' summaries are already being written
    (``ending``): then the runs end as the first signal asked. On the way out, the handler that was
    installed before (e.g. submitit's requeue on SIGUSR2) is called.
    """

    # Set by the command line (seqlab.__main__): a process that stops on a signal is on its way out, so once
    # a stop was asked for, restore() ignores further stop signals instead of reinstalling the defaults; a
    # late Ctrl-C would otherwise land in the interpreter's shutdown (torch's atexit) as a traceback.
    process_ends_on_stop = False

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, object] = {}
        self.ending = False  # the runs' summaries are being written: a second SIGINT no longer interrupts them

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
        if self.signum == signal.SIGINT and signum == signal.SIGINT and not self.ending:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        pass  # the handlers stay until train() has written the summary (restore): a signal during the
        # shutdown is the same request, not a KeyboardInterrupt or a death halfway through the writes

    def restore(self) -> None:
        leaving = self.signum is not None and self.process_ends_on_stop
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_IGN if leaving else handler)

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
    summary. The run directory is locked for the life of the run (one writer at a time). A run that
    diverges, is preempted or fails raises, after its summary is written."""
    [result] = train_members([cfg], [info])
    if isinstance(result, BaseException):
        raise result
    return result


def train_members(cfgs: list[DictConfig], infos: list[RunInfo]) -> list[dict | BaseException]:
    """Train runs through the one loop: one run alone, or several same-shaped runs (configs that differ
    only in seed, learning rate and init; ``seqlab.population``) as one population whose forward and
    backward are batched along a leading member dimension. Each run keeps everything else of its own
    (data stream, clipping, optimizer, divergence, evaluations, probe, checkpoint, directory, W&B run).

    Returns each run's summary, or what ended it (``Diverged``, or the one-line error of a run that
    could not start); a signal (``Preempted``) or an unexpected error ends every run and is raised."""
    stop = StopFlag()
    batched = len(cfgs) > 1
    members: list[Member] = []
    try:
        for cfg, info in zip(cfgs, infos):
            member = Member(cfg, info, batched)
            try:
                member.open()
            except (ConfigError, OSError) as e:  # this run cannot start (a population's others go on)
                if batched:
                    member.record_failed_start()
                member.close()
                if not batched:
                    raise
                member.result = e
            members.append(member)
        live = [m for m in members if m.result is None]
        population = Population([m.model for m in live]) if batched and live else None
        with stop:
            _train(live, stop, population)
    except Preempted:
        stop.restore()
        for m in members:
            m.close(force=True)  # the requeued job (stop.chain) must find the directory free
        stop.chain()  # e.g. submitit requeues the job, which then finds the directory free
        raise
    finally:
        stop.restore()
        for m in members:
            m.close()
    return [m.result for m in members]


def _train(live: list["Member"], stop: StopFlag, population: "Population | None") -> None:
    """The loop, over the live members (a single run: one, on its fast path; a population: its forward
    and backward batched, every other line per member). A member that diverges ends where it diverges
    and leaves ``live``; the others go on."""
    if not live:
        return
    steps = live[0].steps  # a population's members share every knob but seed, learning rate and init
    try:
        fresh = [m for m in live if m.saved is None]
        for m in fresh:
            m.guard(live, m.start)
        probe_members([m for m in fresh if m in live and m.probe_settings], live, population, 0, steps == 0)
        if not live:  # every member diverged at step 0
            return
        first = min(m.state.step for m in live) + 1
        lead = live[0]
        bar = Progress(steps, first - 1, lead.name if population is None else f"{len(live)} runs",
                       enabled=lead.cfg.progress)
        tick = time.perf_counter()
        for step in range(first, steps + 1):
            group = [m for m in live if m.state.step < step]  # a member resumed from a later step waits
            if not group:
                continue
            batches = [m.task.make_batch(m.batch_size, m.data_gen, m.device) for m in group]
            loss_steps = lead.task.loss_steps
            if population is None:  # (B, T, O), read out at the loss steps only
                outputs = [lead.model(batches[0].inputs, steps=loss_steps)]
            else:  # (M, B, T, O): one batched forward over every member's own batch and weights
                outputs = population([m.model for m in group], torch.stack([b.inputs for b in batches]),
                                     loss_steps).unbind(0)
            losses = [m.task.loss(out, b) for m, out, b in zip(group, outputs, batches)]
            for m in group:
                m.optimizer.zero_grad(set_to_none=True)
            # members' losses are independent, so the sum's gradient is each member's own
            (losses[0] if len(losses) == 1 else torch.stack(losses).sum()).backward()
            for m in group:
                m.layer_stats.measure(step)  # due steps: per-layer raw gradient norms; update ratios after the step
            # Pre-clip global norm, each member's own (clip_grad_norm_ returns it; inf max_norm = measure only);
            # a population's members all in one pass (seqlab.population.clip_members: the same arithmetic).
            norms = ([torch.nn.utils.clip_grad_norm_(lead.params, lead.max_norm)] if population is None else
                     clip_members([m.params for m in group], [m.max_norm for m in group]))
            for m in group:
                if m.clip_value is not None:  # after the norm above is measured (it is logged pre-clip)
                    torch.nn.utils.clip_grad_value_(m.params, m.clip_value)
            values = torch.stack([*(loss.detach() for loss in losses), *norms]).tolist()  # one sync per step
            stepping = [m for m, loss_value, norm_value in zip(group, values, values[len(group):])
                        if m.guard(live, m.update, step, loss_value, norm_value, population is not None)]
            if population is not None:  # the members that take this update step together, each with its
                step_members([m.optimizer for m in stepping])  # own state and lr (seqlab.population)

            due = [m for m in group if m in live and m.due(step)]
            elapsed = time.perf_counter() - tick
            for m in group:
                if m in live:
                    m.guard(live, m.after_step, step, elapsed if m in due else None)
            if due:
                tick = time.perf_counter()
                bar.update(step, loss=lead.last_train_loss if population is None else None)
            else:
                bar.update(step)
            probing = [m for m in group if m in live and m.probe_settings and
                       (step % m.probe_settings.every == 0 or step == steps)]
            tick += probe_members(probing, live, population, step, step == steps)
            for m in group:
                if m in live and (step % m.checkpoint_every == 0 or stop.signum is not None):
                    m.save_checkpoint()
            if stop.signum is not None:
                raise Preempted(stop.signum, step)
            if not live:
                break
        bar.close()
        for m in list(live):
            m.save_checkpoint()
            stop.ending = True
            m.end(None)
            live.remove(m)
    except BaseException as e:
        # a second SIGINT now would cut a summary half-written (seen: a stop's summary.json missing when the
        # second Ctrl-C came 5 ms after the first): the runs end as the first signal asked
        stop.ending = True
        for m in live:
            m.end(e)
        raise


def probe_members(members: list["Member"], live: list["Member"], population: "Population | None", step: int,
                  final: bool) -> float:
    """Probe ``members`` at ``step``; returns the seconds it took (not training time). In a population the
    Lyapunov spectra, when due, come from one batched pass over the members (each member's own spectra:
    its weights, the same inputs and first Q as alone; seqlab.probe.lyapunov); the rest is per member."""
    t0 = time.perf_counter()
    spectra = {}
    due = [m for m in members if m.probe_settings.lyapunov_due(step, first=len(m.probes) == 0, last=final)]
    if population is not None and len(due) > 1:
        lead = due[0]
        spectra = dict(zip(due, population_lyapunov_of([m.model for m in due], lead.task, lead.probe_batch,
                                                       lead.probe_settings)))
        for m in due:
            m.probe_time += (time.perf_counter() - t0) / len(due)  # each member's share of the batched pass
    for m in members:
        m.guard(live, m.do_probe, step, final, spectra.get(m))
    return time.perf_counter() - t0


class Member:
    """One run inside the loop: its config, model, optimizer, data stream, record and tracker.

    A single run is a population of one. In a population (``batched``) the members share only the
    batched forward and backward; everything here stays each member's own, so each writes exactly what
    it would write alone."""

    def __init__(self, cfg: DictConfig, info: RunInfo, batched: bool = False):
        self.cfg, self.info, self.batched = cfg, info, batched
        self.run_dir = Path(info.run_dir)
        self.lock: RunLock | None = None
        self.result: dict | BaseException | None = None  # set when the run ends (or had already finished)
        self.saved: dict | None = None
        self.last_train_loss: float | None = None
        self.probe_time = 0.0
        self.exit_code = 1
        self.ended = False
        self.accepted = False

    def due(self, step: int) -> bool:  # steps that log a train row (and feed the next eval row)
        return step % self.log_every == 0 or step % self.eval_every == 0 or step == self.steps

    def open(self) -> None:
        """Lock the run directory, build the run's parts and restore its checkpoint; a run that had
        already finished all its steps gets its summary as ``result`` and is not trained."""
        cfg, info, run_dir = self.cfg, self.info, self.run_dir
        self.lock = RunLock(run_dir, shared=True).acquire()  # joins the entry point's hold, if it took one
        # the knobs the loop reads at every step, as plain values (a DictConfig lookup costs ~10 us)
        self.steps, self.batch_size, self.log_every = cfg.steps, cfg.batch_size, cfg.log_every
        self.eval_every, self.checkpoint_every = cfg.eval_every, cfg.checkpoint_every
        self.max_norm = cfg.grad_clip or math.inf
        self.clip_value = cfg.get("grad_clip_value")
        self.device, self.task, self.model = device, task, model = setup(cfg)
        self.rng = checkpoint.rng_state(device)  # the global RNG after this run's init (what a lone run saves)
        self.optimizer = optimizer = build_optimizer(cfg, model)
        self.flossing = make_flossing(build_floss(cfg), cfg, model, task)  # None unless floss=...
        self.params = list(model.parameters())
        try:
            self.early_stop = early_stop_rule(cfg.get("early_stop"))  # None: every run trains its whole budget
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.layer_stats = LayerStats(model, optimizer, self.due)  # per-layer gradient norms and update ratios
        self.data_gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.eval_batch = task.eval_batch(cfg.eval_size, torch.Generator().manual_seed(cfg.eval_seed)).to(device)
        self.other_lengths = length_tasks(cfg, task, device)  # eval_lengths: the task at other lengths (seqlab.lengths)

        self.config = config = OmegaConf.to_container(cfg, resolve=True)
        config["choices"] = dict(info.choices)
        self.ckpt_path = run_dir / checkpoint.CHECKPOINT_NAME
        self.saved, self.state = saved, state = restore(self.ckpt_path, config, cfg, model, optimizer,
                                                        self.data_gen, device)
        if saved is not None:
            self.rng = saved["rng"]
            done = finished_summary(run_dir, state, cfg)
            if done is not None:
                self.result = done  # a rerun of a finished run: its results stay as they are
                return
            state.segments += 1
            if self.flossing and "floss" in saved:
                self.flossing.load_state_dict(saved["floss"])
        if info.on_accept is not None:  # e.g. Hydra's record (.hydra/), written only into a directory this run owns
            info.on_accept()
            self.accepted = True
        self.name = name = saved.get("name", info.name) if saved else info.name
        self.probe_settings = probe_settings = build_probe(cfg)
        self.probe_path = run_dir / "probe.npz"
        self.probes = probes = (load_probes(self.probe_path, task, state) if probe_settings and saved
                                else ProbeHistory(task.lag))
        probes.drop_lyapunov(lambda i, step: probe_settings.lyapunov_due(step, first=i == 0, last=step == cfg.steps))
        self.recorder = RunRecorder(run_dir, config, keep_until_step=state.step if saved else None,
                                    expected_rows=state.evals if saved else None)
        self.tracker = (_make_tracker(cfg, info, config, task, name, saved) if cfg.logger else None) or NullTracker()

        # The gradient probe: its own fixed batch and generator, so training is the same with it on or off.
        self.probe_batch = probe_settings.make_batch(task, device) if probe_settings else None
        length = cfg.seq_len if "seq_len" in cfg.task else task.total_len  # digits, random_labels: their own T
        self.summary = {"status": "running", "name": name, "task": task.name, "seq_len": length, "seed": cfg.seed,
                        "baseline": task.baseline, "lag": task.lag,
                        "lag_distribution": lag_distribution(task, self.eval_batch),  # the probe's lag axis
                        "solved": False, "solved_step": None, "steps": cfg.steps,
                        **{k: v for k, v in info.choices.items() if k not in ("probe", "logger")}}
        if saved is not None:
            self.summary["resumed_from_step"] = state.step
        self.started, self.wall_before = time.perf_counter(), state.wall_time

    def record_failed_start(self) -> None:
        """A population member that fails before it trains (a bad knob of its own) still gets Hydra's record
        (.hydra/), as a lone job's fresh directory does (seqlab.__main__): only while it holds the directory's
        lock and only into a fresh one (no checkpoint: another run's directory stays as it was)."""
        if self.lock is None or self.accepted or self.info.on_accept is None or self.ckpt_exists():
            return
        try:
            self.info.on_accept()
            self.accepted = True
        except OSError:  # the member's own failure is what gets reported
            pass

    def ckpt_exists(self) -> bool:
        return (self.run_dir / checkpoint.CHECKPOINT_NAME).exists()

    def close(self, force: bool = False) -> None:
        if self.lock is not None:
            self.lock.release(force=force)
            self.lock = None

    def guard(self, live: list["Member"], action, *args):
        """``action(*args)``; a divergence (or an early stop) there ends this member (its summary written)
        and takes it out of ``live``; the others go on."""
        try:
            return action(*args)
        except (Diverged, Stopped) as e:
            live.remove(self)
            self.end(e)
            return None

    def start(self) -> None:
        """A fresh run's step 0: flossing (if on) and the first evaluation (its first probe: probe_members)."""
        self.do_floss(0)
        self.do_eval(0, {})

    def update(self, step: int, loss_value: float, norm_value: float, deferred: bool = False) -> bool:
        """The optimizer's step for this member, or (non-finite loss or gradient) its policy: skip the
        update, or stop the run as diverged. True when the update is taken (``deferred``: the loop takes it,
        with a population's other members: ``seqlab.population.step_members``)."""
        state, cfg = self.state, self.cfg
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            state.step = step
            what = "loss" if not math.isfinite(loss_value) else "gradient"
            state.skipped += 1  # on_nonfinite=skip: drop this update
            self.optimizer.zero_grad(set_to_none=True)
            if cfg.on_nonfinite == "stop" or too_many_skipped(state.skipped, step, cfg):
                self.summary.update(diverged_step=step, diverged_loss=loss_value,
                                    last_finite_grad_norm=state.last_finite_norm)
                raise Diverged(f"non-finite {what} at step {step} (last finite grad norm "
                               f"{state.last_finite_norm:.4g})" + (
                                   f"; {state.skipped} of {step} updates skipped, past "
                                   f"skip_limit={cfg.skip_limit}" if cfg.on_nonfinite == "skip" else ""))
        else:
            if not deferred:
                self.optimizer.step()
            state.last_finite_norm = norm_value
            state.window_loss += loss_value
            state.window_norm += norm_value
            state.window_n += 1
        state.step = step
        return math.isfinite(loss_value) and math.isfinite(norm_value)

    def after_step(self, step: int, elapsed: float | None) -> None:
        """Flossing when due; on a logged step (``elapsed``: training seconds since the last one) the
        train row, and the evaluation when due."""
        state, cfg = self.state, self.cfg
        self.do_floss(step)
        if elapsed is None:
            return
        state.train_time += elapsed
        n = max(state.window_n, 1)
        train_row = {"train/loss": state.window_loss / n if state.window_n else math.nan,
                     "train/grad_norm": state.window_norm / n if state.window_n else math.nan,
                     **self.layer_stats.row}
        tracked = {"step": step, **train_row}  # skipped updates and speed: summary.json and W&B summary
        self.last_train_loss = train_row["train/loss"]
        state.window_loss = state.window_norm = 0.0
        state.window_n = 0
        if step % self.eval_every == 0 or step == self.steps:
            self.do_eval(step, train_row, tracked)  # one W&B row: training window and evaluation
        else:
            self.tracker.log(tracked)

    def save_checkpoint(self) -> None:
        state, saved, tracker = self.state, self.saved, self.tracker
        state.wall_time = self.wall_before + time.perf_counter() - self.started
        checkpoint.save(self.ckpt_path, {
            "config": self.config, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "data_rng": self.data_gen.get_state(),
            # a population's members share the process's global RNG: each keeps the state its own init left
            "rng": self.rng if self.batched else checkpoint.rng_state(self.device), "loop": asdict(state),
            "name": self.name, "setting": (saved or {}).get("setting", self.info.setting),
            **({"wandb_id": tracker.run_id, "wandb_step": tracker.step} if tracker.run_id else
               {k: saved[k] for k in ("wandb_id", "wandb_step") if saved and k in saved}),
            **({"floss": self.flossing.state_dict()} if self.flossing else {}),
        })

    def do_eval(self, step: int, extra: dict, tracked: dict | None = None) -> None:
        """Evaluate; one metrics.jsonl row (with ``extra``, the training window) and one tracker row
        (with ``tracked`` too: the training row of this step, so W&B gets one row per step)."""
        state, task = self.state, self.task
        loss, acc = evaluate(self.model, task, self.eval_batch)
        if not math.isfinite(loss):
            self.summary.update(diverged_step=step, diverged_loss=loss, last_finite_grad_norm=state.last_finite_norm)
            raise Diverged(f"non-finite evaluation loss at step {step}")
        row = {"step": step, "eval/loss": loss, "eval/accuracy": acc, "eval/loss_over_baseline": loss / task.baseline,
               **length_row(self.model, self.other_lengths, evaluate), **extra}
        self.recorder.metrics(row)
        state.evals += 1
        self.tracker.log({**row, **(tracked or {})})
        if state.solved_step is None and task.solved(loss, acc):
            state.solved_step = step
        state.last_eval = row
        early_stop, cfg = self.early_stop, self.cfg
        reason = early_stop.check(step, cfg.steps, cfg.eval_every, loss / task.baseline) if early_stop else None
        if reason is not None and state.solved_step is None:
            raise Stopped(reason)

    def do_floss(self, step: int) -> None:
        """Gradient flossing when an episode is due (seqlab/flossing.py): before training, at step 0.
        Its rows go to the tracker and summary.json (metrics.jsonl holds the evaluations only)."""
        row = self.flossing(step) if self.flossing else None
        if row is not None:
            self.tracker.log(row)
            self.summary["flossing"] = self.flossing.rows

    def do_probe(self, step: int, final: bool = False, spectra: list | None = None) -> float:
        """Probe the gradient through time (``spectra``: its Lyapunov spectra, already measured);
        returns the seconds it took (not training time)."""
        t0 = time.perf_counter()
        probes, settings, task = self.probes, self.probe_settings, self.task
        result = probe(self.model, task, self.probe_batch, settings,
                       lyapunov=settings.lyapunov_due(step, first=len(probes) == 0, last=final), spectra=spectra)
        probes.append(step, result)
        if step == 0 and probes.theory is None:  # the mean-field prediction beside the probe at init
            probes.theory = beside_probe(self.model, self.config.get("model"), task, self.probe_batch, settings,
                                         result, step)
            self.tracker.log({"step": step, **theory_scalars(probes.theory)})
        probes.save(self.probe_path)
        self.state.probes = len(probes)
        labels = (("init",) if step == 0 else ()) + (("final",) if final else ())
        log_probe(self.tracker, step, result, labels, task.lag,
                  _grid_image(probes, self.info, self.tracker, settings))
        self.state.last_probe = {"step": step, **result.summary()}
        self.probe_time += time.perf_counter() - t0
        return time.perf_counter() - t0

    def end(self, error: BaseException | None) -> None:
        """Write what this run ended with (``error`` None: finished) into its summary, figures and
        tracker; ``result`` is then the summary, or the error. Once only: a kill inside it is not re-ended."""
        if self.ended:
            return
        self.ended = True
        summary, state, cfg, task = self.summary, self.state, self.cfg, self.task
        try:
            if error is None:
                summary.update(result_summary(state, task, cfg), parameters=sum(p.numel() for p in self.params),
                               device=str(self.device))
                self.exit_code = 0
            elif isinstance(error, Stopped):  # a hopeless grid point: its results so far, as status "stopped"
                self.save_checkpoint()
                summary.update(result_summary(state, task, cfg), status="stopped", stopped_at_step=state.step,
                               stop_reason=str(error), parameters=sum(p.numel() for p in self.params),
                               device=str(self.device))
                self.exit_code = 0
            elif isinstance(error, Preempted):
                summary.update(status="preempted", error=str(error), stopped_at_step=state.step)
                self.tracker.mark_preempting()
                self.exit_code = 128 + error.signum
            elif isinstance(error, Diverged):
                summary.update(status="diverged", error=str(error))
                if self.probe_settings:  # the gradient through time at the step it blew up (parameters not yet updated)
                    try:
                        self.do_probe(state.step, final=True)
                    except Exception as probe_error:  # noqa: BLE001 - the divergence is what gets reported
                        summary["probe_error"] = f"{type(probe_error).__name__}: {probe_error}".splitlines()[0]
            elif isinstance(error, KeyboardInterrupt):  # a second SIGINT: stop at once (the last checkpoint stays)
                summary.update(status="interrupted", error="stopped at once by a second SIGINT",
                               stopped_at_step=state.step)
            else:
                summary.update(status="failed", error=f"{type(error).__name__}: {error}".splitlines()[0])
        finally:
            self.result = summary if error is None or isinstance(error, Stopped) else error
            self._finish()

    def _finish(self) -> None:
        summary, state, tracker = self.summary, self.state, self.tracker
        summary.update(solved=state.solved_step is not None, solved_step=state.solved_step,
                       wall_time_s=self.wall_before + time.perf_counter() - self.started, segments=state.segments,
                       skipped_updates=state.skipped)  # also when it diverged under on_nonfinite=skip
        if state.last_probe is not None:
            summary["probe"] = state.last_probe
        if self.other_lengths and state.last_eval:
            summary["length_eval"] = length_summary(state.last_eval, self.other_lengths)
        settings = self.probe_settings
        if settings and self.probes.theory is not None:
            summary["theory"] = self.probes.theory
        if settings:
            summary["probe_time_s"] = self.probe_time
            if settings.plots and len(self.probes):
                _probe_figures(self.probes, self.info, tracker,
                               figure_title(self.task.name, self.info.choices.get("model"),
                                            self.cfg.seq_len if self.task.total_len > 1 else None,
                                            self.probes.n_layers))
        summary["wandb_run"] = tracker.run_id
        try:
            self.recorder.summary(summary)
        finally:  # the W&B run is finished even when the run directory has become unwritable
            tracker.summary(results_only(summary, self.config))
            tracker.finish(exit_code=self.exit_code)


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
