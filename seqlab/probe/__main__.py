"""Probe a model without training it: ``python -m seqlab.probe [overrides]``.

    python -m seqlab.probe task=adding model=lstm seq_len=200
    python -m seqlab.probe checkpoint=RUN_DIR/checkpoint.pt probe.batch_size=256

Same config tree and checks as ``python -m seqlab`` (primary config
conf/probe_only.yaml = config.yaml + ``checkpoint``). The model is the one
``seed`` initializes, or the ``"model"`` state_dict of ``checkpoint``; a run's
checkpoint also brings the config it was trained with (task, model, seq_len, ...:
seqlab.probe.from_checkpoint), so only the probe's own knobs need giving, and an
override that contradicts it stops with one line. One probe is taken (its knobs:
``probe.*``) and written into a fresh output directory: probe.npz, the probe
figures, config.yaml (the config probed) and summary.json (its ``probe`` key); the
summary is printed. ``logger`` works as in a run (W&B, offline unless told; the
probe's scalars, curves, table and figures); ``logger=none`` keeps the files only.
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
from ..argv import overrides_from_argv as _overrides_from_argv
from ..checks import ConfigError, check
from ..config import build_model, build_probe, build_task, setup, validate
from ..files import write_text
from ..rundir import (DEFAULT_ROOT, RunLock, _value, check_fresh, check_run_dir_value, check_unlocked, check_writable,
                      write_hydra_record)
from ..tracking import results_only, sync_hint, write_json_atomic
from .from_checkpoint import PROBE_MAY_SET, check_overrides, stored_config, with_stored_config
from ..theory.beside import beside_probe, theory_line, theory_scalars
from .fit import decades_text
from .history import ProbeHistory
from .measure import probe
from .plots import figure_title, write_plots
from .records import log_probe

CONFIG_NAME = "probe_only"


def check_standalone(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """What only this entry point needs: a probe to run, command-line ``overrides`` that agree with the
    checkpoint's own config, and a checkpoint that fits the model (checked before Hydra makes an
    output directory)."""
    check(build_probe(cfg) is not None, "probe", "none", "nothing to probe; use probe=default")
    path = cfg.get("checkpoint")
    if path is not None:
        check(isinstance(path, str) and Path(path).is_file(), "checkpoint", path,
              "must be a file written by torch.save (a run's checkpoint.pt)")
        stored = stored_config(path)  # refused here if it names a callable outside the lab's own
        if stored is not None:
            if overrides:
                check_overrides(cfg, overrides, stored, path)
            cfg = with_stored_config(cfg, stored)
            validate(cfg)  # the checkpoint's own config, checked like a command line's (ranges, memory)
        load_checkpoint(build_model(cfg, build_task(cfg)), path)


def load_checkpoint(model: torch.nn.Module, path: str) -> int | None:
    """Load the checkpoint's "model" state_dict into ``model``; its training step when it records one."""
    state, step = load_model_state(path)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError, ValueError) as e:  # a foreign structure
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
    check(isinstance(saved, dict) and isinstance(saved.get("model"), dict), "checkpoint", path,
          'must be a dict with a "model" state_dict')
    loop = saved.get("loop")
    step = saved.get("step", loop.get("step") if isinstance(loop, dict) else None)
    return saved["model"], step


