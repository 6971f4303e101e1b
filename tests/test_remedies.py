"""The remedies as knobs of the rnn/lstm/gru cells: activations, inits, chrono, layer norm,
residual stacks, clipping by value. Each one: the two paths agree, the taps see every
state, and the remedy does what its paper says it does."""
import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.config import validate
from seqlab.models import GRULayer, LSTMLayer, RNNLayer, SequenceModel
from seqlab.models.activations import ACTIVATIONS
from seqlab.train import RunInfo, train

OPTIONS = {
    **{f"rnn-{a}": partial(RNNLayer, activation=a) for a in ACTIVATIONS},
    **{f"rnn-{i}": partial(RNNLayer, init=i, recurrent_gain=0.9) for i in ("xavier", "kaiming")},
    "rnn-ln": partial(RNNLayer, layer_norm=True),
    "rnn-relu-ln": partial(RNNLayer, activation="relu", layer_norm=True, init="identity"),
    "lstm-chrono": partial(LSTMLayer, chrono=True, chrono_tmax=30),
    "lstm-forget1": partial(LSTMLayer, forget_bias=1.0, init="xavier"),
    "lstm-ln": partial(LSTMLayer, layer_norm=True),
    "lstm-ln-chrono": partial(LSTMLayer, layer_norm=True, chrono=True, chrono_tmax=30, init="orthogonal"),
    "gru-chrono": partial(GRULayer, chrono=True, chrono_tmax=30),
    "gru-update1": partial(GRULayer, update_bias=1.0, init="kaiming", recurrent_gain=0.5),
    "gru-ln": partial(GRULayer, layer_norm=True),
}


def model(name, layers=2, H=12, D=3, O=2, seed=0, residual=True):
    torch.manual_seed(seed)
    return SequenceModel(OPTIONS[name], input_size=D, output_size=O, hidden_size=H, num_layers=layers,
                         residual=residual).double()


@pytest.mark.parametrize("name", OPTIONS)
def test_fast_and_step_paths_agree_outputs_and_gradients(name):
    m = model(name)
    x = torch.randn(4, 25, 3, dtype=torch.float64)
    fast, step = m(x), m(x, path="step")
    torch.testing.assert_close(fast, step, rtol=1e-9, atol=1e-10)
    params = list(m.parameters())
    g_fast = torch.autograd.grad(fast[:, -1].square().sum(), params)
    g_step = torch.autograd.grad(m(x, path="step")[:, -1].square().sum(), params)
    for a, b in zip(g_fast, g_step):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", OPTIONS)
def test_taps_on_every_state_change_nothing_and_all_get_gradient(name):
    m = model(name)
    x = torch.randn(3, 10, 3, dtype=torch.float64)
    taps = [{k: torch.zeros(3, 10, 12, dtype=torch.float64, requires_grad=True) for k in layer.state_names}
            for layer in m.layers]
    out = m(x, taps=taps)
    torch.testing.assert_close(out, m(x))
    grads = torch.autograd.grad(out[:, -1].square().sum(), [t for d in taps for t in d.values()])
    for g in grads:  # loss at the last step only; the total derivative reaches every earlier step
        assert (g.abs().sum(dim=(0, 2)) > 0).all()


# --- activations -------------------------------------------------------------------------

def test_sigmoid_rnn_gradient_shrinks_at_least_4x_per_step_with_unit_norm_weights():
    """Hochreiter 1991: sigmoid' <= 1/4, so with ||W_hh|| = 1 each step back divides ||dL/dh|| by >= 4."""
    torch.manual_seed(0)
    m = SequenceModel(partial(RNNLayer, activation="sigmoid", init="orthogonal"), 2, 1, hidden_size=16).double()
    T = 12
    x = torch.randn(5, T, 2, dtype=torch.float64)
    taps = m.make_taps(5, T)
    taps = [{k: v.double().detach().requires_grad_() for k, v in d.items()} for d in taps]
    (g,) = torch.autograd.grad(m(x, taps=taps)[:, -1].sum(), taps[0]["h"])
    norms = g.norm(dim=2)  # (B, T)
    assert (norms[:, :-1] <= 0.25 * norms[:, 1:] * (1 + 1e-12)).all()


@pytest.mark.parametrize("name, f, z, expect", [
    ("leaky_relu", ACTIVATIONS["leaky_relu"], [-2.0, 3.0], [-0.02, 3.0]),
    ("gelu", ACTIVATIONS["gelu"], [0.0, 1.0], [0.0, 0.5 * (1 + math.erf(1 / math.sqrt(2)))]),
    ("identity", ACTIVATIONS["identity"], [-1.5, 2.0], [-1.5, 2.0]),
])
def test_activation_formulas(name, f, z, expect):
    torch.testing.assert_close(f(torch.tensor(z, dtype=torch.float64)), torch.tensor(expect, dtype=torch.float64))


