"""Batch normalization (issue 10, item 6): recurrent batch norm for the LSTM (Cooijmans et al.
2016), BN between stacked layers, BN in the MLP; train mode uses batch statistics, eval mode
the running ones; the probe (train mode) leaves the running statistics untouched, so training
is bit-identical with the probe on or off; a batch of one is refused with one line.
"""
import math
from functools import partial

import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.config import validate
from seqlab.models import BNLSTMLayer, FeedforwardLayer, GRULayer, LSTMLayer, RNNLayer, SequenceModel
from seqlab.models.bnlstm import TimeBatchNorm
from seqlab.probe import ProbeSettings, probe
from seqlab.tasks import Adding, RandomLabels
from seqlab.train import RunInfo, train

EPS = 1e-5


def bn(z, gamma, beta=0.0, mean=None, var=None):
    """Reference BN over the batch dim (biased variance), or with given statistics."""
    mean = z.mean(0) if mean is None else mean
    var = z.var(0, unbiased=False) if var is None else var
    return (z - mean) / torch.sqrt(var + EPS) * gamma + beta


def reference_bnlstm(layer, x, stats=None):
    """Cooijmans et al. 2016 eqs. (6)-(8), written out; ``stats(name, t)`` -> (mean, var) for eval."""
    m = layer.lstm
    b = m.bias_ih_l0 + m.bias_hh_l0
    B, T, _ = x.shape
    H = layer.hidden_size
    h = c = x.new_zeros(B, H)
    out = []
    for t in range(T):
        kw = (lambda name: {}) if stats is None else (lambda name: dict(zip(("mean", "var"), stats(name, t))))
        gates = (bn(x[:, t] @ m.weight_ih_l0.T, layer.bn_x.weight, **kw("bn_x"))
                 + bn(h @ m.weight_hh_l0.T, layer.bn_h.weight, **kw("bn_h")) + b)
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(bn(c, layer.bn_c.weight, layer.bn_c.bias, **kw("bn_c")))
        out.append(h)
    return torch.stack(out, 1)


def bnlstm(D=3, H=6, tmax=10, seed=0):
    torch.manual_seed(seed)
    return BNLSTMLayer(D, H, tmax=tmax).double()


def test_bnlstm_train_mode_is_the_papers_equations_with_per_step_batch_statistics():
    layer = bnlstm()
    assert all(torch.equal(n.weight.float(), torch.full(n.weight.shape, 0.1)) for n in (layer.bn_x, layer.bn_h, layer.bn_c))
    assert layer.bn_x.bias is None and layer.bn_h.bias is None and not layer.bn_c.bias.any()  # beta_x = beta_h = 0
    x = torch.randn(16, 7, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference_bnlstm(layer, x), rtol=1e-10, atol=1e-12)


