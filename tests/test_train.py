"""The training loop: the loss falls, runs reproduce from their seed, results land in the run directory."""
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.train import RunInfo, train


def run(tmp_path: Path, *overrides, name="run"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        # the probe runs (it must not disturb training), cheaply: no figures, no 3500-step Lyapunov spectrum
        cfg = compose(config_name="config", overrides=["logger=none", "progress=false", "probe.plots=false",
                                                       "probe.lyapunov_steps=0", *overrides])
    run_dir = tmp_path / name
    summary = train(cfg, RunInfo(run_dir=run_dir, name=name, choices={"model": "x"}))
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


def test_loss_falls_on_delayed_recall_short_lag(tmp_path):
    # lag 4: a GRU learns it in a few hundred updates; the eval loss must fall well below ln 8.
    summary, rows = run(tmp_path, "task=delayed_recall", "model=gru", "seq_len=5", "steps=300",
                        "eval_every=100", "eval_size=256", "model.hidden_size=32", "optim.lr=1e-2")
    assert rows[0]["eval/loss"] > 0.9 * summary["baseline"]
    assert rows[-1]["eval/loss"] < 0.2 * summary["baseline"]
    assert summary["solved"] and summary["solved_step"] in (100, 200, 300)
    assert summary["final_accuracy"] > 0.95


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    args = ("task=adding", "model=lstm", "seq_len=20", "steps=20", "eval_every=10", "eval_size=64",
            "batch_size=16", "model.hidden_size=16")
    a = run(tmp_path, *args, "seed=3", name="a")[1]
    b = run(tmp_path, *args, "seed=3", name="b")[1]
    c = run(tmp_path, *args, "seed=4", name="c")[1]
    assert a == b
    assert a[-1]["eval/loss"] != c[-1]["eval/loss"]
    assert a[0]["eval/loss"] != c[0]["eval/loss"]  # different init, same held-out set


def test_eval_set_is_fixed_across_training_seeds(tmp_path):
    # steps=0: only the step-0 evaluation; same model seed, different data seeds -> same eval loss
    args = ("task=copy", "seq_len=10", "steps=0", "eval_size=64", "model.hidden_size=8")
    a = run(tmp_path, *args, "seed=1", name="a")[1]
    b = run(tmp_path, *args, "seed=1", "batch_size=7", name="b")[1]
    assert a == b and len(a) == 1


def test_gradient_clipping_reports_the_preclip_norm(tmp_path):
    args = ("task=adding", "seq_len=10", "steps=4", "log_every=1", "eval_every=4", "eval_size=16",
            "batch_size=8", "model.hidden_size=8")
    free = run(tmp_path, *args, name="free")[1]
    clipped = run(tmp_path, *args, "grad_clip=1e-6", name="clipped")[1]
    # the first update sees the same gradient; its norm is logged before clipping
    assert free[-1]["train/grad_norm"] > 1e-3
    assert clipped[-1]["eval/loss"] != free[-1]["eval/loss"]  # but the updates were clipped
    assert clipped[-1]["train/grad_norm"] > 1e-3


def test_summary_is_written_even_when_the_run_fails(tmp_path, monkeypatch):
    import seqlab.train as T

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(T, "evaluate", boom)
    with pytest.raises(RuntimeError):
        run(tmp_path, "seq_len=10", "steps=2", "eval_size=4", name="f")
    s = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert s["status"] == "failed" and "simulated failure" in s["error"] and "final_loss" not in s
