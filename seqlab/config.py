"""Typed schema of the top-level knobs, validation, and building the run's parts.

Only the entry point and the training loop see the Hydra config; this module
turns it into plain objects (task, model, optimizer factory) and rejects bad
values before any work starts, each with a one-line ``ConfigError``.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from . import memory
from . import _paths
from ._paths import CONF_DIR  # noqa: F401  (re-exported)
from .rundir import CHECKPOINT_NAME
from .checks import (FINITE, SEED_MAX, ConfigError, CountOrList, Flag, Int, ListOf, Num, OneOf, Real, Rule, Text, check, is_int,
                     is_number)
from .models import SequenceModel
from .targets import check_targets, lab_targets
from .tasks import Task


@dataclass
class RunSchema:
    """The top-level knobs and their types (each commented in conf/config.yaml; what each accepts: KNOBS)."""

    seq_len: int = 200
    seed: int = 0
    steps: int = 10000
    batch_size: int = 64
    grad_clip: float | None = None
    grad_clip_value: float | None = None
    eval_every: int = 250
    eval_size: int = 1000
    eval_seed: int = 1234
    log_every: int = 50
    device: str = "auto"
    threads: int | None = 1     # null: torch's default (one per core)
    progress: bool = True
    flush_denormal: bool = True
    on_nonfinite: str = "stop"
    skip_limit: float = 0.1
    checkpoint_every: int = 1000
    resume: str | None = None
    eval_lengths: list[int] = field(default_factory=list)  # other lengths to evaluate at (seqlab.lengths)


NONFINITE_POLICIES = ("stop", "skip")
MAX_LAYERS = 10_000     # stacked layers; the model is built layer by layer, and deeper is no longer a test of depth
MAX_THREADS = 1024      # torch segfaults creating ~10^5 OpenMP threads; no machine the lab meets has more cores
GAIN = Real(-100, 100, note="|gain|^t overflows float32 (10^38) within 20 steps beyond 100")
GATE_BIAS = Real(-100, 100, null=True, note="sigmoid is 0 or 1 in float32 beyond +-17 already")

# The one table of what every knob accepts, by its dotted path in the composed config.
# Every numeric knob of every option of every config group must be declared here: a new knob
# gets its check by adding its line (tests/test_bad_input.py walks every option and names any knob
# that is missing). Cross-knob rules (r_min < r_max, chrono needs forget_bias null) stay with
# the code that owns them; sizes are also bounded together by seqlab.memory (what fits here).
KNOBS: dict[str, Rule] = {
    # top level (RunSchema; comments in conf/config.yaml)
    "seq_len": Int(2), "seed": Int(0, SEED_MAX), "steps": Int(0, 10**12), "batch_size": Int(1),
    "grad_clip": Real(0, open="lo", null=True), "grad_clip_value": Real(0, open="lo", null=True),
    "eval_every": Int(1), "eval_size": Int(1), "eval_seed": Int(0, SEED_MAX), "log_every": Int(1),
    "device": Text(), "threads": Int(1, MAX_THREADS, null=True), "progress": Flag(), "flush_denormal": Flag(),
    "on_nonfinite": OneOf(*NONFINITE_POLICIES), "skip_limit": Real(0, 1), "checkpoint_every": Int(1), "resume": Text(null=True),
    "eval_lengths": ListOf(Int(2)),
    "checkpoint": Text(null=True),  # python -m seqlab.probe (conf/probe_only.yaml)
    # task (conf/task/)
    # (every task that reads seq_len needs >= 2; a task's own stricter bound, e.g. even, is checked by the task)
    "task.seq_len": Int(2), "task.n_symbols": Int(2), "task.distractors": Text(), "task.delay": Int(1, null=True),
    "task.p_ignore": Real(0, 1, open="hi"), "task.n_pairs": Int(1), "task.vocab_size": Int(4),
    "task.power_a": Real(0, 1, open="lo"), "task.random_non_queries": Flag(), "task.every_step": Flag(),
    "task.n_memorize": Int(1), "task.n_tokens": Int(4), "task.variant": Text(), "task.variable_length": Flag(),
    "task.train_min_len": Int(2, null=True),  # <= seq_len and every_step false: parity checks
    "task.layout": Text(), "task.permute": Flag(), "task.permute_seed": Int(0, SEED_MAX),
    "task.split_seed": Int(0, SEED_MAX), "task.eval_fraction": Real(0, 1, open="both"), "task.n_examples": Int(1),
    "task.input_dim": Int(1), "task.n_classes": Int(2), "task.data_seed": Int(0, SEED_MAX),
    # model (conf/model/): the sequence model, then each cell's own knobs
    "model.hidden_size": Int(1), "model.num_layers": Int(1, MAX_LAYERS), "model.residual": Flag(),
    "model.between": Text(), "model.readout_init": Text(), "model.layer.norm": Text(), "model.layer.gain": GAIN,
    "model.layer.activation": Text(), "model.layer.init": Text(), "model.layer.layer_norm": Flag(),
    "model.layer.recurrent_gain": GAIN, "model.layer.forget_bias": GATE_BIAS, "model.layer.update_bias": GATE_BIAS,
    "model.layer.chrono": Flag(),
    "model.layer.chrono_tmax": Real(0, 10**12, open="lo", null=True),  # > 2 once chrono is on: the cell checks
    "model.layer.max_gain": Real(0, 10**6, open="lo"), "model.layer.tmax": Real(1, 10**12, null=True),
    "model.layer.constrain": Flag(), "model.layer.u_min": Real(-10**6, 10**6),
    "model.layer.r_min": Real(0, 1, open="hi"), "model.layer.r_max": Real(0, 1, open="both"),
    "model.layer.max_phase": Real(0, 2 * math.pi, open="lo", note="phases wrap at 2 pi"),
    "model.layer.scan": Text(), "model.layer.chunk": Int(1, null=True), "model.layer.candidate": Text(),
    "model.layer.dt": Real(0, open="lo"), "model.layer.gamma": Real(0, open="lo"),
    "model.layer.epsilon": Real(0, open="lo"),
    "model.layer.state_size": Int(1), "model.layer.dt_rank": Int(1, null=True),
    "model.layer.dt_min": Real(0, open="lo"), "model.layer.dt_max": Real(0, open="lo"),
    "model.layer.eigenvalues": Text(),
    # optim (conf/optim/; torch.optim's own options may be added with +optim.KEY=...)
    "optim.lr": Real(0, open="lo"), "optim.weight_decay": Real(0), "optim.momentum": Real(0, 1, open="hi"),
    "optim.alpha": Real(0, 1, open="hi"), "optim.eps": Real(0, 1, open="lo"), "optim.dampening": Real(0, 1),
    "optim.betas": ListOf(Real(0, 1, open="hi"), length=2), "optim.nesterov": Flag(), "optim.centered": Flag(),
    "optim.amsgrad": Flag(), "optim.maximize": Flag(),
    # probe (conf/probe/)
    "probe.every": Int(1), "probe.batch_size": Int(1), "probe.seed": Int(0, SEED_MAX),
    "probe.max_loss_steps": Int(1), "probe.horizon_floor": Real(0, 1, open="both"),
    "probe.lags": ListOf(Int(0)), "probe.lyapunov_k": Int(0, 10**6), "probe.lyapunov_warmup": Int(0),
    "probe.lyapunov_sequences": Int(1), "probe.plots": Flag(),
    "probe.lyapunov_steps": Int(0, 10**9), "probe.lyapunov_every": Int(0),
    # gradient flossing (conf/floss/; the cross-knob rule "flosses nothing" is FlossSettings')
    "floss.k": Int(1, 10**6), "floss.target": Real(-100, 100), "floss.steps": Int(1, 10**9), "floss.warmup": Int(0),
    "floss.sequences": Int(1), "floss.lr": Real(0, open="lo", null=True), "floss.before": Int(0),
    "floss.every": Int(0), "floss.during": Int(0), "floss.episodes": Int(0), "floss.seed": Int(0, SEED_MAX),
    # the lr x seed protocol and early stopping (conf/protocol/, conf/early_stop/; seqlab.protocol)
    "protocol.lr_center": Real(0, open="lo", null=True), "protocol.n_lr": Int(1, 1000),
    "protocol.decades": Real(0, 100), "protocol.seeds": CountOrList(SEED_MAX),
    "early_stop.rungs": ListOf(Real(0, 1, open="both")), "early_stop.margin": Real(0, 1, open="hi"),
    # logger (conf/logger/)
    "logger.project": Text(max_len=128, forbid="/\\#?%:"),  # W&B's own limits on a project name
    "logger.entity": Text(null=True), "logger.group": Text(null=True),
    "logger.mode": OneOf("offline", "online", "disabled", null=True), "logger.tags": ListOf(Text()),
    "logger.init_timeout": Real(0, 3600, open="lo"), "logger.quiet": Flag(),
    # hydra's launchers and sweepers (conf/hydra/launcher/, conf/hparams_search/): checked for a multirun
    "hydra.launcher.n_jobs": Int(1, MAX_THREADS, also=(-1,), note="-1 = one per CPU core"),
    "hydra.launcher.verbose": Int(0), "hydra.launcher.max_members": Int(1),  # max_members: hydra/launcher=batched
    "hydra.launcher.backend": OneOf("loky", "multiprocessing", "threading", "sequential", null=True),  # joblib's
    "hydra.launcher.prefer": OneOf("processes", "threads", null=True), "hydra.launcher.require": OneOf("sharedmem", null=True), "hydra.launcher.timeout_min": Int(1),
    "hydra.launcher.cpus_per_task": Int(1, MAX_THREADS, null=True), "hydra.launcher.gpus_per_node": Int(0, null=True),
    "hydra.launcher.tasks_per_node": Int(1), "hydra.launcher.nodes": Int(1), "hydra.launcher.mem_gb": Int(1, null=True),
    "hydra.launcher.array_parallelism": Int(1), "hydra.launcher.signal_delay_s": Int(0),
    "hydra.launcher.max_num_timeout": Int(0), "hydra.launcher.partition": Text(null=True),
    "hydra.launcher.account": Text(null=True), "hydra.launcher.qos": Text(null=True),
    "hydra.sweeper.n_trials": Int(1), "hydra.sweeper.n_jobs": Int(1, MAX_THREADS),
    "hydra.sweeper.max_failure_rate": Real(0, 1), "hydra.sweeper.direction": OneOf("minimize", "maximize"),
    "hydra.sweeper.storage": Text(null=True), "hydra.sweeper.study_name": Text(null=True),
    "hydra.sweeper.sampler.seed": Int(0, SEED_MAX, null=True), "hydra.sweeper.sampler.n_startup_trials": Int(0),
}
# Where the table applies inside hydra's own config (the rest of it is Hydra's business).
HYDRA_NODES = ("hydra.launcher", "hydra.sweeper")


def validate_top_level(cfg: DictConfig) -> None:
    """The rules a table cannot state: the device exists, a resumed directory has a checkpoint."""
    resolve_device(cfg.get("device", "auto"))
    resume = cfg.get("resume")
    if resume is not None:
        check(isinstance(resume, str) and (Path(resume) / CHECKPOINT_NAME).is_file(), "resume", resume,
              f"must be a run directory that holds a {CHECKPOINT_NAME}, or last")


def _target_params(target: str, where: str) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters ``target`` takes (None: it takes any, **kwargs). Only the lab's own
    targets are imported at all (importing a module can run code); Hydra's own nodes name its plugins."""
    if not where.startswith("hydra") and target not in lab_targets():
        check_targets({"_target_": target}, where)
    try:
        module, _, name = target.rpartition(".")
        obj = getattr(importlib.import_module(module), name)
        params = inspect.signature(obj).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        raise ConfigError(f"{where}._target_={target!r}: cannot be imported") from None
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return {k: p for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and k != "self"}


