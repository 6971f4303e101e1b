"""Runs that survive: W&B failures never stop training; (more: checkpoints, signals, divergence)."""
import json
import os
import subprocess
import sys

import pytest

from seqlab.tracking import WandbTracker
from wandb_records import wandb_exit_code

FAST = ["steps=6", "eval_every=3", "eval_size=16", "batch_size=8", "log_every=2", "progress=false",
        "seq_len=10", "model.hidden_size=8"]


def no_wandb_account(tmp_path):
    """An environment with no W&B credentials at all (and no network is needed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), WANDB_SILENT="true", WANDB_CONFIG_DIR=str(tmp_path / "wbcfg"))
    return env


def test_online_mode_without_account_falls_back_to_offline_and_trains(tmp_path):
    r = subprocess.run([sys.executable, "-m", "seqlab", "logger.mode=online", "hydra.run.dir=run", *FAST],
                       cwd=tmp_path, env=no_wandb_account(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "logging offline instead" in r.stdout + r.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished"
    (wb,) = (tmp_path / "run" / "wandb").glob("offline-run-*")  # can be synced later
    assert wandb_exit_code(wb) == 0


def test_wandb_that_goes_away_mid_run_does_not_raise(tmp_path, caplog):
    t = WandbTracker(run_dir=tmp_path, config={}, name="t", job_type="test", mode="offline")
    assert t.run is not None

    def gone(*a, **k):
        raise ConnectionError("W&B went away")

    t.run.log = gone
    with caplog.at_level("WARNING"):
        t.log({"step": 1, "train/loss": 0.5})
        t.log({"step": 2, "train/loss": 0.4})  # warned once, then W&B is off
        t.summary({"x": 1})
        t.finish(exit_code=0)
    assert t.run is None
    assert sum("W&B log failed" in r.getMessage() for r in caplog.records) == 1


def test_wandb_that_cannot_start_at_all_is_skipped(tmp_path, monkeypatch, caplog):
    import wandb

    def broken(*a, **k):
        raise RuntimeError("no service")

    monkeypatch.setattr(wandb, "init", broken)
    with caplog.at_level("WARNING"):
        t = WandbTracker(run_dir=tmp_path, config={}, name="t", job_type="test", mode="offline")
    t.log({"step": 0})
    t.finish()
    assert t.run is None and "could not start" in caplog.text
