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
from typing import Callable

import hydra
from omegaconf import DictConfig, OmegaConf

from .checks import ConfigError

# The wheel ships conf/ as seqlab/conf; a source checkout (editable install) has it
# beside the package.
_HERE = Path(__file__).resolve().parent
CONF_DIR = _HERE / "conf" if (_HERE / "conf" / "config.yaml").exists() else _HERE.parent / "conf"

# `${seqlab.or:a,b}`: a unless it is null (e.g. hydra.run.dir = the `resume` directory, else a new one).
OmegaConf.register_new_resolver("seqlab.or", lambda a, b: b if a is None else a, replace=True)

MAX_PREFLIGHT_COMBINATIONS = 256
EXIT_DIVERGED = 3


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


def preflight(argv: list[str], config_name: str = "config", check: Callable[[DictConfig], None] | None = None) -> None:
    """Compose and validate every combination asked for; exit 2 with one line on the first error.

    Another entry point (``python -m seqlab.probe``) passes its primary config and its own ``check``.
    """
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
    axes = _axes(parsed)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        if _is_multirun(argv):  # a sweep the config itself declares (experiment presets, hparams_search)
            axes = _with_sweeper_params(compose, config_name, axes)
        combos = list(itertools.islice(itertools.product(*axes.values()), MAX_PREFLIGHT_COMBINATIONS))
        for combo in combos:
            try:
                cfg = compose(config_name=config_name, overrides=list(combo))
            except Exception as e:
                fail(_sweeper_hint(_explain_missing_key(compose, combo, e) or _one_line(e)))
            try:
                validate(cfg)
                if check is not None:
                    check(cfg)
            except ConfigError as e:
                fail(str(e))


def _is_multirun(argv: list[str]) -> bool:
    from hydra._internal.utils import get_args_parser

    return bool(get_args_parser().parse_known_args(argv)[0].multirun)


def _override_values(o) -> list[str]:
    """The values one parsed override stands for: each of a choice/range/glob sweep; both ends
    of an interval (Optuna's search space: checking its ends checks the range)."""
    from hydra.core.override_parser.types import ValueType

    group = CONF_DIR / o.key_or_group.split("@")[0]
    if o.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return o.value().filter(sorted(p.stem for p in group.glob("*.yaml")))
    if o.value_type == ValueType.INTERVAL_SWEEP:
        return [str(o.value().start), str(o.value().end)]
    if o.is_sweep_override():
        return list(o.sweep_string_iterator())
    return [o.get_value_element_as_str()]


def _axes(parsed) -> dict[str, list[str]]:
    """key -> the 'key=value' strings to try; config-group values are checked against conf/GROUP/.

    Hydra's own groups (hydra/launcher=..., hydra/sweeper=...) are left to compose, which
    knows the plugins' options.
    """
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith(("_", "hydra"))}
    axes: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        if o.is_delete():
            axes[key] = [o.input_line]
            continue
        values = _override_values(o)
        group = o.key_or_group.split("@")[0]
        if group in groups:
            allowed = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
            for v in values:
                if v not in allowed:
                    fail(f"{group}={v}: unknown {group}; allowed: {', '.join(allowed)}")
        axes[key] = [f"{key}={v}" for v in values]
    return axes


def _with_sweeper_params(compose, config_name: str, axes: dict[str, list[str]]) -> dict[str, list[str]]:
    """Add the axes of ``hydra.sweeper.params`` (set by an experiment or hparams_search config);
    the command line wins over them, as it does in the sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    first = [values[0] for values in axes.values()]
    try:
        cfg = compose(config_name=config_name, overrides=first, return_hydra_config=True)
    except Exception as e:
        fail(_sweeper_hint(_explain_missing_key(compose, first, e) or _one_line(e)))
    params = cfg.hydra.sweeper.get("params") or {}
    on_command_line = {k.lstrip("+~") for k in axes}
    extra = [f"{k}={v}" for k, v in params.items() if str(k).lstrip("+~") not in on_command_line]
    try:
        parsed = OverridesParser.create().parse_overrides(extra)
    except Exception as e:
        fail(f"hydra.sweeper.params: {_one_line(e)}")
    return {**_axes(parsed), **axes}


def _sweeper_hint(message: str) -> str:
    if "hydra/sweeper/optuna" in message or "hydra/sweeper/sampler" in message:
        return "hydra/sweeper=optuna is not installed: pip install -c constraints.txt -e '.[sweep]'"
    return message


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

    from .train import Diverged, Preempted, RunInfo, format_summary, train

    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    info = RunInfo(run_dir=Path(hc.runtime.output_dir), name=_run_name(cfg, choices, hc.job.override_dirname),
                   group=_sweep_group(hc) if hc.mode == RunMode.MULTIRUN else None, choices=choices,
                   setting=_run_name(cfg, choices, _without(hc.job.override_dirname, SEEDLESS)))
    try:
        summary = train(cfg, info)
    except ConfigError as e:
        if hc.mode == RunMode.MULTIRUN:
            raise  # this job is marked failed; the sweep goes on
        fail(str(e))
    except Preempted as e:  # the whole process stops (a sweep too); rerun the command to resume
        print(f"seqlab: {e} ({info.run_dir})", file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    except Diverged as e:
        if hc.mode == RunMode.MULTIRUN:
            raise  # this job is marked failed; the sweep goes on
        print(f"seqlab: diverged: {e}; summary in {info.run_dir}/summary.json", file=sys.stderr)
        raise SystemExit(EXIT_DIVERGED) from None
    print(format_summary(summary))
    print(f"results: {info.run_dir}")
    return summary["final_loss"]


def _run_name(cfg: DictConfig, choices: dict, override_dirname: str) -> str:
    """Readable W&B name: task-model-T, then the other overrides."""
    base = f"{choices.get('task', 'task')}-{choices.get('model', 'model')}-T{cfg.seq_len}"
    extra = [o for o in override_dirname.split(",") if o and o.split("=")[0] not in ("task", "model", "seq_len")]
    return base + (" " + ",".join(extra) if extra else "")


# Overrides that do not make a different setting: runs that differ only in these are repeats.
SEEDLESS = ("seed", "resume")


def _without(override_dirname: str, keys: tuple[str, ...]) -> str:
    return ",".join(o for o in override_dirname.split(",") if o.split("=")[0].lstrip("+~") not in keys)


def _sweep_group(hc) -> str:
    """The sweep's directory, e.g. 'multirun/2026-11-22/21-50-00' -> 'sweep-2026-11-22-21-50-00'."""
    parts = Path(hc.sweep.dir).parts[-2:]
    return "sweep-" + "-".join(parts)


def main() -> None:
    preflight(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
