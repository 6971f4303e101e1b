"""Signed transitions for the input-gated linear recurrences (Grazzi et al. 2025) and evaluation at other lengths."""
from __future__ import annotations

import json
import math
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.models import MinGRULayer, MinLSTMLayer, SelectiveLayer, SequenceModel
from seqlab.models import scan as scans
from seqlab.train import RunInfo, train

SIGNED = {
    **{f"selective-{s}": partial(SelectiveLayer, state_size=3, scan=s, eigenvalues="signed") for s in scans.LINEAR},
    **{f"mingru-{s}": partial(MinGRULayer, scan=s, eigenvalues="signed") for s in scans.LINEAR},
    **{f"minlstm-{s}": partial(MinLSTMLayer, scan=s, eigenvalues="signed") for s in scans.LINEAR},
}


def _signed_model(name):
    torch.manual_seed(0)
    m = SequenceModel(SIGNED[name], input_size=3, output_size=2, hidden_size=6, num_layers=2, residual=True).double()
    for layer in m.layers:  # large steps: exp(Delta A) -> 0, so the selective a = 2 exp(Delta A) - 1 reaches below 0
        if isinstance(layer, SelectiveLayer):
            with torch.no_grad():
                layer.dt_proj.bias.fill_(2.0)
    return m


@pytest.mark.parametrize("name", SIGNED)
def test_signed_fast_paths_equal_the_step_path(name):
    m = _signed_model(name)
    x = torch.randn(3, 23, 3, dtype=torch.float64)
    fast, step = m(x), m(x, path="step")
    torch.testing.assert_close(fast, step, rtol=1e-9, atol=1e-11)
    params = list(m.parameters())
    for a, b in zip(torch.autograd.grad(fast[:, -1].square().sum(), params),
                    torch.autograd.grad(step[:, -1].square().sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


def test_signed_selective_jacobian_is_2_exp_delta_a_minus_1_and_reaches_negative():
    torch.manual_seed(0)
    layer = SelectiveLayer(2, 4, state_size=3, eigenvalues="signed").double()
    with torch.no_grad():
        layer.dt_proj.bias.fill_(2.0)  # Delta ~ 2: exp(-2 (n + 1)) small, a near -1
    x = torch.randn(1, 5, 2, dtype=torch.float64)
    drive = layer.input_drive(x)[:, 2]
    h = torch.randn(1, 12, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda s: layer.step(drive, (s,))[0], h).reshape(12, 12)
    _, delta, _, _ = layer.project(x)
    expect = (2 * torch.exp(delta[0, 2].unsqueeze(-1) * -torch.exp(layer.A_log.double())) - 1).flatten().detach()
    torch.testing.assert_close(J, torch.diag(expect))
    assert (expect < 0).any() and (expect > -1).all() and (expect < 1).all()


def test_signed_mingru_transition_is_1_minus_2z():
    torch.manual_seed(0)
    layer = MinGRULayer(2, 4, eigenvalues="signed").double()
    x = torch.randn(1, 7, 2, dtype=torch.float64)
    a, _ = layer.coefficients(layer.project(x))
    z = torch.sigmoid(layer.project(x)[..., :4])
    torch.testing.assert_close(a, 1 - 2 * z)
    assert (a < 0).any() and (a > 0).any()  # z = 1/2 at the centre of the init: both signs


def test_signed_minlstm_transition_is_2_f_prime_minus_1_and_its_jacobian_too():
    torch.manual_seed(0)
    layer = MinLSTMLayer(2, 4, eigenvalues="signed").double()
    with torch.no_grad():
        layer.linear.weight.mul_(4.0)  # gates far from 1/2: a of both signs, near -1 and 1
    x = torch.randn(1, 7, 2, dtype=torch.float64)
    p = layer.project(x)
    a, b = layer.coefficients(p)
    k_f, k_i, v = p.chunk(3, dim=-1)
    f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
    torch.testing.assert_close(a, 2 * f / (f + i) - 1)  # the paper's normalized forget gate, stretched to (-1, 1)
    torch.testing.assert_close(b, i / (f + i) * layer.cand(v))  # the input side unchanged
    assert (a < 0).any() and (a > 0).any() and (a.abs() < 1).all()
    drive = layer.input_drive(x)[:, 3]
    h = torch.randn(1, 4, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda s: layer.step(drive, (s,))[0], h).reshape(4, 4)
    torch.testing.assert_close(J, torch.diag(a[0, 3]))  # dh_t/dh_(t-1) = diag(2 f' - 1)
    positive = MinLSTMLayer(2, 4).double()
    positive.load_state_dict(layer.state_dict())
    w, _ = positive.coefficients(p)  # the default: a = f' = 1 - i' in (0, 1)
    torch.testing.assert_close(1 - w, f / (f + i))


@pytest.mark.parametrize("make, key", [
    (lambda: SelectiveLayer(2, 4, eigenvalues="negative"), "model.layer.eigenvalues"),
    (lambda: MinGRULayer(2, 4, eigenvalues="complex"), "model.layer.eigenvalues"),
    (lambda: MinGRULayer(2, 4, scan="log", eigenvalues="signed"), "model.layer.scan"),
    (lambda: MinLSTMLayer(2, 4, eigenvalues="negative"), "model.layer.eigenvalues"),
    (lambda: MinLSTMLayer(2, 4, scan="log", eigenvalues="signed"), "model.layer.scan"),
])
def test_bad_eigenvalue_options_name_the_key(make, key):
    with pytest.raises(ConfigError, match=rf"^{key}="):
        make()


def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "progress=false", "probe=none", *overrides])