# --- inits -------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, gates", [(RNNLayer, 1), (LSTMLayer, 4), (GRULayer, 3)])
@pytest.mark.parametrize("scheme, variance", [("xavier", 1.0), ("kaiming", 2.0)])  # times 1/H
def test_xavier_and_kaiming_give_their_variance_per_block(layer, gates, scheme, variance):
    H, rho = 200, 0.7
    torch.manual_seed(0)
    W = next(p for n, p in layer(2, H, init=scheme, recurrent_gain=rho).named_parameters() if "weight_hh" in n)
    assert W.shape == (gates * H, H)
    for block in W.detach().split(H):
        assert float(block.mean()) == pytest.approx(0.0, abs=0.01 * rho)
        assert float(block.var()) == pytest.approx(rho**2 * variance / H, rel=0.03)
    if scheme == "xavier":  # uniform on [-a, a], a = sqrt(6 / 2H)
        assert float(W.detach().abs().max()) <= rho * math.sqrt(3 / H) + 1e-7


@pytest.mark.parametrize("layer, gates", [(RNNLayer, 1), (LSTMLayer, 4), (GRULayer, 3)])
def test_orthogonal_and_identity_init_per_block_with_layer_norm_too(layer, gates):
    H, rho = 10, 1.3
    for scheme, expect in [("orthogonal", None), ("identity", rho * torch.eye(H))]:
        m = layer(2, H, init=scheme, recurrent_gain=rho, layer_norm=True)
        W = next(p for n, p in m.named_parameters() if "weight_hh" in n).detach()
        for block in W.split(H):
            if expect is None:
                torch.testing.assert_close(block.T @ block, rho**2 * torch.eye(H), atol=1e-5, rtol=1e-5)
            else:
                torch.testing.assert_close(block, expect)


def _total_bias(module, gate, H):
    b = module.bias_ih_l0 + module.bias_hh_l0
    return b[gate * H:(gate + 1) * H].detach()


@pytest.mark.parametrize("layer_norm", [False, True])
def test_lstm_chrono_init(layer_norm):
    """Tallec & Ollivier 2018: b_f ~ log U[1, Tmax - 1], b_i = -b_f (total biases b_ih + b_hh)."""
    H, tmax = 400, 50
    torch.manual_seed(0)
    m = LSTMLayer(2, H, chrono=True, chrono_tmax=tmax, layer_norm=layer_norm)
    b_i, b_f = _total_bias(m.lstm, 0, H), _total_bias(m.lstm, 1, H)
    assert float(b_f.min()) >= 0.0 and float(b_f.max()) <= math.log(tmax - 1)
    torch.testing.assert_close(b_i, -b_f)
    # exp(b_f) is uniform on [1, Tmax - 1]: its mean is Tmax / 2, and the range is covered
    assert float(b_f.exp().mean()) == pytest.approx(tmax / 2, rel=0.08)
    assert float(b_f.min()) < 0.1 and float(b_f.max()) > math.log(tmax - 1) - 0.05


def test_lstm_constant_forget_bias_and_gru_update_bias_and_chrono():
    H = 300
    torch.manual_seed(0)
    lstm = LSTMLayer(2, H, forget_bias=1.0)
    torch.testing.assert_close(_total_bias(lstm.lstm, 1, H), torch.ones(H))
    gru = GRULayer(2, H, update_bias=2.0)
    torch.testing.assert_close(_total_bias(gru.gru, 1, H), 2 * torch.ones(H))
    gru = GRULayer(2, H, chrono=True, chrono_tmax=20)
    b_z = _total_bias(gru.gru, 1, H)
    assert float(b_z.min()) >= 0 and float(b_z.max()) <= math.log(19)
    assert float(b_z.exp().mean()) == pytest.approx(10, rel=0.08)


def test_chrono_gates_start_with_the_memory_they_promise():
    """With chrono and no input, an LSTM unit's cell decays as sigmoid(b_f)^t: slowest units last ~Tmax."""
    torch.manual_seed(0)
    H, tmax = 64, 100
    m = LSTMLayer(1, H, chrono=True, chrono_tmax=tmax).double()
    with torch.no_grad():
        m.lstm.weight_hh_l0.zero_()
        m.lstm.weight_ih_l0.zero_()
    f = torch.sigmoid(_total_bias(m.lstm, 1, H).double())
    memory = 1 / (1 - f)  # characteristic forgetting time of each unit
    assert float(memory.min()) >= 2 - 1e-9 and float(memory.max()) <= tmax + 1e-9


