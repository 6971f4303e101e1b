"""Learning speed per layer: per-group gradient norms (pre-clip) and update-to-weight ratios."""
import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.models import RNNLayer, SequenceModel
from seqlab.probe.gradient import parameter_groups
from seqlab.probe.layer_stats import LayerStats
from seqlab.tasks import Adding
from seqlab.train import RunInfo, train


def tiny_model(layers=3):
    torch.manual_seed(0)
    return SequenceModel(RNNLayer, 2, 1, hidden_size=6, num_layers=layers).double()


def group_norm(tensors):
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def test_group_norms_are_pre_clip_add_up_to_the_global_norm_and_updates_are_the_steps_own():
    task = Adding(seq_len=5)
    model = tiny_model()
    lr, clip = 0.1, 1e-3  # the clip is far below the gradient norm: clipping is active
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    stats = LayerStats(model, optimizer, due=lambda step: step % 2 == 0)
    groups = parameter_groups(model)
    gen = torch.Generator().manual_seed(0)
    for step in (1, 2):
        b = task.make_batch(4, gen)
        loss = task.loss(model(b.inputs.double()), type(b)(b.inputs.double(), b.targets.double()))
        optimizer.zero_grad()
        loss.backward()
        row = stats.measure(step)
        raw = {name: group_norm([p.grad for p in ps]) for name, ps in groups.items()}
        before = {name: [p.detach().clone() for p in ps] for name, ps in groups.items()}
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
        clipped = {name: group_norm([p.grad for p in ps]) for name, ps in groups.items()}
        optimizer.step()
        if step == 1:  # not due: nothing measured
            assert stats.row == {} and row == {}
            continue
        assert set(stats.row) == {f"train/{what}/{g}" for what in ("grad_norm", "update_ratio", "weight_norm")
                                  for g in ("l0", "l1", "l2", "readout")}
        for name in groups:
            assert stats.row[f"train/grad_norm/{name}"] == pytest.approx(raw[name], rel=1e-12)
            # SGD: delta = lr * (clipped gradient), so the ratio is lr * ||g_clipped|| / ||W before||
            assert stats.row[f"train/update_ratio/{name}"] == pytest.approx(
                lr * clipped[name] / group_norm(before[name]), rel=1e-9)
            assert stats.row[f"train/weight_norm/{name}"] == pytest.approx(group_norm(groups[name]), rel=1e-12)
        total = math.sqrt(sum(stats.row[f"train/grad_norm/{g}"] ** 2 for g in groups))
        assert total == pytest.approx(norm, rel=1e-12) and norm > 100 * clip


def test_every_parameter_is_in_exactly_one_group():
    model = tiny_model(layers=2)
    groups = parameter_groups(model)
    assert list(groups) == ["l0", "l1", "readout"]
    flat = [id(p) for ps in groups.values() for p in ps]
    assert sorted(flat) == sorted(id(p) for p in model.parameters())


def test_a_run_logs_learning_speed_per_layer_at_the_log_cadence(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "logger=none", "progress=false", "probe=none", "task=adding", "seq_len=6", "model.num_layers=2",
            "model.hidden_size=8", "batch_size=8", "eval_size=16", "steps=4", "log_every=1", "eval_every=2",
            "grad_clip=0.05"])
    train(cfg, RunInfo(run_dir=tmp_path, name="run"))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert not any(k.startswith("train/") for k in rows[0])  # step 0: no update yet
    for r in rows[1:]:
        groups = ("l0", "l1", "readout")
        # log_every=1: train/grad_norm is that very step's pre-clip norm, which the groups add up to
        total = math.sqrt(sum(r[f"train/grad_norm/{g}"] ** 2 for g in groups))
        assert total == pytest.approx(r["train/grad_norm"], rel=1e-5) and total > 0.05
        assert all(0 < r[f"train/update_ratio/{g}"] < 1 and r[f"train/weight_norm/{g}"] > 0 for g in groups)