def probe_only(cfg: DictConfig, run_dir: Path) -> dict:
    """Build, (load,) probe once, write the run directory (and the tracker); returns the summary dict.
    With a run's checkpoint, the config probed is the one it was trained with (``cfg`` gives the rest)."""
    stored = stored_config(cfg.checkpoint) if cfg.get("checkpoint") else None
    if stored is not None:
        cfg = with_stored_config(cfg, stored)
    device, task, model = setup(cfg)
    check_standalone(cfg)
    step = 0
    if cfg.checkpoint is not None:
        step = load_checkpoint(model, cfg.checkpoint) or 0
    settings = build_probe(cfg)
    here = _hydra_choices()  # the command line's groups; a checkpoint's own for what it was trained with
    choices = {**((stored or {}).get("choices") or here), **{k: v for k, v in here.items() if k in PROBE_MAY_SET}}

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))  # atomically, never through a link
    start = time.perf_counter()
    batch = settings.make_batch(task, device)
    result = probe(model, task, batch, settings)
    elapsed = time.perf_counter() - start
    history = ProbeHistory(task.lag)
    history.append(step, result)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True) if "model" in cfg else None
    history.theory = beside_probe(model, model_cfg, task, batch, settings, result, step)
    history.save(run_dir / "probe.npz")
    summary = {"status": "finished", "mode": "probe", "task": task.name, "lag": task.lag,
               "checkpoint": cfg.checkpoint, "step": step, "probe_time_s": elapsed, "device": str(device),
               "probe": {"step": step, **result.summary()}, "theory": history.theory, "model": choices.get("model")}
    probed = _probed_run(cfg.checkpoint, choices, cfg)
    tracker = _tracker(cfg, run_dir, task, choices, step, probed)
    summary["wandb_run"] = tracker.run_id
    exit_code = 1
    try:
        log_probe(tracker, step, result, (_label(step, probed),), task.lag)
        tracker.log({"step": step, **theory_scalars(history.theory)})
        if settings.plots:
            title = figure_title(task.name, choices.get("model"), cfg.seq_len if task.total_len > 1 else None,
                                 history.n_layers) + f", step {step}"
            for path in write_plots(history, run_dir, title=title):
                tracker.image(f"probe_figures/{path.stem}", path)
        write_json_atomic(run_dir / "summary.json", summary)
        tracker.summary(results_only(summary, {"choices": choices}))
        exit_code = 0
    finally:
        tracker.finish(exit_code=exit_code)
    return summary


def _label(step: int, probed: dict) -> str:
    """The key of the probe's native curves, the one a training run uses for the same model, so the two
    overlay in one W&B chart: ``init`` (an untrained model, or step 0), ``final`` (a finished run's last
    checkpoint), else ``checkpoint`` (a run's checkpoint before its end)."""
    if step == 0:
        return "init"
    return "final" if probed.get("steps") == step else "checkpoint"


def _probed_run(path: str | None, choices: dict, cfg: DictConfig) -> dict:
    """What the probe knows of the run it probes: its setting (the W&B group of its runs), name and
    planned steps from a run's checkpoint; for an untrained model the setting a run of this config has."""
    if path is not None:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - already loaded once by load_checkpoint: a bare file at worst
            saved = {}
        if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
            return {"setting": saved.get("setting"), "name": saved.get("name"),
                    "steps": saved["config"].get("steps")}
        return {}
    return {"setting": _untrained_setting(cfg, choices)}


def _untrained_setting(cfg: DictConfig, choices: dict) -> str | None:
    """The setting ``python -m seqlab`` gives a run of the command line's config (its overrides without
    the seed and the probe's own), so an untrained probe joins that setting's W&B group."""
    from hydra.core.hydra_config import HydraConfig

    from ..__main__ import SEEDLESS, _run_name, _without

    try:
        overrides = HydraConfig.get().job.override_dirname
    except ValueError:  # not under @hydra.main (called from Python)
        return None
    return _run_name(cfg, choices, _without(overrides, (*SEEDLESS, *PROBE_MAY_SET)))


def _tracker(cfg: DictConfig, run_dir: Path, task, choices: dict, step: int, probed: dict):
    """The run's tracker (``logger``, as ``python -m seqlab`` makes it): in the W&B group of the run it
    probes (its setting), job type ``probe``, named after what is probed."""
    from ..tracking import NullTracker, make_tracker

    if not cfg.get("logger"):
        return NullTracker()
    what = probed.get("name") or probed.get("setting") or f"{task.name}-{choices.get('model') or 'model'}"
    name = f"probe {what} step {step}"
    config = {**OmegaConf.to_container(cfg, resolve=True), "choices": choices}
    extra = {"mode": "probe", "probed_step": step, **({"checkpoint": cfg.checkpoint} if cfg.checkpoint else {})}
    length = cfg.seq_len if "seq_len" in cfg.task else task.total_len
    return make_tracker(cfg.logger, run_dir, config, name, job_type="probe", T=length, setting=probed.get("setting"),
                        extra_config=extra) or NullTracker()