def _annotation_rule(param: inspect.Parameter | None) -> Rule | None:
    """A rule read off a type hint, for knobs the table does not name: bool -> true/false, numbers -> finite."""
    if param is None or param.annotation is inspect.Parameter.empty:
        return None
    ann = param.annotation if isinstance(param.annotation, str) else str(param.annotation)
    ann = ann.replace("typing.", "").replace("<class '", "").replace("'>", "")
    null = "None" in ann or "Optional" in ann
    kinds = set(re.findall(r"\w+", ann)) - {"None", "Optional", "Union"}
    if kinds == {"bool"}:
        return Flag(null=null)
    if kinds and kinds <= {"int", "float", "Tensor"}:
        return Num(null=null)
    return None


def knob_leaves(tree: dict, prefix: str = ""):
    """Every knob of a plain config tree: (dotted path, value, its parameter in the target that takes it
    or None, that target's parameters or None). Raises ConfigError for an option its target does not take."""
    target = tree.get("_target_")
    params = _target_params(target, prefix.rstrip(".")) if isinstance(target, str) else None
    for key, value in tree.items():
        if str(key).startswith("_"):
            continue
        path = f"{prefix}{key}"
        if target is not None and params is not None and key not in params:
            given = ("input_size", "output_size") + (("hidden_size",) if prefix.endswith("layer.") else ())
            options = ", ".join(k for k in params if k not in given)
            raise ConfigError(f"{path}={value!r}: not an option of {target}; its options are: {options}")
        if isinstance(value, dict) and path not in KNOBS:
            yield from knob_leaves(value, path + ".")
        else:
            yield path, value, (params or {}).get(key)