def test_bnlstm_eval_mode_uses_running_statistics_per_step_clamped_past_the_last_trained_step():
    layer = bnlstm(tmax=10)
    T_train = 4
    for seed in range(3):  # a few training-mode passes to move the running statistics
        layer(torch.randn(32, T_train, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    assert int(layer.bn_h.steps_seen) == T_train
    layer.eval()
    x = torch.randn(1, 7, 3, dtype=torch.float64)  # one sequence, longer than in training
    before = {k: v.clone() for k, v in layer.state_dict().items()}

    def stats(name, t):
        norm = getattr(layer, name)
        s = min(t, T_train - 1)
        return norm.running_mean[s], norm.running_var[s]

    torch.testing.assert_close(layer(x), reference_bnlstm(layer, x, stats), rtol=1e-10, atol=1e-12)
    assert all(torch.equal(v, layer.state_dict()[k]) for k, v in before.items())  # eval does not track


def test_time_batch_norm_tracks_each_step_with_torchs_momentum_rule():
    norm = TimeBatchNorm(5, tmax=3, gamma=1.0).double()
    z = torch.randn(8, 4, 5, dtype=torch.float64)  # T = 4 > tmax: step 3 normalized but not tracked
    out = norm(z)
    torch.testing.assert_close(out, bn(z, 1.0), rtol=1e-10, atol=1e-12)  # per-step batch statistics
    torch.testing.assert_close(norm.running_mean, 0.1 * z.mean(0)[:3])
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * z.var(0, unbiased=True)[:3])
    assert int(norm.steps_seen) == 3
    # one step at a time gives the same as all steps at once
    step_norm = TimeBatchNorm(5, tmax=3, gamma=1.0).double()
    steps = torch.stack([step_norm(z[:, t], t) for t in range(4)], 1)
    torch.testing.assert_close(steps, out)
    torch.testing.assert_close(step_norm.running_var, norm.running_var)


@pytest.mark.parametrize("layer, between", [
    (partial(BNLSTMLayer, tmax=12), "none"), (partial(BNLSTMLayer, tmax=12), "batch"),
    (RNNLayer, "batch"), (RNNLayer, "layer"), (LSTMLayer, "batch"), (GRULayer, "batch"),
    (partial(RNNLayer, activation="sigmoid"), "batch"),
])
@pytest.mark.parametrize("residual", [False, True])
def test_fast_path_equals_step_path_for_every_new_recurrent_option(layer, between, residual):
    torch.manual_seed(0)
    m = SequenceModel(layer, input_size=3, output_size=2, hidden_size=6, num_layers=3, residual=residual,
                      between=between).double()
    x = torch.randn(5, 12, 3, dtype=torch.float64)
    fast, step = m(x), m(x, path="step")
    torch.testing.assert_close(fast, step, rtol=1e-9, atol=1e-11)
    params = list(m.parameters())
    g_fast = torch.autograd.grad(fast[:, -1].square().sum(), params)
    g_step = torch.autograd.grad(m(x, path="step")[:, -1].square().sum(), params)
    for a, b in zip(g_fast, g_step):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_between_batch_norm_normalizes_each_upper_layers_input_over_all_positions():
    torch.manual_seed(0)
    m = SequenceModel(RNNLayer, input_size=3, output_size=2, hidden_size=6, num_layers=2, between="batch").double()
    seen = []
    m.layers[1].register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    m(torch.randn(4, 9, 3, dtype=torch.float64))
    z = seen[0].reshape(-1, 6)  # (B*T, H): zero mean, unit (biased) variance per feature
    torch.testing.assert_close(z.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(6, dtype=torch.float64), atol=2e-3, rtol=0)  # var / (var + eps)
    assert len(m.between) == 1 and int(m.between[0].num_batches_tracked) == 1


MODELS = {
    "mlp-batch": (partial(FeedforwardLayer, norm="batch"), "none", RandomLabels(n_examples=40, input_dim=3, n_classes=2)),
    "mlp-between": (FeedforwardLayer, "batch", RandomLabels(n_examples=40, input_dim=3, n_classes=2)),
    "bnlstm": (partial(BNLSTMLayer, tmax=8), "none", Adding(seq_len=8)),
    "lstm-between": (LSTMLayer, "batch", Adding(seq_len=8)),
}


@pytest.mark.parametrize("name", MODELS)
def test_the_probe_leaves_running_statistics_untouched(name):
    layer, between, task = MODELS[name]
    torch.manual_seed(0)
    m = SequenceModel(layer, input_size=task.input_size, output_size=task.output_size, hidden_size=6,
                      num_layers=2, between=between)
    m(task.make_batch(16, torch.Generator().manual_seed(1)).inputs)  # running statistics away from init
    m.eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    settings = ProbeSettings(batch_size=8, lyapunov_k=2, lyapunov_warmup=1, lyapunov_steps=50)
    result = probe(m, task, settings.make_batch(task), settings)
    assert not m.training  # its mode restored
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(math.isfinite(g) and g > 0 for g in (result.curves.mean[key][0] for key in result.curves.keys))


def cfg_for(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "progress=false", *overrides])


@pytest.mark.parametrize("args", [
    ("model=bnlstm", "task=adding", "seq_len=6", "model.num_layers=2", "model.between=batch"),
    ("model=mlp", "model.layer.norm=batch", "task=random_labels", "task.n_examples=24", "task.input_dim=5"),
])
def test_training_is_bit_identical_with_the_probe_on_or_off(tmp_path, args):
    common = (*args, "steps=6", "eval_every=3", "log_every=3", "eval_size=16", "batch_size=8", "model.hidden_size=6")
    on = train(cfg_for(*common, "probe.every=2", "probe.batch_size=8", "probe.lyapunov_k=2", "probe.lyapunov_steps=0",
                       "probe.plots=false"), RunInfo(run_dir=tmp_path / "on", name="on"))
    off = train(cfg_for(*common, "probe=none"), RunInfo(run_dir=tmp_path / "off", name="off"))
    assert (tmp_path / "on" / "metrics.jsonl").read_text() == (tmp_path / "off" / "metrics.jsonl").read_text()
    assert on["final_loss"] == off["final_loss"] and on["status"] == off["status"] == "finished"
    a = torch.load(tmp_path / "on" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "off" / "checkpoint.pt", weights_only=False)["model"]
    assert any("running_mean" in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("overrides, key", [
    (("model=bnlstm", "batch_size=1"), "batch_size"),
    (("model=mlp", "task=random_labels", "model.layer.norm=batch", "batch_size=1"), "batch_size"),
    (("model=rnn", "model.num_layers=2", "model.between=batch", "probe.batch_size=1"), "probe.batch_size"),
    (("model=bnlstm", "model.layer.tmax=0"), "model.layer.tmax"),
    (("model=bnlstm", "model.layer.gamma=big"), "model.layer.gamma"),
    (("model=lstm", "model.between=group"), "model.between"),
])
def test_bad_combinations_give_one_line(overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as err:
        validate(cfg_for(*overrides))
    assert "\n" not in str(err.value)
