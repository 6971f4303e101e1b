"""The probe inside real training runs: files in the run directory, W&B records, training untouched."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.config import build_probe, validate
from seqlab.train import RunInfo, train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ("eval_size=32", "batch_size=8", "model.hidden_size=8")
PROBE_SMALL = ("probe.batch_size=8", "probe.lyapunov_k=4", "probe.lyapunov_steps=0")


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "progress=false", *overrides])


def run(tmp_path: Path, *overrides, name="run"):
    run_dir = tmp_path / name
    summary = train(compose_cfg(*overrides), RunInfo(run_dir=run_dir, name=name, choices={"model": "x"}))
    return summary, run_dir


def cli(*args, cwd):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_short_run_writes_probe_npz_figures_and_summary(tmp_path):
    out = tmp_path / "run"
    r = cli("-m", "seqlab", "task=adding", "model=lstm", "seq_len=20", "steps=20", "probe.every=10",
            "logger=none", "progress=false", "threads=1", *SMALL, *PROBE_SMALL, f"hydra.run.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with np.load(out / "probe.npz") as npz:
        assert npz["steps"].tolist() == [0, 10, 20]  # step 0, every 10, the end (not twice)
        assert npz["lags"].tolist() == list(range(20)) and npz["loss_steps"].tolist() == [19]
        assert int(npz["task_lag"]) == 19 and npz["curves"].tolist() == ["h_l0", "c_l0"]
        for key in ("h_l0", "c_l0"):
            assert npz[f"mean_{key}"].shape == (3, 20) and npz[f"per_loss_step_{key}"].shape == (3, 1, 20)
            assert np.all(npz[f"q25_{key}"] <= npz[f"q50_{key}"]) and np.all(npz[f"q50_{key}"] <= npz[f"q75_{key}"])
            assert np.all(npz[f"mean_{key}"] > 0) and np.all(np.isfinite(npz[f"gain_{key}"]))
        assert npz["lyapunov_l0"].shape == (3, 4)
        final_gain = float(npz["gain_c_l0"][-1])
    for png in ("probe_curves.png", "probe_heatmap.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "finished" and s["probe"]["step"] == 20
    assert s["probe"]["c_l0"]["gain"] == pytest.approx(final_gain)
    assert {"gain", "half_life", "horizon", "attenuation_decades", "g_lag1", "g_lag10", "g_task_lag"} <= set(s["probe"]["h_l0"])
    assert s["probe"]["lyapunov_l0"]["k"] == 4 and s["probe_time_s"] > 0


def test_training_is_the_same_with_the_probe_on_or_off(tmp_path):
    # copy: several loss steps; the probe runs between updates every 3 steps
    args = ("task=copy", "model=gru", "seq_len=5", "steps=12", "eval_every=3", "log_every=3", *SMALL)
    on, on_dir = run(tmp_path, *args, *PROBE_SMALL, "probe.every=3", name="on")
    off, off_dir = run(tmp_path, *args, "probe=none", name="off")
    rows = [(d / "metrics.jsonl").read_text() for d in (on_dir, off_dir)]
    assert rows[0] == rows[1] and "train/loss" in rows[0]
    assert on["final_loss"] == off["final_loss"]
    with np.load(on_dir / "probe.npz") as npz:
        assert npz["steps"].tolist() == [0, 3, 6, 9, 12]
        assert npz["loss_steps"].tolist() == [15, 24]  # max_loss_steps=2 of the 10 answer steps
    assert "probe" not in off and not (off_dir / "probe.npz").exists()
    assert not (off_dir / "probe_curves.png").exists()


def test_wandb_gets_curves_against_lag_summaries_and_images(tmp_path):
    from wandb_records import wandb_records

    run_dir = tmp_path / "wb"
    cfg = compose_cfg("task=delayed_recall", "seq_len=6", "steps=4", "probe.every=2", "eval_every=2", *SMALL,
                      *PROBE_SMALL, "logger=wandb")
    summary = train(cfg, RunInfo(run_dir=run_dir, name="wb"))
    (wb,) = (run_dir / "wandb").glob("offline-run-*")
    records = wandb_records(wb)
    metrics = [r["metric"] for r in records if r["type"] == "metric"]
    assert {"name": "probe/lag", "options": {"defined": True}, "summary": {"none": True}} in metrics
    assert any(m.get("glob_name") == "probe/*" and m.get("step_metric") == "probe/lag" for m in metrics)
    assert any(m.get("glob_name") == "probe_summary/*" and m.get("step_metric") == "step" for m in metrics)
    rows = [r["history"]["item"] for r in records if r["type"] == "history"]
    for label in ("init", "final"):  # one row per lag 0..5, x = probe/lag
        curve = [row for row in rows if f"probe/{label}/h_l0" in row]
        assert [row["probe/lag"] for row in curve] == list(range(6))
    fits = [row for row in rows if "probe_summary/h_l0/gain" in row]
    assert [row["step"] for row in fits] == [0, 2, 4]
    assert fits[-1]["probe_summary/h_l0/gain"] == pytest.approx(summary["probe"]["h_l0"]["gain"])
    assert any("probe_summary/lyapunov_l0/max" in row for row in fits)
    images = {k.split(".")[0] for row in rows for k in row if k.startswith("probe_figures/")}
    assert images == {"probe_figures/probe_curves", "probe_figures/probe_heatmap"}


def test_bad_probe_settings_fail_before_the_run(tmp_path):
    with pytest.raises(ConfigError, match="probe.every"):
        validate(compose_cfg("probe.every=0"))
    with pytest.raises(ConfigError, match="probe.nope"):
        validate(compose_cfg("+probe.nope=1"))
    assert build_probe(compose_cfg("probe=none")) is None


def test_a_resumed_run_continues_its_probe_history(tmp_path):
    # stop at step 4 (a finished run with steps=4), then rerun into the same directory with steps=8:
    # the probes of both parts form one history, equal to an uninterrupted run's
    args = ("task=adding", "model=gru", "seq_len=8", "eval_every=4", "log_every=4", "checkpoint_every=4",
            *SMALL, *PROBE_SMALL, "probe.every=4")
    _, whole = run(tmp_path, *args, "steps=8", name="whole")
    run(tmp_path, *args, "steps=4", name="parts")
    summary, parts = run(tmp_path, *args, "steps=8", name="parts")
    assert summary["resumed_from_step"] == 4 and summary["probe"]["step"] == 8
    with np.load(whole / "probe.npz") as a, np.load(parts / "probe.npz") as b:
        assert a["steps"].tolist() == b["steps"].tolist() == [0, 4, 8]
        assert set(a.files) == set(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