# --- layer norm --------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [RNNLayer, LSTMLayer, GRULayer])
def test_layer_norm_makes_the_cell_blind_to_the_scale_of_its_weights(layer):
    """Ba et al. 2016: the normalized pre-activations do not change when W_ih and W_hh are scaled."""
    torch.manual_seed(0)
    m = layer(3, 8, layer_norm=True).double()
    for norm in m.modules():  # LN's eps (1e-5 on the variance) is the only thing that sees the scale
        if hasattr(norm, "eps"):
            norm.eps = 1e-14
    x = torch.randn(2, 15, 3, dtype=torch.float64)
    before = m(x)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "weight_ih" in name or "weight_hh" in name:
                p.mul_(7.0)
    torch.testing.assert_close(m(x), before, rtol=1e-7, atol=1e-9)
    plain = layer(3, 8).double()  # without the norm, the same scaling changes everything
    before = plain(x)
    with torch.no_grad():
        for name, p in plain.named_parameters():
            if "weight" in name:
                p.mul_(7.0)
    assert (plain(x) - before).abs().max() > 5e-2


# --- residual ----------------------------------------------------------------------------

def test_residual_form():
    """x_1 = layer_0(x_0); x_{l+1} = x_l + layer_l(x_l) for l >= 1; readout(x_L)."""
    torch.manual_seed(0)
    m = SequenceModel(RNNLayer, input_size=3, output_size=2, hidden_size=6, num_layers=3, residual=True).double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    x1 = m.layers[0](x)
    x2 = x1 + m.layers[1](x1)
    x3 = x2 + m.layers[2](x2)
    torch.testing.assert_close(m(x), m.readout(x3))
    torch.testing.assert_close(m(x, path="step"), m.readout(x3))
    plain = SequenceModel(RNNLayer, input_size=3, output_size=2, hidden_size=6, num_layers=3).double()
    plain.load_state_dict(m.state_dict())
    assert (plain(x) - m(x)).abs().max() > 1e-3
    one = SequenceModel(RNNLayer, input_size=3, output_size=2, hidden_size=6, residual=True).double()
    one_plain = SequenceModel(RNNLayer, input_size=3, output_size=2, hidden_size=6).double()
    one_plain.load_state_dict(one.state_dict())
    torch.testing.assert_close(one(x), one_plain(x))  # one layer: no skip to add


def test_residual_gives_the_lower_layer_a_direct_path_to_the_loss():
    """With a skip, dL/dx_1 = dL/dx_2 (identity) + the path through layer 1, so the lower layer's
    taps get gradient even when the upper layer's recurrent path is cut (W_ih of layer 1 zero)."""
    torch.manual_seed(0)
    for residual, expect_zero in [(False, True), (True, False)]:
        m = SequenceModel(RNNLayer, 2, 1, hidden_size=5, num_layers=2, residual=residual).double()
        with torch.no_grad():
            m.layers[1].rnn.weight_ih_l0.zero_()
        x = torch.randn(2, 6, 2, dtype=torch.float64)
        taps = [{"h": torch.zeros(2, 6, 5, dtype=torch.float64, requires_grad=True)} for _ in range(2)]
        (g,) = torch.autograd.grad(m(x, taps=taps)[:, -1].sum(), taps[0]["h"])
        assert (g.abs().max() == 0) == expect_zero


# --- bad options -------------------------------------------------------------------------

@pytest.mark.parametrize("make, key", [
    (lambda: RNNLayer(2, 4, activation="swish"), "model.layer.activation"),
    (lambda: RNNLayer(2, 4, init="he"), "model.layer.init"),
    (lambda: RNNLayer(2, 4, layer_norm="yes"), "model.layer.layer_norm"),
    (lambda: LSTMLayer(2, 4, init="glorot"), "model.layer.init"),
    (lambda: LSTMLayer(2, 4, chrono=True, chrono_tmax=2), "model.layer.chrono_tmax"),
    (lambda: LSTMLayer(2, 4, chrono=True), "model.layer.chrono_tmax"),
    (lambda: LSTMLayer(2, 4, chrono=True, chrono_tmax=10, forget_bias=1.0), "model.layer.forget_bias"),
    (lambda: LSTMLayer(2, 4, chrono="on", chrono_tmax=10), "model.layer.chrono"),
    (lambda: LSTMLayer(2, 4, forget_bias="big"), "model.layer.forget_bias"),
    (lambda: GRULayer(2, 4, chrono=True, chrono_tmax=10, update_bias=1.0), "model.layer.update_bias"),
    (lambda: GRULayer(2, 4, layer_norm=1), "model.layer.layer_norm"),
    (lambda: SequenceModel(RNNLayer, 2, 1, residual="yes"), "model.residual"),
])
def test_bad_options_name_the_key(make, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as err:
        make()
    assert "\n" not in str(err.value) and "must" in str(err.value)


# --- through Hydra and the training loop -------------------------------------------------

def _cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "progress=false", *overrides])


