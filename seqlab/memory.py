"""How much memory a run needs, from its sizes, before anything is allocated.

The preflight check refuses a run that cannot fit in this machine's memory (or the
GPU's, for ``device=cuda``) with the estimate in the message, instead of letting it
grow until the kernel kills it (``seq_len=100000000`` ate 8 GB before it was killed).

The estimate is a lower bound, float32 (4 bytes a number), so it never refuses a run
that would fit. Glossary: P parameters, B batch_size, E eval_size, Bp probe.batch_size,
T the task's input length, D its input size, O its output size, S the state units of
all layers at one step (sum of H over layers and state names: h, and c for an LSTM),
Y the output units of all layers (H per layer).

  kept for the whole run:
    parameters and their gradients       4 P (2 + optimizer slots: Adam 2, RMSprop 1, SGD 1 with momentum)
    the held-out set                     4 E T D    (made once, one-hot)
    the probe batch                      4 Bp T D
  at its largest moment, one of:
    a training step                      4 B T (D + Y + O)   (inputs, each layer's outputs for the backward,
                                                             the read-out (B, T, O))
    a probe                              4 Bp T (2 S + O)     (a zero tap per state and its gradient)

Each term is what the code provably holds at once (tests/test_bad_input.py checks the training
term against the bytes autograd really saves); the cells' own saved gates and the allocator's
slack come on top. P is counted on the ``meta`` device (no memory) from at most two layers and
extended to ``num_layers`` (every layer after the first is the same), so the check costs the
same for 2 layers and 10^4.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .tasks import Task

BYTES = 4  # float32
# The sizes a default run has: the knob named in a refusal is the one furthest above its own.
REFERENCE = {"seq_len": 200, "batch_size": 64, "eval_size": 1000, "probe.batch_size": 64,
             "model.hidden_size": 128, "model.num_layers": 1}
OPTIMIZER_SLOTS = {"Adam": 2, "AdamW": 2, "NAdam": 2, "RAdam": 2, "Adamax": 2, "RMSprop": 1, "Adagrad": 1}


@dataclass
class Term:
    name: str
    bytes: int
    formula: str
    knobs: dict[str, float]  # the size knobs that scale this term -> their values


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} EiB"


def machine_memory(device: torch.device) -> int:
    """Bytes this machine has for the run: the GPU's memory for CUDA, else RAM capped by the cgroup limit."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device.index or 0).total_memory
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value.isdigit():
            total = min(total, int(value))
    return total


def optimizer_slots(cfg) -> int:
    name = str(cfg.optim.get("_target_", "")).rpartition(".")[2]
    if name == "SGD":
        return int(bool(cfg.optim.get("momentum")))
    return OPTIMIZER_SLOTS.get(name, 0) + int(name == "RMSprop" and bool(cfg.optim.get("momentum")))


def estimate(cfg, task, n_params: int, state_units: int, output_units: int, probe: bool) -> list[Term]:
    """The lower-bound terms (see the module docstring); their sum is what ``check_fits`` compares."""
    T, D, O = task.total_len, task.input_size, task.output_size
    B, E = cfg.batch_size, cfg.eval_size
    if type(task).eval_batch is not Task.eval_batch:  # the task holds its own fixed held-out set
        E = getattr(task, "n_examples", 0)  # (random labels: all N examples; digits: a small fixed set, not counted)
    Bp = cfg.probe.batch_size if probe else 0
    slots = optimizer_slots(cfg)
    size_knobs = {k: cfg.model[k.split(".")[1]] for k in ("model.hidden_size", "model.num_layers")
                  if k.split(".")[1] in cfg.model}
    task_knob = _task_size_knob(cfg, D)
    kept = [
        Term("parameters", BYTES * n_params * (2 + slots), f"{n_params:.3g} parameters x {2 + slots} x 4 B",
             {**size_knobs, **task_knob}),
        Term("held-out set", BYTES * E * T * D, f"{E} sequences x T {T} x D {D} x 4 B",
             {"eval_size" if E == cfg.eval_size else "task.n_examples": E, "seq_len": cfg.seq_len, **task_knob}),
        Term("probe batch", BYTES * Bp * T * D, f"probe.batch_size {Bp} x T {T} x D {D} x 4 B",
             {"probe.batch_size": Bp, "seq_len": cfg.seq_len, **task_knob}),
    ]
    peak = [
        Term("training step", BYTES * B * T * (D + output_units + O),
             f"batch_size {B} x T {T} x ({D} inputs + {output_units} layer outputs + {O} outputs) x 4 B",
             {"batch_size": B, "seq_len": cfg.seq_len, **size_knobs, **task_knob}),
        Term("probe", BYTES * Bp * T * (2 * state_units + O),
             f"probe.batch_size {Bp} x T {T} x (2 x {state_units} states + {O} outputs) x 4 B",
             {"probe.batch_size": Bp, "seq_len": cfg.seq_len, **size_knobs}),
    ]
    return kept + [max(peak, key=lambda t: t.bytes)]


def _task_size_knob(cfg, input_size: int) -> dict[str, float]:
    """The task's own size knob (e.g. task.n_symbols) when its input is wider than a default task's."""
    knobs = {f"task.{k}": v for k, v in cfg.task.items()
             if k != "seq_len" and isinstance(v, int) and not isinstance(v, bool)}
    if not knobs or input_size <= 16:
        return {}
    key = max(knobs, key=knobs.get)
    return {key: knobs[key]}


def check_fits(terms: list[Term], available: int, where: str) -> None:
    """ConfigError naming the knob most above its default when the terms' sum exceeds ``available``."""
    from .checks import ConfigError

    need = sum(t.bytes for t in terms)
    if need <= available:
        return
    worst = max(terms, key=lambda t: t.bytes)
    key = max(worst.knobs, key=lambda k: worst.knobs[k] / REFERENCE.get(k, 10)) if worst.knobs else "seq_len"
    value = worst.knobs.get(key, "")
    raise ConfigError(f"{key}={value!r}: this run needs at least {human(need)} of memory ({worst.name}: "
                      f"{worst.formula} = {human(worst.bytes)}); {where} is {human(available)}: "
                      f"make {key} smaller")