def rule_for(path: str, value, param: inspect.Parameter | None = None) -> Rule | None:
    """The table's rule; else one read off the parameter's type hint; else finite if the value is a number."""
    rule = KNOBS.get(path) or _annotation_rule(param)
    if rule is None and (is_number(value) or (isinstance(value, list) and value and all(map(is_number, value)))):
        rule = FINITE if is_number(value) else ListOf(FINITE)
    return rule


def check_knobs(tree: dict, prefix: str = "", declared_only: bool = False) -> None:
    """Check every knob of a plain (resolved) config tree against its rule (``declared_only``: the
    table's rules only, for Hydra's own nodes, whose other knobs are the plugins' business)."""
    leaves = sorted(knob_leaves(tree, prefix), key=lambda leaf: leaf[0].count("."))  # seq_len before task.seq_len
    for path, value, param in leaves:
        rule = KNOBS.get(path) if declared_only else rule_for(path, value, param)
        if rule is not None:
            rule.check(path, value)


def config_groups() -> list[str]:
    """The config groups under conf/ that hold a node of the run's config (not hydra's, not presets)."""
    return sorted(p.name for p in _paths.CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", "hydra")))


# Groups a run cannot do without (each an entry of config.yaml's defaults list with a default).
REQUIRED_GROUPS = ("task", "model", "optim", "probe", "logger")


def check_structure(cfg: DictConfig) -> None:
    """No top-level knob missing (``~seq_len``, ``~task``) and none that seqlab does not know (``+stpes=100``)."""
    import difflib

    known = {f.name for f in dataclasses.fields(RunSchema)} | {"checkpoint", "hydra"} | set(config_groups())
    for key in cfg.keys():
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known - {"hydra"}), n=1)
            hint = f"did you mean {close[0]}?" if close else "see python -m seqlab --help"
            value = OmegaConf.to_container(cfg, resolve=False)[key]
            raise ConfigError(f"{key}={value!r}: not a seqlab setting ({hint})")
    for f in dataclasses.fields(RunSchema):
        if f.name not in cfg:
            default = f.default
            if default is None or isinstance(default, bool):
                default = str(default).lower().replace("none", "null")
            raise ConfigError(f"~{f.name}: {f.name} cannot be removed (set it instead; its default is {default})")
    optim = cfg.get("optim")
    if isinstance(optim, DictConfig) and "lr" not in optim:  # torch's default would train, and no lr be recorded
        raise ConfigError("~optim.lr: the learning rate cannot be removed (set it instead, e.g. optim.lr=0.001)")
    for group in REQUIRED_GROUPS:
        if group not in cfg:
            options = sorted(p.stem for p in (_paths.CONF_DIR / group).glob("*.yaml"))
            alt = f"use {group}=none" if "none" in options else f"choose one of {', '.join(options)}"
            raise ConfigError(f"~{group}: {group} cannot be removed ({alt})")


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
    """Hydra instantiate of the lab's own targets only (seqlab.targets); whatever the target rejects
    becomes one line naming the group (never a traceback)."""
    check_targets(node, key)
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
        if isinstance(cause, TypeError) and bad:
            raise ConfigError(f"{key}.{bad[1]}: not an option of {node._target_}") from None
        why = str(cause or e).strip().splitlines()[0] if str(cause or e).strip() else type(cause or e).__name__
        raise ConfigError(f"{key}={node.get('_target_')}: rejected these settings: {why}") from None


