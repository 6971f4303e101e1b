"""Evaluation at lengths other than the training length (``eval_lengths``): length generalization.

    python -m seqlab task=parity model=lstm seq_len=40 eval_lengths=[40,128,256]

At every evaluation the loop also evaluates on a held-out set of each length L in
``eval_lengths``: the same task with ``seq_len=L`` (its other knobs unchanged), ``eval_size``
examples from ``eval_seed``. The rows of metrics.jsonl (and W&B) gain ``eval_len{L}/loss``,
``eval_len{L}/accuracy`` and ``eval_len{L}/loss_over_baseline`` (the baseline of the task at
that length); summary.json gains ``length_eval``: {L: {loss, accuracy, loss_over_baseline,
solved}} at the last evaluation, ``solved`` by the task's own bar. Only tasks whose config reads
``seq_len`` have a length to change; any other is refused with one line before the run.
"""
from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from .checks import ConfigError
from .tasks import Batch, Task


def length_tasks(cfg: DictConfig, task: Task, device) -> dict[int, tuple[Task, Batch]]:
    """{L: (the task at length L, its held-out batch)} for every L of ``cfg.eval_lengths``."""
    from .config import build_task

    lengths = list(cfg.get("eval_lengths") or [])
    if not lengths:
        return {}
    if "seq_len" not in cfg.task:
        raise ConfigError(f"eval_lengths={lengths}: task {task.name} has no seq_len to change")
    out = {}
    for length in dict.fromkeys(int(x) for x in lengths):
        other = OmegaConf.merge(cfg, {"seq_len": length})
        other.task.seq_len = length  # a task that sets its own seq_len (not ${seq_len}) follows too
        t = build_task(other)
        out[length] = (t, t.eval_batch(cfg.eval_size, torch.Generator().manual_seed(cfg.eval_seed)).to(device))
    return out


def length_row(model, tasks: dict[int, tuple[Task, Batch]], evaluate) -> dict[str, float]:
    """The metrics row's extra keys: eval_len{L}/loss, /accuracy, /loss_over_baseline."""
    row = {}
    for length, (t, batch) in tasks.items():
        loss, acc = evaluate(model, t, batch)
        row.update({f"eval_len{length}/loss": loss, f"eval_len{length}/accuracy": acc,
                    f"eval_len{length}/loss_over_baseline": loss / t.baseline})
    return row


def length_summary(last_eval: dict, tasks: dict[int, tuple[Task, Batch]]) -> dict[str, dict]:
    """summary.json's ``length_eval`` from the last evaluation row."""
    out = {}
    for length, (t, _) in tasks.items():
        loss, acc = last_eval.get(f"eval_len{length}/loss"), last_eval.get(f"eval_len{length}/accuracy")
        if loss is None:
            continue
        out[str(length)] = {"loss": loss, "accuracy": acc, "loss_over_baseline": loss / t.baseline,
                            "solved": bool(t.solved(loss, acc))}
    return out
