"""Entry point: ``python -m seqlab [overrides]`` (Hydra; ``--help`` lists the groups).

Before Hydra creates any output directory, ``preflight`` composes the config for
every combination the command line asks for and validates it, so a bad value
ends in one line naming the key, the value and what is allowed, with exit code
2, and leaves nothing behind that looks like a run.
"""
from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .checks import ConfigError

# The wheel ships conf/ as seqlab/conf; a source checkout (editable install) has it
# beside the package.
_HERE = Path(__file__).resolve().parent
CONF_DIR = _HERE / "conf" if (_HERE / "conf" / "config.yaml").exists() else _HERE.parent / "conf"

MAX_PREFLIGHT_COMBINATIONS = 256


def fail(message: str) -> None:
    print(f"seqlab: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _overrides_from_argv(argv: list[str]) -> list[str] | None:
    """The override strings of a command line, or None when Hydra will not run a job."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.help or args.hydra_help or args.shell_completion or args.info or args.cfg:
        return None
    return list(args.overrides)


def _one_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("full_key", "object_type", "reference_type"))]
    return " ".join(lines)


def preflight(argv: list[str]) -> None:
    """Compose and validate every combination asked for; exit 2 with one line on the first error."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .config import validate

    overrides = _overrides_from_argv(argv)
    if overrides is None:
        return
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:  # a syntax error in an override
        fail(_one_line(e))
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith("_")}
    axes = []
    for o in parsed:
        key = o.get_key_element()
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        group = o.key_or_group.split("@")[0]
        if group in groups and not o.is_delete():
            allowed = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
            for v in values:
                if v not in allowed:
                    fail(f"{group}={v}: unknown {group}; allowed: {', '.join(allowed)}")
        axes.append([f"{key}={v}" for v in values] if not o.is_delete() else [o.input_line])
    combos = list(itertools.islice(itertools.product(*axes), MAX_PREFLIGHT_COMBINATIONS))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for combo in combos:
            try:
                cfg = compose(config_name="config", overrides=list(combo))
            except Exception as e:
                fail(_explain_missing_key(compose, combo, e) or _one_line(e))
            try:
                validate(cfg)
            except ConfigError as e:
                fail(str(e))


def _explain_missing_key(compose, combo, err: Exception) -> str | None:
    """'Could not override X' -> name X and list the options that do exist where it was looked for."""
    from omegaconf import DictConfig as _DictConfig, OmegaConf

    missing = re.match(r"Could not override '([^']+)'", str(err))
    if not missing:
        return None
    key = missing[1]
    parent = key.rpartition(".")[0]
    try:
        base = compose(config_name="config", overrides=[o for o in combo if o.split("=")[0] != key])
    except Exception:
        return None
    node = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, _DictConfig):
        return None
    options = ", ".join(k for k in node.keys() if not str(k).startswith("_") and k != "hydra")
    where = f" of {parent}" if parent else ""
    return f"{key}: no such option{where}; options are: {options}"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def run(cfg: DictConfig) -> float:
    """One Hydra job: train and return the final eval loss (for sweepers)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .train import RunInfo, format_summary, train

    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    info = RunInfo(run_dir=Path(hc.runtime.output_dir), name=_run_name(cfg, choices, hc.job.override_dirname),
                   group=_sweep_group(hc) if hc.mode == RunMode.MULTIRUN else None, choices=choices)
    try:
        summary = train(cfg, info)
    except ConfigError as e:
        fail(str(e))
    print(format_summary(summary))
    print(f"results: {info.run_dir}")
    return summary["final_loss"]


def _run_name(cfg: DictConfig, choices: dict, override_dirname: str) -> str:
    """Readable W&B name: task-model-T, then the other overrides."""
    base = f"{choices.get('task', 'task')}-{choices.get('model', 'model')}-T{cfg.seq_len}"
    extra = [o for o in override_dirname.split(",") if o and o.split("=")[0] not in ("task", "model", "seq_len")]
    return base + (" " + ",".join(extra) if extra else "")


def _sweep_group(hc) -> str:
    """The sweep's directory, e.g. 'multirun/2026-11-22/21-50-00' -> 'sweep-2026-11-22-21-50-00'."""
    parts = Path(hc.sweep.dir).parts[-2:]
    return "sweep-" + "-".join(parts)


def main() -> None:
    preflight(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
