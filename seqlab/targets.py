"""Which callables a config may name: the lab's own, and nothing else.

Hydra's ``instantiate`` calls whatever a ``_target_`` names with the keys beside it as arguments.
A config read from disk (a checkpoint's stored config, a run directory's config.yaml) may come
from someone else: ``task._target_: builtins.open`` with ``mode: w`` empties a file, and
``torch.load`` / ``numpy.load`` with pickling allowed run code. So every ``_target_`` of such a
config, at any depth, must be one that the lab's own config tree (``conf/``: tasks, models,
optimizers, probes, loggers, flossing, launchers, callbacks, presets) names; anything else is
refused in one line before anything is built (``check_targets``). ``seqlab.config`` checks every
node it instantiates the same way, so no path reaches ``instantiate`` without it.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from .checks import ConfigError

TARGET_KEYS = ("_target_", "_partial_target_")


def _walk_yaml(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str):
                found.add(value)
            else:
                _walk_yaml(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk_yaml(value, found)


@lru_cache(maxsize=None)
def lab_targets() -> frozenset[str]:
    """Every ``_target_`` named anywhere under conf/ (read with ``yaml.safe_load``)."""
    import yaml

    from ._paths import CONF_DIR

    found: set[str] = set()
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        try:
            _walk_yaml(yaml.safe_load(path.read_text()), found)
        except (OSError, yaml.YAMLError):  # the lab's own tree: a broken file fails where it is composed
            continue
    return frozenset(found)


def foreign_targets(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every ``_target_`` in ``tree`` (dicts, lists, DictConfigs) that is not
    the lab's own; a target that is not a string counts as foreign."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(tree, (DictConfig, ListConfig)):
        tree = OmegaConf.to_container(tree, resolve=False)
    out: list[tuple[str, Any]] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key in TARGET_KEYS:
                if not (isinstance(value, str) and value in lab_targets()):
                    out.append((path, value))
            elif isinstance(value, (dict, list, DictConfig, ListConfig)):
                out.extend(foreign_targets(value, path))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out.extend(foreign_targets(value, f"{prefix}[{i}]"))
    return out


def check_targets(tree: Any, prefix: str = "", where: str | None = None,
                  error: type[ConfigError] = ConfigError) -> None:
    """Raise ``error`` (one line) when ``tree`` (the node at ``prefix``) names a callable that is not one
    of the lab's own. ``where`` says what the config came from (``checkpoint='ckpt.pt': its stored
    config``), so the user knows what to distrust."""
    bad = foreign_targets(tree, prefix)
    if bad:
        path, value = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        head = f"{where}: {path}" if where else path
        raise error(f"{head}={str(value)[:120]!r}{more}: not one of seqlab's own classes (those conf/ names); "
                    f"refused before anything was built, nothing in it was run")
