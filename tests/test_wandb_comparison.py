"""Comparing runs in W&B as a researcher would, checked offline on the records wandb itself reads back:
the printed upload command works (`wandb sync --dry-run`) for a single, a resumed and a sweep run; the
config is flat (cell, task, T, lr, ... as top-level keys, no Hydra internals); the summary holds results
only; every training step is one W&B row; a probe of a run's checkpoint joins that run's group and
overlays its curves."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.tracking import results_only, sync_command, wandb_config
from wandb_records import wandb_config as recorded_config
from wandb_records import wandb_records, wandb_summary

TINY = ["task=adding", "seq_len=6", "model.hidden_size=4", "eval_size=8", "batch_size=4", "log_every=1",
        "eval_every=2", "probe.every=4", "probe.batch_size=4", "probe.lyapunov_k=0", "probe.plots=false",
        "progress=false"]


def env_for(tmp_path):
    e = {**os.environ, "WANDB_SILENT": "true", "HOME": str(tmp_path)}
    e.pop("WANDB_MODE", None)  # the lab's own default: offline
    return e


def seqlab(tmp_path, *args, module="seqlab"):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=300)


def upload_line(text: str) -> str:
    (line,) = [ln for ln in text.splitlines() if "upload with: wandb sync " in ln]
    return line.split("upload with: ", 1)[1]


def dry_run(tmp_path, command: str) -> list[str]:
    """`wandb sync --dry-run` of a printed command (through the shell: a sweep's line has a glob);
    the .wandb files it would upload."""
    assert command.startswith("wandb sync ")
    args = command[len("wandb sync "):]
    r = subprocess.run(["bash", "-c", f"{shlex.quote(sys.executable)} -m wandb sync --dry-run {args}"],
                       cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    n = int(re.search(r"Would sync (\d+) run", out).group(1))
    files = [ln.split("wandb: ", 1)[-1].strip() for ln in out.splitlines() if ln.rstrip().endswith(".wandb")]
    assert len(files) == n
    return files


def test_wandb_config_is_flat_curated_and_complete_on_disk():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["remedy=lstm_chrono", "task=copy", "seq_len=30",
                                                       "optim=sgd", "optim.lr=0.05", "seed=3"])
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True)
    config["choices"] = {"task": "copy", "model": "lstm", "optim": "sgd", "probe": "default", "floss": "none",
                         "logger": "wandb", "remedy": "lstm_chrono"}
    flat = wandb_config(config, T=30)
    assert {"cell": "lstm", "task": "copy", "T": 30, "optimizer": "sgd", "lr": 0.05, "momentum": 0.0,
            "seed": 3, "hidden_size": 128, "num_layers": 1, "init": "default", "chrono": True,
            "chrono_tmax": 30, "remedy": "lstm_chrono", "floss": "none", "steps": 10000} .items() <= flat.items()

    def keys(d, prefix=""):
        for k, v in d.items():
            yield prefix + k
            if isinstance(v, dict):
                assert v, f"empty node {prefix + k}"
                yield from keys(v, prefix + k + ".")

    every = list(keys(flat))
    assert not [k for k in every if k.rsplit(".", 1)[-1].startswith("_")]  # no _target_, _partial_
    assert not {"model", "optim", "layer", "logger", "choices", "threads", "progress", "resume", "seq_len"} & set(flat)
    assert flat["probe"]["every"] == 250 and "_target_" not in flat["probe"]


def test_summary_keeps_results_and_drops_settings_and_nested_records():
    config = {"seed": 0, "steps": 6, "optim": {"lr": 1}, "choices": {"model": "rnn", "task": "adding"}}
    summary = {"status": "finished", "final_loss": 0.1, "steps": 6, "seed": 0, "model": "rnn", "task": "adding",
               "probe": {"h_l0": {"gain": 1.0}}, "solved_step": None, "wall_time_s": 1.0, "lag": 5,
               "lag_distribution": {"5": 1.0}, "flossing": [{"step": 0}], "device": "cpu", "wandb_run": "x"}
    assert results_only(summary, config) == {"status": "finished", "final_loss": 0.1, "wall_time_s": 1.0}


def test_sync_command_lists_every_folder():
    assert sync_command([Path("a/wandb/offline-run-1-x"), Path("a/wandb/offline-run-2-x")]) == \
        "wandb sync a/wandb/offline-run-1-x a/wandb/offline-run-2-x"


@pytest.mark.slow
def test_single_resumed_and_probe_runs_upload_and_compare_in_wandb(tmp_path):
    # a single run: its printed upload command is accepted by wandb sync
    run = Path("outputs/one")
    r = seqlab(tmp_path, *TINY, "steps=4", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr
    single = upload_line(r.stdout)
    assert "--append" not in single
    (first,) = dry_run(tmp_path, single)
    # the same run resumed to more steps: two segments of one W&B run, one command for both
    r = seqlab(tmp_path, *TINY, "steps=8", f"resume={run}")
    assert r.returncode == 0, r.stderr
    resumed = upload_line(r.stdout)
    segments = sorted((tmp_path / run / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and resumed == sync_command([s.relative_to(tmp_path) for s in segments])
    files = dry_run(tmp_path, resumed)
    assert len(files) == 2 and first in files
    records = [wandb_records(s) for s in segments]
    # the flat config: cell, task and T top-level, no Hydra internals; config.yaml stays complete
    config = recorded_config(records[0])
    assert (config["cell"], config["task"], config["T"], config["lr"]) == ("rnn", "adding", 6, 0.001)
    assert "_target_" not in json.dumps(config) and "_partial_" not in json.dumps(config)
    assert "_target_: seqlab.models.SequenceModel" in (tmp_path / run / "config.yaml").read_text()
    # one W&B row per training step: train/* never twice at one step, across both segments
    history = [h["history"]["item"] for rec in records for h in rec if h["type"] == "history"]
    train_steps = [row["step"] for row in history if "train/loss" in row]
    assert train_steps == list(range(1, 9))
    assert [row["step"] for row in history if "eval/loss" in row] == [0, 2, 4, 6, 8]
    # the summary: results, with W&B's min/last of the held-out loss; no curve points, tables or axes
    summary = wandb_summary(records[1])
    saved = json.loads((tmp_path / run / "summary.json").read_text())
    assert summary["final_loss"] == pytest.approx(saved["final_loss"]) and summary["status"] == "finished"
    assert summary["eval/loss"]["last"] == pytest.approx(saved["final_loss"])
    assert summary["eval/loss"]["min"] == pytest.approx(min(row["eval/loss"] for row in history if "eval/loss" in row))
    assert not [k for k in summary if k.split("/")[0] in ("probe", "probe_depth", "probe_tables", "probe_figures")]
    assert not {"lag", "lag_distribution", "seed", "steps", "seq_len", "wandb_run"} & set(summary)
    run_rec = next(x["run"] for x in records[0] if x["type"] == "run")

    # a probe of the run's last checkpoint: in the run's group, the same keys (probe/final/*), an id and
    # an upload line printed
    r = seqlab(tmp_path, f"checkpoint={run}/checkpoint.pt", "probe.batch_size=4", "probe.lyapunov_k=0",
               "probe.plots=false", "hydra.run.dir=outputs/probe", module="seqlab.probe")
    assert r.returncode == 0, r.stderr
    (probe_wb,) = (tmp_path / "outputs/probe/wandb").glob("offline-run-*")
    probe_records = wandb_records(probe_wb)
    probe_run = next(x["run"] for x in probe_records if x["type"] == "run")
    assert probe_run["run_group"] == run_rec["run_group"] and probe_run["job_type"] == "probe"
    assert f"W&B offline run {probe_run['run_id']}" in r.stdout
    assert len(dry_run(tmp_path, upload_line(r.stdout))) == 1
    probe_keys = {k for x in probe_records if x["type"] == "history" for k in x["history"]["item"]}
    run_keys = {k for x in records[1] if x["type"] == "history" for k in x["history"]["item"]}
    assert "probe/final/h_l0" in probe_keys & run_keys and "probe_summary/h_l0/gain" in probe_keys & run_keys
    assert recorded_config(probe_records)["cell"] == "rnn" and recorded_config(probe_records)["mode"] == "probe"
    assert not [k for k in wandb_summary(probe_records) if k.startswith("probe/")]


@pytest.mark.slow
def test_a_sweeps_upload_line_syncs_every_job(tmp_path):
    r = seqlab(tmp_path, "-m", *[o for o in TINY if not o.startswith("probe.")], "probe=none", "steps=2",
               "model=rnn,gru", "hydra.sweep.dir=multirun/s")
    assert r.returncode == 0, r.stderr
    line = upload_line(r.stderr)
    assert line == "wandb sync multirun/s/*/wandb/offline-run-*"
    files = dry_run(tmp_path, line)
    assert len(files) == 2 and {Path(f).parts[2] for f in files} == {"0", "1"}


def test_comparison_presets_log_to_wandb_by_default():
    presets = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
    assert {"claim_decay_time", "trainability_boundary", "long_memory"} <= set(presets)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for name in presets:
            cfg = compose(config_name="config", overrides=[f"+experiment={name}"])
            assert cfg.logger._target_ == "seqlab.tracking.WandbTracker", name
