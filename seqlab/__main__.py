"""Entry point: ``python -m seqlab [overrides]`` (Hydra; ``--help`` lists the groups).

Before Hydra creates any output directory, ``preflight`` composes the config for
every combination the command line asks for and validates it, so a bad value
ends in one line naming the key, the value and what is allowed, with exit code
2, and leaves nothing behind that looks like a run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ._paths import CONF_DIR
from .checks import ConfigError
from .preflight import fail, preflight  # noqa: F401  (also the entry of python -m seqlab.probe)

EXIT_DIVERGED = 3


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
