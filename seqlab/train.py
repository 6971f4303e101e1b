"""The one training loop, in plain order:
batch -> forward -> loss -> backward -> clip -> step -> (eval, log).

Only this module and ``__main__`` see the Hydra config. Glossary: B batch,
T time, O outputs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from .config import build_model, build_optimizer, build_task, resolve_device, validate
from .models import SequenceModel
from .tasks import Batch, Task
from .tracking import NullTracker, RunRecorder

EVAL_CHUNK = 256  # sequences per forward pass when evaluating (bounds memory at long T)


@dataclass
class RunInfo:
    """What the entry point knows about this run from Hydra (plain values)."""

    run_dir: Path
    name: str
    group: str | None = None
    choices: dict = field(default_factory=dict)  # config-group choices, e.g. {"model": "rnn"}


@torch.no_grad()
def evaluate(model: SequenceModel, task: Task, batch: Batch) -> tuple[float, float]:
    """Mean loss and answer accuracy over a fixed batch, in chunks."""
    was_training = model.training
    model.eval()
    loss_sum, acc_sum, n = 0.0, 0.0, batch.inputs.shape[0]
    for i in range(0, n, EVAL_CHUNK):
        chunk = Batch(batch.inputs[i:i + EVAL_CHUNK], batch.targets[i:i + EVAL_CHUNK])
        out = model(chunk.inputs)  # (b, T, O)
        b = chunk.inputs.shape[0]
        loss_sum += float(task.loss(out, chunk)) * b
        acc_sum += task.accuracy(out, chunk) * b
    model.train(was_training)
    return loss_sum / n, acc_sum / n


def train(cfg: DictConfig, info: RunInfo) -> dict:
    """Train, evaluate and record one run; returns its summary dict."""
    validate(cfg)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(cfg.flush_denormal)

    task = build_task(cfg)
    torch.manual_seed(cfg.seed)  # model initialization
    model = build_model(cfg, task).to(device)
    optimizer = build_optimizer(cfg, model)
    params = [p for p in model.parameters()]
    data_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    eval_batch = task.make_batch(cfg.eval_size, torch.Generator().manual_seed(cfg.eval_seed)).to(device)

    config = OmegaConf.to_container(cfg, resolve=True)
    config["choices"] = dict(info.choices)
    recorder = RunRecorder(info.run_dir, config)
    tracker = cfg.logger and _make_tracker(cfg, info, config, task)
    tracker = tracker or NullTracker()

    summary = {"status": "running", "task": task.name, "baseline": task.baseline, "lag": task.lag,
               "solved": False, "solved_step": None, "steps": cfg.steps, **{k: v for k, v in info.choices.items()}}
    exit_code = 1
    start = time.perf_counter()
    train_time = 0.0
    try:
        def do_eval(step: int, extra: dict) -> dict:
            loss, acc = evaluate(model, task, eval_batch)
            row = {"step": step, "eval/loss": loss, "eval/accuracy": acc,
                   "eval/loss_over_baseline": loss / task.baseline, **extra}
            recorder.metrics(row)
            tracker.log(row)
            if summary["solved_step"] is None and task.solved(loss, acc):
                summary.update(solved=True, solved_step=step)
            return row

        last = do_eval(0, {})
        window_loss = torch.zeros((), device=device)
        window_norm = torch.zeros((), device=device)
        window_n = 0
        last_norm = float("nan")
        bar = tqdm(range(1, cfg.steps + 1), disable=not cfg.progress, desc=info.name, dynamic_ncols=True)
        tick = time.perf_counter()
        for step in bar:
            batch = task.make_batch(cfg.batch_size, data_gen, device)
            outputs = model(batch.inputs)  # (B, T, O)
            loss = task.loss(outputs, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # Pre-clip global norm (clip_grad_norm_ returns it; inf max_norm = measure only).
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or math.inf)
            if cfg.get("grad_clip_value") is not None:  # after the norm above is measured (it is logged pre-clip)
                torch.nn.utils.clip_grad_value_(params, cfg.grad_clip_value)
            optimizer.step()

            window_loss += loss.detach()
            window_norm += norm
            window_n += 1
            if step % cfg.log_every == 0 or step == cfg.steps or step % cfg.eval_every == 0:
                train_time += time.perf_counter() - tick
                train_loss = float(window_loss) / window_n
                last_norm = float(window_norm) / window_n
                row = {"step": step, "train/loss": train_loss, "train/grad_norm": last_norm,
                       "train/steps_per_s": step / train_time}
                tracker.log(row)
                bar.set_postfix(loss=f"{train_loss:.4g}", refresh=False)
                window_loss.zero_(); window_norm.zero_(); window_n = 0
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    last = do_eval(step, {"train/loss": train_loss, "train/grad_norm": last_norm})
                tick = time.perf_counter()
        bar.close()
        summary.update(
            status="finished",
            final_loss=last["eval/loss"], final_accuracy=last["eval/accuracy"],
            loss_over_baseline=last["eval/loss_over_baseline"],
            final_solved=task.solved(last["eval/loss"], last["eval/accuracy"]),
            wall_time_s=time.perf_counter() - start,
            steps_per_s=cfg.steps / train_time if train_time > 0 else None,
            parameters=sum(p.numel() for p in params), device=str(device),
        )
        exit_code = 0
        return summary
    except BaseException as e:
        summary.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0],
                       wall_time_s=time.perf_counter() - start)
        raise
    finally:
        recorder.summary(summary)
        tracker.summary({k: v for k, v in summary.items() if v is not None})
        tracker.finish(exit_code=exit_code)


def _make_tracker(cfg: DictConfig, info: RunInfo, config: dict, task: Task):
    from hydra.utils import instantiate

    kwargs = {}
    if "group" in cfg.logger:
        kwargs["group"] = cfg.logger.group or info.group
    return instantiate(cfg.logger)(run_dir=info.run_dir, config=config, name=info.name,
                                   job_type=task.name, **kwargs)


def format_summary(s: dict) -> str:
    """The few lines printed at the end of a run."""
    if s.get("status") != "finished":
        return f"run {s.get('status')}: {s.get('error', '')}"
    solved = f"solved at step {s['solved_step']}" if s["solved"] else "not solved"
    return (f"{s['task']} {s.get('model', '')}: final eval loss {s['final_loss']:.4g} vs baseline "
            f"{s['baseline']:.4g} (ratio {s['loss_over_baseline']:.3g}), accuracy {s['final_accuracy']:.3f}; "
            f"{solved}; {s['steps']} steps in {s['wall_time_s']:.1f} s ({s['steps_per_s'] or 0:.1f} steps/s)")
