"""Typed schema of the top-level knobs, validation, and building the run's parts.

Only the entry point and the training loop see the Hydra config; this module
turns it into plain objects (task, model, optimizer factory) and rejects bad
values before any work starts, each with a one-line ``ConfigError``.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .checkpoint import CHECKPOINT_NAME
from .checks import ConfigError, check, check_choice, check_int, check_positive, is_int, is_number
from .models import SequenceModel
from .tasks import Task


@dataclass
class RunSchema:
    """Types and ranges of the top-level knobs (comments in conf/config.yaml)."""

    seq_len: int = 200          # >= 2
    seed: int = 0               # >= 0
    steps: int = 10000          # >= 0
    batch_size: int = 64        # >= 1
    grad_clip: float | None = None  # > 0 or null
    grad_clip_value: float | None = None  # > 0 or null
    eval_every: int = 250       # >= 1
    eval_size: int = 1000       # >= 1
    eval_seed: int = 1234       # >= 0
    log_every: int = 50         # >= 1
    device: str = "auto"        # auto | cpu | cuda | cuda:N
    threads: int | None = None  # >= 1 or null
    progress: bool = True
    flush_denormal: bool = True
    on_nonfinite: str = "stop"  # stop | skip
    checkpoint_every: int = 1000  # >= 1
    resume: str | None = None   # a run directory with a checkpoint


_MINIMA = {"seq_len": 2, "seed": 0, "steps": 0, "batch_size": 1, "eval_every": 1,
           "eval_size": 1, "eval_seed": 0, "log_every": 1, "threads": 1, "checkpoint_every": 1}
NONFINITE_POLICIES = ("stop", "skip")


def validate_top_level(cfg: DictConfig) -> None:
    """Check every ``RunSchema`` field of ``cfg`` for type and range."""
    for f in dataclasses.fields(RunSchema):
        value = cfg.get(f.name, f.default)
        if f.name in _MINIMA:
            if value is None and "None" in str(f.type):
                continue
            check_int(f.name, value, _MINIMA[f.name])
    for key in ("grad_clip", "grad_clip_value"):
        if cfg.get(key) is not None:
            check_positive(key, cfg[key])
    for key in ("progress", "flush_denormal"):
        check(isinstance(cfg.get(key, True), bool), key, cfg.get(key), "must be true or false")
    resolve_device(cfg.get("device", "auto"))
    check_choice("on_nonfinite", cfg.get("on_nonfinite", "stop"), NONFINITE_POLICIES)
    resume = cfg.get("resume")
    if resume is not None:
        check(isinstance(resume, str) and (Path(resume) / CHECKPOINT_NAME).is_file(), "resume", resume,
              f"must be a run directory that holds a {CHECKPOINT_NAME}")


def resolve_device(name: Any) -> torch.device:
    """``auto`` -> cuda when present, else cpu; anything else must name a usable device."""
    allowed = "must be auto, cpu, cuda or cuda:N"
    check(isinstance(name, str), "device", name, allowed)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={name!r}: {allowed}") from None
    check(device.type in ("cpu", "cuda"), "device", name, allowed)
    if device.type == "cuda":
        check(torch.cuda.is_available(), "device", name, "CUDA is not available on this machine (use auto or cpu)")
        check(device.index is None or device.index < torch.cuda.device_count(), "device", name,
              f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _instantiate(node: DictConfig, key: str, **kwargs):
    """Hydra instantiate, with our own one-line errors passed through unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
        if isinstance(cause, TypeError) and bad:
            raise ConfigError(f"{key}.{bad[1]}: not an option of {node._target_}") from None
        raise


def build_task(cfg: DictConfig) -> Task:
    return _instantiate(cfg.task, "task")


def build_model(cfg: DictConfig, task: Task) -> SequenceModel:
    return _instantiate(cfg.model, "model")(input_size=task.input_size, output_size=task.output_size)


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Optimizer over ``model``'s parameters; lr > 0 and other numeric ranges checked first."""
    check_positive("optim.lr", cfg.optim.get("lr"))
    for key in ("weight_decay", "momentum"):
        if key in cfg.optim:
            value = cfg.optim[key]
            check(is_number(value) and value >= 0, f"optim.{key}", value, "must be a number >= 0")
    if "momentum" in cfg.optim:
        check(cfg.optim.momentum < 1, "optim.momentum", cfg.optim.momentum, "must be in [0, 1)")
    optimizer = _instantiate(cfg.optim, "optim")(model.parameters())
    if hasattr(model, "project_"):  # hard constraints (IndRNN's |u| bound) are re-imposed after every update
        optimizer.register_step_post_hook(lambda *_: model.project_())
    return optimizer


def build_probe(cfg: DictConfig):
    """The probe's settings (``seqlab.probe.ProbeSettings``), or None for ``probe=none``."""
    node = cfg.get("probe")
    return _instantiate(node, "probe") if node and "_target_" in node else None


def setup(cfg: DictConfig) -> tuple[torch.device, Task, SequenceModel]:
    """What every entry does first: validate, set the process knobs (threads, denormals), build the
    task, and build the model from ``cfg.seed`` on its device."""
    validate(cfg)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(cfg.flush_denormal)
    task = build_task(cfg)
    torch.manual_seed(cfg.seed)  # model initialization
    return device, task, build_model(cfg, task).to(device)


def validate(cfg: DictConfig) -> None:
    """Everything that can be checked before a run starts (builds the parts, cheaply)."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # a broken interpolation
        raise ConfigError(f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    validate_top_level(cfg)
    task = build_task(cfg)
    model = build_model(cfg, task)
    build_optimizer(cfg, model)
    probe = build_probe(cfg)
    need = getattr(model, "min_batch_size", 1)  # batch norm needs >= 2 examples in train mode
    for key, size in (("batch_size", cfg.batch_size), ("probe.batch_size", probe and probe.batch_size)):
        check(not size or size >= need, key, size, f"must be >= {need}: this model uses batch statistics")


__all__ = ["ConfigError", "RunSchema", "build_model", "build_optimizer", "build_probe", "build_task",
           "is_int", "resolve_device", "setup", "validate"]