def build_task(cfg: DictConfig) -> Task:
    return _instantiate(cfg.task, "task")


def build_model(cfg: DictConfig, task: Task) -> SequenceModel:
    return _instantiate(cfg.model, "model")(input_size=task.input_size, output_size=task.output_size)


def build_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Optimizer over ``model``'s parameters (its knobs' ranges are checked by ``validate``, from KNOBS)."""
    optimizer = _instantiate(cfg.optim, "optim")(model.parameters())
    if hasattr(model, "project_"):  # hard constraints (IndRNN's |u| bound) are re-imposed after every update
        optimizer.register_step_post_hook(lambda *_: model.project_())
    return optimizer


def first_step(cfg: DictConfig, device: torch.device) -> None:
    """One optimizer step on a one-number parameter on the run's device: options torch accepts when the
    optimizer is built but rejects at its first step (``+optim.capturable=true`` on CPU,
    ``+optim.differentiable=true``) end here in one line, before a run directory exists."""
    param = torch.nn.Parameter(torch.zeros(1, device=device))
    optimizer = _instantiate(cfg.optim, "optim")([param])
    param.grad = torch.zeros_like(param)
    try:
        optimizer.step()
    except Exception as e:  # noqa: BLE001 - whatever torch raises: AssertionError, RuntimeError, ...
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        extra = ", ".join(f"{k}={v}" for k, v in cfg.optim.items() if k != "_target_" and k != "_partial_")
        raise ConfigError(f"optim={cfg.optim._target_} ({extra}): fails at its first step: {why}") from None


def build_probe(cfg: DictConfig):
    """The probe's settings (``seqlab.probe.ProbeSettings``), or None for ``probe=none``."""
    node = cfg.get("probe")
    return _instantiate(node, "probe") if node and "_target_" in node else None