def _hydra_choices() -> dict:
    """The config-group options of the command line (model=lstm, ...), when Hydra is running."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}
    except ValueError:  # not under @hydra.main (called from Python)
        return {}


def format_probe(summary: dict) -> str:
    """One line per curve: gain, half-life, attenuation, horizon; then the depth fits, the
    parameter-gradient norms and the spectra."""
    lines = [f"probe of {summary['task']} (task lag {summary['lag']}) at step {summary['step']}"
             + (f" from {summary['checkpoint']}" if summary["checkpoint"] else " (untrained)")]
    for key, s in summary["probe"].items():
        if key == "step":
            continue
        if key.startswith("lyapunov") and s.get("max") == float("-inf"):
            lines.append(f"  {key}: top exponent -inf: this layer's state does not depend on its previous one "
                         f"(no time axis, e.g. a feedforward layer)")
        elif key.startswith("lyapunov"):
            err = f" ± {s['max_err']:.2g}" if s.get("max_err") is not None else ""
            lines.append(f"  {key}: top exponent {s['max']:.4g}{err} per step over {s.get('steps', '?')} steps "
                         f"(sum of top {s['k']}: {s['sum']:.4g})")
        elif key.startswith("depth_"):
            under = f", underflow at layer {s['underflow_layer']}" if s["underflow_layer"] >= 0 else ""
            at_least = "at least " if s["underflow_layer"] >= 0 else ""
            lines.append(f"  {key}: gain {s['gain']:.4g} per layer, {at_least}{s['attenuation_decades']:.3g} decades "
                         f"from the last layer to the first{under}")
        elif key == "param_grad_norm":
            lines.append("  ||dL/dtheta|| per group: " + ", ".join(f"{g} {v:.3g}" for g, v in s.items()))
        elif s.get("n_lags") == 1:  # a task without time: the state's g only
            lines.append(f"  {key}: g {s['g0']:.4g} (one step: no lag axis)")
        else:
            half = "inf" if math.isinf(s["half_life"]) else f"{s['half_life']:.3g}"
            bound = s.get("fit_lags", s["n_lags"]) < s["n_lags"]
            where = ("above float32's range" if s["attenuation_decades"] < 0 else "below the float floor")
            floor = decades_text(s["attenuation_decades"], bound) + (f" ({where} from lag {s['fit_lags']})"
                                                                     if bound else "")
            lines.append(f"  {key}: gain {s['gain']:.4g} (ln {s['log_gain']:.4g}, half-life {half} steps), "
                         f"attenuation {floor}, horizon {s['horizon']}")
    for axis, unit in (("depth", "layer"), ("time", "step")):
        line = theory_line(summary.get("theory"), axis, unit)
        if line:
            lines.append(f"  theory, {axis}: {line}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
def run(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from ..rundir import shown

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        with RunLock(run_dir, shared=True):  # one writer; taken before anything is written there
            check_fresh(run_dir)  # another run's results are never written over
            write_hydra_record(run_dir, cfg)
            summary = probe_only(cfg, run_dir)
    except ConfigError as e:
        fail(str(e))
    except OSError as e:  # the directory became unwritable (full disk, read-only mount)
        fail(f"hydra.run.dir={run_dir}: cannot write ({e.strerror or type(e).__name__}); choose a writable directory")
    print(format_probe(summary))
    print(f"results: {run_dir}")
    hint = sync_hint(shown(run_dir), summary.get("wandb_run"))
    if hint:
        print(hint)


def check_output_dir(overrides: list[str]) -> None:
    """Where the probe would write, checked before Hydra makes anything: writable, not a system
    directory, not empty, not holding another run's results, not locked by a live run."""
    run_dir = _value(overrides, "hydra.run.dir")
    check_run_dir_value(run_dir)
    check_writable(run_dir or DEFAULT_ROOT, "hydra.run.dir")
    if run_dir is not None and Path(run_dir).is_dir():
        check_unlocked(Path(run_dir))
        check_fresh(Path(run_dir))


def main() -> None:
    from ..__main__ import quiet_logging_errors

    quiet_logging_errors()
    overrides = _overrides_from_argv(sys.argv[1:]) or []
    try:
        check_output_dir(overrides)
    except ConfigError as e:
        fail(str(e))
    preflight(sys.argv[1:], config_name=CONFIG_NAME, check=lambda cfg: check_standalone(cfg, overrides))
    run()


if __name__ == "__main__":
    main()
