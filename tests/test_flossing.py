"""Gradient flossing: it drives lambda1 towards 0 on a small case, its gradient is the exponents'
true gradient, it leaves training bit-identical while no episode is due, and bad knobs are one line."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.flossing import Flossing, FlossSettings
from seqlab.models import RNNLayer, SequenceModel
from seqlab.probe.lyapunov import driving_inputs, lyapunov_estimate, lyapunov_exponents
from seqlab.tasks import DelayedRecall
from seqlab.train import RunInfo, train


def tanh_rnn(task, hidden=8, seed=0):
    torch.manual_seed(seed)
    return SequenceModel(RNNLayer, task.input_size, task.output_size, hidden_size=hidden)


def top_exponent(model, task):
    x = driving_inputs(task, 1200, seed=123)
    return float(lyapunov_estimate(model.layers[0], x, k=2, warmup=200).exponents[0])


def test_flossing_drives_lambda1_towards_zero():
    task = DelayedRecall(seq_len=20)
    model = tanh_rnn(task)
    before = top_exponent(model, task)
    assert before < -0.2  # torch's default init: contracting
    readout = [p.detach().clone() for p in model.readout.parameters()]
    flossing = Flossing(FlossSettings(k=1, steps=60, warmup=10, before=40, lr=0.02), model, task, lr=1e-3)
    row = flossing(0)
    after = top_exponent(model, task)
    assert row["floss/updates"] == 40 and row["floss/loss_last"] < row["floss/loss_first"]
    assert abs(after) < 0.5 * abs(before)  # at least halved; measured by the probe's own long estimate, not the flossing loss
    assert all(torch.equal(a, b) for a, b in zip(readout, model.readout.parameters()))  # readout untouched
    assert flossing(1) is None  # no episodes during training unless floss.every is set


def test_flossing_gradient_is_the_gradient_of_the_exponents():
    task = DelayedRecall(seq_len=10)
    layer = tanh_rnn(task, hidden=5).double().layers[0]
    x = driving_inputs(task, 30, seed=1).double()
    lam = lyapunov_exponents(layer, x, k=2, warmup=5)
    W = layer.rnn.weight_hh_l0
    (grad,) = torch.autograd.grad((lam ** 2).mean(), W)
    eps = 1e-6
    with torch.no_grad():
        W[1, 2] += eps
        up = float((lyapunov_exponents(layer, x, k=2, warmup=5) ** 2).mean())
        W[1, 2] -= 2 * eps
        down = float((lyapunov_exponents(layer, x, k=2, warmup=5) ** 2).mean())
        W[1, 2] += eps
    assert grad[1, 2].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5)


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[
            "logger=none", "progress=false", "task=delayed_recall", "seq_len=8", "steps=6", "eval_every=2",
            "log_every=2", "eval_size=16", "batch_size=4", "model.hidden_size=6", "probe=none", *overrides])


def test_training_is_bit_identical_until_an_episode_is_due(tmp_path):
    off = train(compose_cfg(), RunInfo(run_dir=tmp_path / "off", name="off"))
    # flossing configured but never due: the module (its own generator and Adam) changes nothing
    idle = train(compose_cfg("floss=default", "floss.before=0", "floss.every=100"),
                 RunInfo(run_dir=tmp_path / "idle", name="idle"))
    assert (tmp_path / "off" / "metrics.jsonl").read_text() == (tmp_path / "idle" / "metrics.jsonl").read_text()
    assert off["final_loss"] == idle["final_loss"] and "flossing" not in idle
    # an episode due at step 4: identical up to it, different after, and logged
    on = train(compose_cfg("floss=default", "floss.before=0", "floss.every=4", "floss.during=3", "floss.steps=20",
                           "floss.warmup=5"), RunInfo(run_dir=tmp_path / "on", name="on"))
    rows = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("off", "on")]
    assert rows[0][:2] == rows[1][:2] and on["final_loss"] != off["final_loss"]
    assert [r["step"] for r in on["flossing"]] == [4] and on["flossing"][0]["floss/updates"] == 3


@pytest.mark.parametrize("override, allowed", [("floss.k=0", "an integer in [1, 10^6]"),
                                               ("floss.before=0", "flosses nothing")])
def test_bad_flossing_knob_is_one_line(tmp_path, override, allowed):
    r = subprocess.run([sys.executable, "-m", "seqlab", "floss=default", override, "logger=none", "steps=1",
                        f"hydra.run.dir={tmp_path / 'x'}"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith(f"seqlab: error: {override.split('=')[0]}") and allowed in r.stderr
    assert not (tmp_path / "x").exists()


def test_a_resumed_flossing_run_equals_an_uninterrupted_one(tmp_path):
    # episodes at steps 4 and 8; the first part stops at 4 (its checkpoint holds flossing's Adam,
    # generator and rows), the rerun into the same directory continues to 8
    args = ("floss=default", "floss.before=2", "floss.every=4", "floss.during=2", "floss.steps=10",
            "floss.warmup=2", "checkpoint_every=4")
    whole = train(compose_cfg(*args, "steps=8"), RunInfo(run_dir=tmp_path / "whole", name="whole"))
    train(compose_cfg(*args, "steps=4"), RunInfo(run_dir=tmp_path / "parts", name="parts"))
    parts = train(compose_cfg(*args, "steps=8"), RunInfo(run_dir=tmp_path / "parts", name="parts"))
    assert parts["resumed_from_step"] == 4
    assert (tmp_path / "whole" / "metrics.jsonl").read_text() == (tmp_path / "parts" / "metrics.jsonl").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "floss/seconds"} for r in rows]  # noqa: E731
    assert [r["step"] for r in parts["flossing"]] == [0, 4, 8]
    assert strip(parts["flossing"]) == strip(whole["flossing"])