def build_floss(cfg: DictConfig):
    """Gradient flossing's settings (``seqlab.flossing.FlossSettings``), or None for ``floss=none``."""
    node = cfg.get("floss")
    return _instantiate(node, "floss") if node and "_target_" in node else None


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


def _model_sizes(cfg: DictConfig, task: Task) -> tuple[torch.nn.Module, int, int, int]:
    """The model built on the meta device (no memory, any size) with at most two layers, and the
    full model's parameter count, state units and layer-output units per step (layers >= 2 repeat)."""
    layers = cfg.model.get("num_layers")

    def build(n: int | None):
        kw = {} if n is None else {"num_layers": n}
        model = _instantiate(cfg.model, "model", **kw)(input_size=task.input_size, output_size=task.output_size)
        params = sum(p.numel() for p in model.parameters())
        try:
            taps = model.make_taps(1, 1, device="meta")  # per layer {state name: (1, 1, H)}
            states = sum(t.numel() for layer in taps for t in layer.values())
            outputs = sum(next(iter(layer.values())).numel() for layer in taps)
        except (AttributeError, TypeError, NotImplementedError):
            states = outputs = cfg.model.get("hidden_size", 0) * (n or 1)
        return model, params, states, outputs

    with torch.device("meta"):
        if not (is_int(layers) and layers > 2):
            return build(None)
        one, two = build(1), build(2)
    extra = layers - 1  # every layer after the first has the same size as the second
    return (two[0], *(a + extra * (b - a) for a, b in zip(one[1:], two[1:])))


def validate(cfg: DictConfig, memory_bytes: int | None = None, memory_where: str = "this machine") -> None:
    """Everything that can be checked before a run starts, without allocating it: the structure, every
    knob against KNOBS, the parts built on the meta device, and the memory the run needs against
    ``memory_bytes`` (default: this machine's, or the GPU's)."""
    check_structure(cfg)
    check_targets({k: v for k, v in cfg.items() if k != "hydra"})
    try:
        tree = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # a broken interpolation
        raise ConfigError(f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
    tree.pop("hydra", None)
    check_knobs(tree)
    validate_top_level(cfg)
    task = build_task(cfg)
    model, n_params, states, outputs = _model_sizes(cfg, task)
    with torch.device("meta"):
        build_optimizer(cfg, model)
    first_step(cfg, resolve_device(cfg.device))
    settings = build_probe(cfg)
    need = getattr(model, "min_batch_size", 1)  # batch norm needs >= 2 examples in train mode
    for key, size in (("batch_size", cfg.batch_size), ("probe.batch_size", settings and settings.batch_size)):
        check(not size or size >= need, key, size, f"must be >= {need}: this model uses batch statistics")
    device = resolve_device(cfg.device)
    terms = memory.estimate(cfg, task, n_params, states, outputs, probe=settings is not None)
    if memory_bytes is None:
        memory_bytes = memory.machine_memory(device)
        memory_where = f"this machine's {device.type.upper() if device.type == 'cuda' else 'RAM'}"
    memory.check_fits(terms, memory_bytes, memory_where)
    build_floss(cfg)


__all__ = ["CONF_DIR", "KNOBS", "ConfigError", "RunSchema", "build_floss", "build_model", "build_optimizer", "build_probe",
           "build_task", "check_knobs", "is_int", "knob_leaves", "resolve_device", "rule_for", "setup", "validate"]
