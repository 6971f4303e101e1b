"""Checkpoints: everything needed to continue a run bit-for-bit on the same device.

A checkpoint is one ``torch.save`` dict written atomically (a uniquely named
temporary file, then ``os.replace``) as ``checkpoint.pt`` in the run directory,
so a kill at any moment leaves either the previous checkpoint or the new one,
never half of one, and two writers never share a temporary file.

It holds only tensors and plain containers of str/int/float/bool/None (the
config and the loop state are plain dicts), so it is read back with
``torch.load(weights_only=True)``: a shared run directory whose checkpoint
carries a pickled callable is refused with one line, and nothing in it runs.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .checks import ConfigError
from .targets import check_targets
from .rundir import CHECKPOINT_NAME, MAY_CHANGE_ON_RESUME, RunDirError, replace_atomic  # noqa: F401

FORMAT_VERSION = 1

# What each top-level entry must be (a file of another structure is refused before any of it is used).
_STRUCTURE = {"config": dict, "model": dict, "optimizer": dict, "data_rng": torch.Tensor, "rng": dict,
              "loop": dict}


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    replace_atomic(Path(path), lambda tmp: torch.save({"format_version": FORMAT_VERSION, **state}, tmp))


def _why(err: BaseException) -> str:
    text = " ".join(ln.strip() for ln in str(err).splitlines() if ln.strip())
    if "Unsupported global" in text or "unsupported GLOBAL" in text:
        glob = text.split("GLOBAL", 1)[-1].split("whose")[0].strip() if "GLOBAL" in text else "a global"
        return f"it carries a pickled object ({glob}), which a seqlab checkpoint never has"
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__


def read(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)``; any failure is one line (never code execution)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, OSError, RuntimeError, ValueError, KeyError, TypeError,
            AttributeError, IndexError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: not a usable checkpoint ({_why(e)}); refused, nothing in it was run. "
                          f"Delete it to start this run afresh, or resume from a copy you trust") from None


def load(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, checked for structure, or None if there is none."""
    path = Path(path)
    if not path.exists():
        return None
    state = read(path)
    problem = None
    if not isinstance(state, dict):
        problem = f"holds a {type(state).__name__}, not a dict"
    elif state.get("format_version") != FORMAT_VERSION:
        problem = f"format {state.get('format_version')!r} is not {FORMAT_VERSION}"
    else:
        bad = [k for k, kind in _STRUCTURE.items() if not isinstance(state.get(k), kind)]
        if bad:
            problem = f"{', '.join(bad)} missing or of the wrong type"
    if problem is None:  # a stored config that names a callable outside the lab's own: refused
        check_targets(state["config"], where=f"{path}: its stored config", error=RunDirError)
    if problem:
        raise RunDirError(f"{path}: not a seqlab checkpoint ({problem}); delete it to start this run "
                          f"afresh, or resume from the directory it came from")
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
