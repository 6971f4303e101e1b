"""Probe a model without training it: ``python -m seqlab.probe [overrides]``.

    python -m seqlab.probe task=adding model=lstm seq_len=200
    python -m seqlab.probe task=copy model=gru seq_len=100 checkpoint=RUN_DIR/checkpoint.pt

Same config tree and checks as ``python -m seqlab`` (primary config
conf/probe_only.yaml = config.yaml + ``checkpoint``). The model is the one
``seed`` initializes, or the ``"model"`` state_dict of ``checkpoint``. One probe
is taken (its knobs: ``probe.*``) and written into a fresh output directory:
probe.npz, probe_curves.png, probe_heatmap.png, config.yaml and summary.json
(its ``probe`` key); the summary is printed. No tracker: the files are the record.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from ..__main__ import CONF_DIR, fail, preflight
from ..checks import ConfigError, check
from ..config import build_model, build_probe, build_task, setup
from ..tracking import write_json_atomic
from .history import ProbeHistory
from .measure import probe
from .plots import figure_title, write_plots

CONFIG_NAME = "probe_only"


def check_standalone(cfg: DictConfig) -> None:
    """What only this entry point needs: a probe to run, and a checkpoint that fits the model
    (checked before Hydra makes an output directory)."""
    check(build_probe(cfg) is not None, "probe", "none", "nothing to probe; use probe=default")
    path = cfg.get("checkpoint")
    if path is not None:
        check(isinstance(path, str) and Path(path).is_file(), "checkpoint", path,
              "must be a file written by torch.save (a run's checkpoint.pt)")
        load_checkpoint(build_model(cfg, build_task(cfg)), path)


def load_checkpoint(model: torch.nn.Module, path: str) -> int | None:
    """Load the checkpoint's "model" state_dict into ``model``; its training step when it records one."""
    state, step = load_model_state(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        why = " ".join(ln.strip() for ln in str(e).splitlines()[1:3] if ln.strip())[:300]
        raise ConfigError(f"checkpoint={path!r}: does not fit this task and model ({why}); "
                          f"give the task and model options it was trained with") from None
    return step


def load_model_state(path: str) -> tuple[dict, int | None]:
    """The model state_dict of a checkpoint, and its training step when it records one."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"checkpoint={path!r}: not readable as a checkpoint "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    check(isinstance(saved, dict) and "model" in saved, "checkpoint", path, 'must be a dict with a "model" state_dict')
    loop = saved.get("loop")
    step = saved.get("step", loop.get("step") if isinstance(loop, dict) else None)
    return saved["model"], step


def probe_only(cfg: DictConfig, run_dir: Path) -> dict:
    """Build, (load,) probe once, write the run directory; returns the summary dict."""
    device, task, model = setup(cfg)
    check_standalone(cfg)
    step = 0
    if cfg.checkpoint is not None:
        step = load_checkpoint(model, cfg.checkpoint) or 0
    settings = build_probe(cfg)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    start = time.perf_counter()
    result = probe(model, task, settings.make_batch(task, device), settings)
    elapsed = time.perf_counter() - start
    history = ProbeHistory(task.lag)
    history.append(step, result)
    history.save(run_dir / "probe.npz")
    if settings.plots:
        write_plots(history, run_dir, title=figure_title(task.name, _model_choice(),
                                                          cfg.seq_len if task.total_len > 1 else None, history.n_layers)
                    + f", step {step}")
    summary = {"status": "finished", "mode": "probe", "task": task.name, "lag": task.lag,
               "checkpoint": cfg.checkpoint, "step": step, "probe_time_s": elapsed, "device": str(device),
               "probe": {"step": step, **result.summary()}}
    write_json_atomic(run_dir / "summary.json", summary)
    return summary


def _model_choice() -> str | None:
    """The model option the user picked (model=lstm), when Hydra is running."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().runtime.choices.get("model")
    except ValueError:  # not under @hydra.main (called from Python)
        return None


def format_probe(summary: dict) -> str:
    """One line per curve: gain, half-life, attenuation, horizon; then the depth fits, the
    parameter-gradient norms and the spectra."""
    lines = [f"probe of {summary['task']} (task lag {summary['lag']}) at step {summary['step']}"
             + (f" from {summary['checkpoint']}" if summary["checkpoint"] else " (untrained)")]
    for key, s in summary["probe"].items():
        if key == "step":
            continue
        if key.startswith("lyapunov"):
            lines.append(f"  {key}: top exponent {s['max']:.4g} per step (sum of top {s['k']}: {s['sum']:.4g})")
        elif key.startswith("depth_"):
            under = f", underflow at layer {s['underflow_layer']}" if s["underflow_layer"] >= 0 else ""
            lines.append(f"  {key}: gain {s['gain']:.4g} per layer, {s['attenuation_decades']:.3g} decades "
                         f"from the last layer to the first{under}")
        elif key == "param_grad_norm":
            lines.append("  ||dL/dtheta|| per group: " + ", ".join(f"{g} {v:.3g}" for g, v in s.items()))
        elif s.get("n_lags") == 1:  # a task without time: the state's g only
            lines.append(f"  {key}: g {s['g0']:.4g} (one step: no lag axis)")
        else:
            half = "inf" if math.isinf(s["half_life"]) else f"{s['half_life']:.3g}"
            lines.append(f"  {key}: gain {s['gain']:.4g} (ln {s['log_gain']:.4g}, half-life {half} steps), "
                         f"attenuation {s['attenuation_decades']:.3g} decades, horizon {s['horizon']}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
def run(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = probe_only(cfg, run_dir)
    except ConfigError as e:
        fail(str(e))
    print(format_probe(summary))
    print(f"results: {run_dir}")


def main() -> None:
    preflight(sys.argv[1:], config_name=CONFIG_NAME, check=check_standalone)
    run()


if __name__ == "__main__":
    main()
