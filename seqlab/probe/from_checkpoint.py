"""The config a checkpoint was trained with, for ``python -m seqlab.probe checkpoint=PATH``.

A run's ``checkpoint.pt`` stores its resolved config (``"config"``, with the group ``"choices"``).
The probe takes task, model, seq_len and every other knob that shapes the model from there, so
``python -m seqlab.probe checkpoint=RUN/checkpoint.pt`` is enough. The command line may set only
what the probe itself uses (``PROBE_MAY_SET``); an override of anything else must agree with the
checkpoint, or the probe stops with one line naming both values. A bare ``{"model": state_dict}``
file has no config: then the command line describes the model, as for an untrained one.
"""
from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..checks import ConfigError
from ..targets import check_targets

# Top-level keys the command line sets for a probe of a checkpoint: the probe's own knobs, where
# results go, and how the process runs. Everything else is the checkpoint's.
PROBE_MAY_SET = ("probe", "logger", "threads", "device", "flush_denormal", "progress", "checkpoint", "hydra")
_MISSING = object()


def stored_config(path: str) -> dict | None:
    """The resolved config saved in a seqlab checkpoint, or None (a bare state_dict file, or unreadable:
    the model loader reports that). A config that names any callable outside the lab's own
    (``task._target_: builtins.open``) is refused with one line before anything is built."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - load_model_state gives the one-line error
        return None
    config = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(config, dict):
        return None
    check_targets({k: v for k, v in config.items() if k != "hydra"},
                  where=f"checkpoint={path!r}: its stored config")
    return config


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _override_key_value(override: str) -> tuple[str, str] | None:
    if "=" not in override or override.startswith("~"):
        return None
    key, value = override.split("=", 1)
    return key.lstrip("+"), value


def check_overrides(cfg: DictConfig, overrides: list[str], stored: dict, path: str) -> None:
    """Raise a one-line ConfigError for the first override that contradicts the checkpoint's config.

    ``cfg`` is the config composed from the command line (``overrides`` applied). A config-group
    override (``model=lstm``) is compared with the group the checkpoint was trained with; a knob
    (``seq_len=100``, ``model.hidden_size=64``) with its stored value.
    """
    composed = OmegaConf.to_container(cfg, resolve=True)
    choices = stored.get("choices") or {}
    allowed = ", ".join(k for k in PROBE_MAY_SET if k != "hydra")
    for override in overrides:
        kv = _override_key_value(override)
        if kv is None:
            if override.startswith("~") and override.lstrip("~").split(".")[0].split("=")[0] not in PROBE_MAY_SET:
                raise ConfigError(f"{override}: a checkpoint is probed with the config it was trained with; "
                                  f"only {allowed} may be changed")
            continue
        key, _ = kv
        top = key.split(".")[0].split("/")[0].split("@")[0]
        if top in PROBE_MAY_SET:
            continue
        if key in choices:  # a config group: task=, model=, optim=
            mine, theirs = kv[1].strip(), str(choices[key])
        elif isinstance(_get(composed, key), dict) and isinstance(_get(stored, key), dict):
            # a group whose option the run did not record: the same classes (its knobs are the checkpoint's)
            mine, theirs = _targets(_get(composed, key)), _targets(_get(stored, key))
            if mine != theirs:
                raise ConfigError(f"{key}={kv[1]}: the checkpoint {path} was trained with another {key} "
                                  f"({', '.join(theirs.values()) or 'unrecorded'}); a checkpoint is probed with its "
                                  f"own config (only {allowed} may be changed)")
            continue
        else:
            mine, theirs = _get(composed, key), _get(stored, key)
            if theirs is _MISSING and key.split(".")[0] not in stored:  # a group the run did not record
                theirs = "(not recorded)"
        if mine != theirs:
            shown = "(not set)" if theirs is _MISSING else theirs
            raise ConfigError(f"{key}={_show(mine)}: the checkpoint {path} was trained with {key}={_show(shown)}; "
                              f"a checkpoint is probed with its own config (only {allowed} may be changed)")


def _targets(node: dict, prefix: str = "") -> dict[str, str]:
    """Every ``_target_`` in a config subtree, by its path: which classes a group option builds."""
    out = {}
    for k, v in node.items():
        if k == "_target_":
            out[prefix or "."] = str(v)
        elif isinstance(v, dict):
            out.update(_targets(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return OmegaConf.to_yaml(OmegaConf.create(value)).strip().replace("\n", ", ")[:120]
    return str(value)


def with_stored_config(cfg: DictConfig, stored: dict) -> DictConfig:
    """``cfg`` with every key the checkpoint's config has, except PROBE_MAY_SET, taken from it."""
    merged = cfg.copy()
    with open_dict(merged):
        for key, value in stored.items():
            if key in PROBE_MAY_SET or key == "choices":
                continue
            if isinstance(cfg.get(key), DictConfig) != isinstance(value, dict):  # a damaged or foreign file
                raise ConfigError(f"checkpoint={cfg.get('checkpoint')!r}: its stored config is not a seqlab "
                                  f"config ({key} is a {type(value).__name__}); probe it with a run's checkpoint.pt")
            merged[key] = value
    return merged
