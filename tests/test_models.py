"""The model interface: fused and step paths agree, taps give the total derivative, inits do what they say."""
from functools import partial

import pytest
import torch

from seqlab.checks import ConfigError
from seqlab.models import GRULayer, LSTMLayer, RNNLayer, SequenceModel

LAYERS = {
    "rnn-tanh": partial(RNNLayer, activation="tanh"),
    "rnn-relu": partial(RNNLayer, activation="relu"),
    "rnn-sigmoid": partial(RNNLayer, activation="sigmoid"),
    "rnn-identity": partial(RNNLayer, activation="identity", init="orthogonal", recurrent_gain=0.9),
    "lstm": LSTMLayer,
    "gru": GRULayer,
}


def model(name, layers=2, H=16, D=3, O=2, seed=0):
    torch.manual_seed(seed)
    return SequenceModel(LAYERS[name], input_size=D, output_size=O, hidden_size=H, num_layers=layers)


@pytest.mark.parametrize("name", LAYERS)
def test_fused_and_step_paths_agree(name):
    m = model(name).double()
    x = torch.randn(5, 40, 3, dtype=torch.float64)
    fused, step = m(x), m(x, path="step")
    assert fused.shape == (5, 40, 2)
    torch.testing.assert_close(fused, step, rtol=1e-9, atol=1e-10)
    # and their parameter gradients agree too
    g_fused = torch.autograd.grad(fused.square().sum(), list(m.parameters()))
    g_step = torch.autograd.grad(m(x, path="step").square().sum(), list(m.parameters()))
    for a, b in zip(g_fused, g_step):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", ["rnn-tanh", "lstm"])
def test_readout_at_chosen_steps_only(name):
    # what the training loop asks for: the loss steps' outputs and gradients as with a full readout
    m = model(name).double()
    x = torch.randn(5, 40, 3, dtype=torch.float64)
    steps = torch.tensor([7, 39])
    full, some = m(x), m(x, steps=steps)
    assert some.shape == full.shape
    torch.testing.assert_close(some[:, steps], full[:, steps], rtol=1e-12, atol=1e-12)
    assert not some[:, :7].any() and not some[:, 8:39].any()
    g_full = torch.autograd.grad(full[:, steps].square().sum(), list(m.parameters()))
    g_some = torch.autograd.grad(m(x, steps=steps)[:, steps].square().sum(), list(m.parameters()))
    for a, b in zip(g_full, g_some):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m(x, steps=torch.arange(40)), full)  # every step: the plain readout


@pytest.mark.parametrize("name", LAYERS)
def test_zero_taps_leave_outputs_unchanged_and_see_every_state(name):
    m = model(name).double()
    x = torch.randn(4, 12, 3, dtype=torch.float64)
    taps = m.make_taps(4, 12)
    taps = [{k: v.double().detach().requires_grad_() for k, v in d.items()} for d in taps]
    out = m(x, taps=taps)
    torch.testing.assert_close(out, m(x))
    assert [set(d) for d in taps] == [set(layer.state_names) for layer in m.layers]
    loss = out[:, -1].square().sum()  # loss at the last step only
    grads = torch.autograd.grad(loss, [t for d in taps for t in d.values()])
    for g in grads:  # the total derivative reaches every step, not just the last
        assert g.shape == (4, 12, 16) and (g.abs().sum(dim=(0, 2)) > 0).all()


def test_tap_gradient_is_the_total_derivative():
    """Perturbing h_t by eps along a direction changes the loss by eps * <dL/dh_t, direction>."""
    m = model("lstm", layers=1, H=6).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64)
    taps = [{k: torch.zeros(2, 9, 6, dtype=torch.float64, requires_grad=True) for k in ("h", "c")}]
    loss = lambda tp: m(x, taps=tp)[:, -1].square().sum()
    g = torch.autograd.grad(loss(taps), taps[0]["c"])[0]
    eps, t = 1e-6, 3
    bumped = [{k: v.detach().clone() for k, v in taps[0].items()}]
    bumped[0]["c"][:, t] += eps
    fd = (loss(bumped) - loss([{k: v.detach() for k, v in taps[0].items()}])) / eps
    assert float(fd.detach()) == pytest.approx(float(g[:, t].sum()), rel=1e-4)


@pytest.mark.parametrize("layer, gates", [(RNNLayer, 1), (LSTMLayer, 4), (GRULayer, 3)])
@pytest.mark.parametrize("rho", [0.5, 1.0, 1.5])
def test_orthogonal_and_identity_init(layer, gates, rho):
    H = 8
    m = layer(input_size=2, hidden_size=H, init="orthogonal", recurrent_gain=rho)
    W = next(p for n, p in m.named_parameters() if "weight_hh" in n).detach()
    assert W.shape == (gates * H, H)
    for block in W.split(H):
        torch.testing.assert_close(block.T @ block, rho**2 * torch.eye(H), atol=1e-5, rtol=1e-5)
    m = layer(input_size=2, hidden_size=H, init="identity", recurrent_gain=rho)
    W = next(p for n, p in m.named_parameters() if "weight_hh" in n).detach()
    for block in W.split(H):
        torch.testing.assert_close(block, rho * torch.eye(H))


def test_same_seed_same_model():
    a, b = model("gru", seed=3), model("gru", seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = model("gru", seed=4)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("make, key", [
    (lambda: RNNLayer(2, 4, activation="swish"), "model.layer.activation"),
    (lambda: RNNLayer(2, 4, init="magic"), "model.layer.init"),
    (lambda: SequenceModel(RNNLayer, 2, 1, hidden_size=0), "model.hidden_size"),
    (lambda: SequenceModel(RNNLayer, 2, 1, num_layers=0), "model.num_layers"),
])
def test_bad_model_options_name_the_key(make, key):
    with pytest.raises(ConfigError, match=rf"^{key}="):
        make()
