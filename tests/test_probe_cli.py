"""The standalone entry ``python -m seqlab.probe``: an untrained or checkpointed model, no training."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.config import build_model, build_probe, build_task
from seqlab.probe import probe
from seqlab.probe.__main__ import check_standalone

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="probe_only", overrides=list(overrides))


def cli(*args, cwd):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run([sys.executable, "-m", "seqlab.probe", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_standalone_probe_of_a_checkpoint_equals_the_library(tmp_path):
    overrides = ("task=copy", "model=lstm", "seq_len=4", "model.hidden_size=6", "probe.batch_size=5",
                 "probe.lyapunov_k=3", "seed=7")
    cfg = compose_cfg(*overrides)
    task = build_task(cfg)
    torch.manual_seed(123)
    model = build_model(cfg, task)  # not the model seed=7 makes: the checkpoint's weights must win
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "loop": {"step": 42}}, ckpt)
    settings = build_probe(cfg)
    expected = probe(model, task, settings.make_batch(task), settings).summary()

    out = tmp_path / "probe-out"
    r = cli(*overrides, "threads=1", f"checkpoint={ckpt}", f"hydra.run.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "c_l0: gain" in r.stdout and "lyapunov_l0: top exponent" in r.stdout and str(out) in r.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["step"] == 42 and s["probe"]["step"] == 42 and s["checkpoint"] == str(ckpt)
    for key in ("h_l0", "c_l0"):
        assert s["probe"][key]["gain"] == pytest.approx(expected[key]["gain"], rel=1e-6)
    assert s["probe"]["lyapunov_l0"]["max"] == pytest.approx(expected["lyapunov_l0"]["max"], rel=1e-5)
    with np.load(out / "probe.npz") as npz:
        assert npz["steps"].tolist() == [42]
    assert (out / "probe_heatmap.png").read_bytes()[:8] == PNG_MAGIC


def test_standalone_probe_errors_leave_no_output_directory(tmp_path):
    out = tmp_path / "never"
    r = cli(f"checkpoint={tmp_path / 'missing.pt'}", f"hydra.run.dir={out}", cwd=tmp_path)
    assert r.returncode == 2 and "checkpoint=" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(ConfigError, match="nothing to probe"):
        check_standalone(compose_cfg("probe=none"))


def test_the_printout_says_what_an_exponent_of_minus_infinity_means():
    from seqlab.probe.__main__ import format_probe

    summary = {"task": "random_labels", "lag": 0, "step": 0, "checkpoint": None, "probe": {
        "lyapunov_l0": {"max": float("-inf"), "max_err": 0.0, "steps": 3000, "k": 2, "sum": float("-inf")},
        "lyapunov_l1": {"max": -0.5, "max_err": 0.001, "steps": 3000, "k": 2, "sum": -1.2}}}
    lines = format_probe(summary).splitlines()
    assert lines[1] == ("  lyapunov_l0: top exponent -inf: this layer's state does not depend on its previous one "
                        "(no time axis, e.g. a feedforward layer)")
    assert lines[2].startswith("  lyapunov_l1: top exponent -0.5 ± 0.001 per step over 3000 steps")