@pytest.mark.parametrize("override, key", [
    ("model.layer.activation=foo", "model.layer.activation"),
    ("model.layer.init=foo", "model.layer.init"),
    ("grad_clip_value=0", "grad_clip_value"),
    ("grad_clip_value=-1", "grad_clip_value"),
    ("model.residual=maybe", "model.residual"),
])
def test_bad_overrides_fail_validation_in_one_line(override, key):
    with pytest.raises(ConfigError, match=rf"^{key}="):
        validate(_cfg(override))


def test_chrono_tmax_follows_seq_len():
    cfg = _cfg("model=lstm", "seq_len=77")
    assert cfg.model.layer.chrono_tmax == 77


def _train(tmp_path, name, *overrides):
    # the probe runs, cheaply: no figures, no 3500-step Lyapunov spectrum (neither is asserted here)
    cfg = _cfg("task=adding", "seq_len=12", "steps=3", "eval_every=3", "log_every=1", "eval_size=16",
               "batch_size=8", "model.hidden_size=8", "probe.plots=false", "probe.lyapunov_steps=0", *overrides)
    summary = train(cfg, RunInfo(run_dir=tmp_path / name, name=name))
    rows = [json.loads(r) for r in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


@pytest.mark.parametrize("overrides", [
    ("model=rnn", "model.layer.activation=gelu", "model.layer.layer_norm=true", "model.num_layers=2",
     "model.residual=true", "model.layer.init=kaiming"),
    ("model=lstm", "model.layer.chrono=true", "model.layer.layer_norm=true", "grad_clip_value=0.5"),
    ("model=gru", "model.layer.chrono=true", "model.layer.init=xavier", "grad_clip=1.0", "grad_clip_value=0.1"),
], ids=["rnn", "lstm", "gru"])
def test_remedy_combinations_train_with_finite_loss(tmp_path, overrides):
    summary, rows = _train(tmp_path, "r", *overrides)
    assert summary["status"] == "finished" and math.isfinite(summary["final_loss"])


def test_clip_by_value_changes_the_update_but_not_the_logged_preclip_norm(tmp_path):
    free = _train(tmp_path, "free", "optim=sgd", "steps=1", "eval_every=1")[1]
    clipped = _train(tmp_path, "clipped", "optim=sgd", "steps=1", "eval_every=1", "grad_clip_value=1e-6")[1]
    assert free[-1]["train/grad_norm"] == pytest.approx(clipped[-1]["train/grad_norm"], rel=1e-6)
    assert free[-1]["train/grad_norm"] > 1e-4  # far above what clipping at 1e-6 per entry leaves
    assert free[-1]["eval/loss"] != clipped[-1]["eval/loss"]


# --- the named presets of conf/remedy/ (the probe sweep) ----------------------------------

REMEDIES = sorted(p.stem for p in (Path(CONF_DIR) / "remedy").glob("*.yaml"))


@pytest.mark.parametrize("name", REMEDIES)
def test_every_remedy_preset_composes_and_validates(name):
    cfg = _cfg(f"remedy={name}", "seq_len=20")
    validate(cfg)
    assert cfg.model.layer._target_.startswith("seqlab.models.")


@pytest.mark.parametrize("name, model_target, check", [
    ("irnn", "RNNLayer", lambda c: c.model.layer.activation == "relu" and c.model.layer.init == "identity"),
    ("lstm_chrono", "LSTMLayer", lambda c: c.model.layer.chrono and c.model.layer.chrono_tmax == c.seq_len),
    ("gru_layernorm", "GRULayer", lambda c: c.model.layer.layer_norm),
    ("rnn_stack2_residual", "RNNLayer", lambda c: c.model.num_layers == 2 and c.model.residual),
    ("rnn_clip_norm", "RNNLayer", lambda c: c.grad_clip == 1.0),
    ("rnn_clip_value", "RNNLayer", lambda c: c.grad_clip_value == 0.1),
    ("lru", "LRULayer", lambda c: True),
])
def test_a_remedy_sets_what_it_names_and_the_command_line_still_wins(name, model_target, check):
    cfg = _cfg(f"remedy={name}")
    assert cfg.model.layer._target_ == f"seqlab.models.{model_target}" and check(cfg)
    assert _cfg(f"remedy={name}", "model.hidden_size=6", "grad_clip=3").model.hidden_size == 6
    assert _cfg(f"remedy={name}", "grad_clip=3").grad_clip == 3
