"""Checkpoints: everything needed to continue a run bit-for-bit on the same device.

A checkpoint is one ``torch.save`` dict written atomically (temporary file, then
``os.replace``) as ``checkpoint.pt`` in the run directory, so a kill at any
moment leaves either the previous checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .checks import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1

# Keys a resumed run may change: how long to train, how to report, where to log.
MAY_CHANGE_ON_RESUME = ("steps", "progress", "logger", "threads", "resume", "checkpoint_every")


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"resume={str(path)!r}: checkpoint format {state.get('format_version')} "
                          f"is not {FORMAT_VERSION}")
    return state


def check_compatible(saved: dict, current: dict, where: str) -> None:
    """A resumed run must be the same experiment: only MAY_CHANGE_ON_RESUME keys may differ."""
    for key in sorted(set(saved) | set(current)):
        if key in MAY_CHANGE_ON_RESUME or key == "choices":
            continue
        if saved.get(key) != current.get(key):
            raise ConfigError(f"{key}={current.get(key)!r}: the checkpoint in {where} was made with "
                              f"{key}={saved.get(key)!r}; resume the same experiment (only "
                              f"{', '.join(MAY_CHANGE_ON_RESUME)} may change)")


def rng_state(device: torch.device) -> dict[str, Any]:
    """Global torch RNG states (CPU and, when used, CUDA)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