def test_eval_lengths_evaluate_the_same_model_at_other_lengths(tmp_path):
    from seqlab.config import setup
    from seqlab.tasks.parity import Parity
    from seqlab.train import evaluate

    cfg = _cfg("task=parity", "seq_len=6", "model=rnn", "model.hidden_size=8", "steps=2", "eval_every=1",
               "eval_size=16", "batch_size=4", "eval_lengths=[6,12]")
    summary = train(cfg, RunInfo(run_dir=tmp_path / "r", name="r"))
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all({"eval_len12/loss", "eval_len12/accuracy", "eval_len6/loss"} <= set(r) for r in rows)
    assert rows[-1]["eval_len6/loss"] == rows[-1]["eval/loss"]  # the training length itself: the same set
    assert set(summary["length_eval"]) == {"6", "12"} and summary["length_eval"]["12"]["loss"] == rows[-1]["eval_len12/loss"]
    # at step 0 the row's length-12 loss is the untrained model's loss on 12-bit strings, computed here on its own
    _, _, model = setup(cfg)  # the same seed: the same init
    task12 = Parity(seq_len=12)
    batch = task12.eval_batch(16, torch.Generator().manual_seed(cfg.eval_seed))
    assert rows[0]["eval_len12/loss"] == pytest.approx(evaluate(model, task12, batch)[0], rel=1e-6)
    assert batch.inputs.shape == (16, 12, 2)


def test_eval_lengths_on_a_task_without_seq_len_is_one_line(tmp_path):
    cfg = _cfg("task=random_labels", "model=mlp", "steps=1", "eval_lengths=[5]")
    with pytest.raises(ConfigError, match=r"^eval_lengths=\[5\]: task random_labels has no seq_len"):
        train(cfg, RunInfo(run_dir=tmp_path / "r", name="r"))
    with pytest.raises(ConfigError, match="eval_lengths"):
        from seqlab.config import validate
        validate(_cfg("task=parity", "eval_lengths=[1]"))


def test_variable_training_lengths_answer_once_per_string_at_its_own_length():
    from seqlab.tasks.parity import Parity

    task = Parity(seq_len=12, train_min_len=3)
    batch = task.make_batch(4000, torch.Generator().manual_seed(0))
    assert batch.mask.shape == (4000, 12) and (batch.mask.sum(1) == 1).all()  # one answer per string
    lengths = batch.mask.float().argmax(1) + 1
    assert set(lengths.tolist()) == set(range(3, 13))  # every length 3..T drawn
    bits = batch.inputs.argmax(-1)
    for i in range(50):
        L = int(lengths[i])
        assert batch.targets[i, L - 1] == bits[i, :L].sum() % 2  # the parity of the first L bits
        assert batch.lags[i, L - 1] == L - 1 and (batch.lags[i][~batch.mask[i]] == -1).all()
    held = task.eval_batch(64, torch.Generator().manual_seed(1))  # held out: the whole string, at the last step
    assert held.mask[:, -1].all() and held.mask.sum() == 64
    assert task.baseline == pytest.approx(math.log(2)) and task.lag == 11


def test_a_causal_models_masked_loss_is_its_loss_on_each_shorter_string_alone():
    from seqlab.models import RNNLayer
    from seqlab.tasks.parity import Parity

    torch.manual_seed(0)
    model = SequenceModel(RNNLayer, input_size=2, output_size=2, hidden_size=8).double()
    task = Parity(seq_len=9, train_min_len=3)
    batch = task.make_batch(6, torch.Generator().manual_seed(2))
    masked = task.loss(model(batch.inputs.double()), batch)
    lengths = (batch.mask.float().argmax(1) + 1).tolist()
    alone = []
    for i, L in enumerate(lengths):  # the string of length L on its own, answered at its last step
        short = Parity(seq_len=int(L))
        bits = batch.inputs[i:i + 1, :L].argmax(-1)
        from seqlab.tasks.parity import from_bits
        b = from_bits(bits)
        alone.append(short.loss(model(b.inputs.double()), b))
    assert float(masked) == pytest.approx(float(torch.stack(alone).mean()), rel=1e-12)


@pytest.mark.parametrize("kw, message", [
    (dict(train_min_len=1), "2..seq_len"), (dict(train_min_len=13), "2..seq_len"),
    (dict(train_min_len=3, every_step=True), "every_step=false"),
])
def test_bad_training_lengths_name_the_key(kw, message):
    from seqlab.tasks.parity import Parity

    with pytest.raises(ConfigError, match=rf"^task.train_min_len=.*{message}"):
        Parity(seq_len=12, **kw)


def test_a_run_trains_on_variable_lengths_and_is_held_out_at_its_length(tmp_path):
    cfg = _cfg("task=parity", "seq_len=8", "task.train_min_len=3", "model=mingru", "model.hidden_size=8",
               "model.layer.eigenvalues=signed", "steps=3", "eval_every=3", "eval_size=16", "batch_size=4",
               "eval_lengths=[16]", "probe=default", "probe.every=3", "probe.lyapunov_k=0", "probe.plots=false",
               "probe.batch_size=8")
    summary = train(cfg, RunInfo(run_dir=tmp_path / "r", name="r"))
    assert summary["status"] == "finished" and set(summary["length_eval"]) == {"16"}
    assert summary["baseline"] == pytest.approx(math.log(2))
