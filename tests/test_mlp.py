"""The feedforward family (model=mlp): the T = 1 case of the lab's one model interface.

Depth 1 to 100 trains and is probed; the fast path equals the step path; the taps sit on
each layer's post-activation output before the residual add; the parameters are drawn in
the classic nn.Sequential order; the init knobs do what conf/model/mlp.yaml says.
"""
import math
from functools import partial

import pytest
import torch
from torch import nn

from seqlab.checks import ConfigError
from seqlab.models import FeedforwardLayer, SequenceModel
from seqlab.models.activations import ACTIVATIONS
from seqlab.probe import ProbeSettings, gradient_curves, probe
from seqlab.tasks import RandomLabels


def mlp(depth=3, H=16, D=5, O=4, seed=0, residual=False, between="none", **layer):
    torch.manual_seed(seed)
    return SequenceModel(partial(FeedforwardLayer, **layer), input_size=D, output_size=O, hidden_size=H,
                         num_layers=depth, residual=residual, between=between)


VARIANTS = {
    "plain": {},
    "residual": {"residual": True},
    "batch": {"norm": "batch"},
    "layer": {"norm": "layer"},
    "between-batch": {"between": "batch"},
    "between-layer-residual": {"between": "layer", "residual": True},
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("T", [1, 6])
def test_fast_path_equals_step_path_outputs_and_gradients(variant, T):
    m = mlp(**VARIANTS[variant]).double()
    x = torch.randn(8, T, 5, dtype=torch.float64)
    fast, step = m(x), m(x, path="step")
    torch.testing.assert_close(fast, step, rtol=1e-12, atol=1e-12)
    params = list(m.parameters())
    g_fast = torch.autograd.grad(fast[:, -1].square().sum(), params)
    g_step = torch.autograd.grad(m(x, path="step")[:, -1].square().sum(), params)
    for a, b in zip(g_fast, g_step):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("residual", [False, True])
def test_each_tap_is_dL_dh_l_of_the_post_activation_output_before_the_skip(residual):
    """Independent computation: retain every layer's own output f(W x + b) and differentiate."""
    m = mlp(depth=4, residual=residual, activation="tanh").double()
    x = torch.randn(6, 1, 5, dtype=torch.float64)
    outs = []
    hooks = [layer.register_forward_hook(lambda mod, args, out: outs.append(out)) for layer in m.layers]
    y = m(x)  # fast path; forward hooks see each layer's output h_l (before SequenceModel adds the skip)
    for h in hooks:
        h.remove()
    expect = torch.autograd.grad(y.square().sum(), outs)
    taps = [{"h": t["h"].double().detach().requires_grad_()} for t in m.make_taps(6, 1)]
    got = torch.autograd.grad(m(x, taps=taps).square().sum(), [t["h"] for t in taps])
    for a, b in zip(got, expect):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # and the layer output is post-activation: tanh bounds it
    assert all(o.abs().max() < 1 for o in outs)


def test_parameters_are_drawn_like_the_classic_sequential_net():
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(100, 128), nn.Sigmoid(), nn.Linear(128, 128), nn.Sigmoid(),
                        nn.Linear(128, 128), nn.Sigmoid(), nn.Linear(128, 10))
    m = mlp(depth=3, H=128, D=100, O=10, activation="sigmoid")
    assert len(list(m.parameters())) == len(list(ref.parameters())) == 8
    for p, q in zip(m.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    x = torch.randn(7, 100)
    torch.testing.assert_close(m(x.unsqueeze(1))[:, 0], ref(x), rtol=0, atol=0)


@pytest.mark.parametrize("depth", [1, 100])
def test_depth_1_and_100_train_a_step_and_are_probed(depth):
    task = RandomLabels(n_examples=16, input_dim=6, n_classes=3)
    m = mlp(depth=depth, H=8, D=6, O=3, activation="relu", init="kaiming", residual=depth > 1)
    batch = task.make_batch(8, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    loss = task.loss(m(batch.inputs, steps=task.loss_steps), batch)
    loss.backward()
    opt.step()
    assert math.isfinite(loss.item()) and all(torch.isfinite(p).all() for p in m.parameters())
    result = probe(m, task, ProbeSettings(batch_size=8, lyapunov_k=2, lyapunov_steps=0).make_batch(task),
                   ProbeSettings(batch_size=8, lyapunov_k=2, lyapunov_steps=0))
    assert sorted(result.curves.keys) == sorted(f"h_l{i}" for i in range(depth))
    assert all(len(g) == 1 and g[0] > 0 for g in result.curves.mean.values())  # T = 1: lag 0 only


def test_on_a_sequence_it_is_memoryless_zero_gradient_at_every_lag_past_0():
    from seqlab.tasks import DelayedRecall

    task = DelayedRecall(seq_len=8, n_symbols=4)
    m = mlp(depth=2, H=8, D=task.input_size, O=4).double()
    batch = task.make_batch(5, torch.Generator().manual_seed(0))
    batch = type(batch)(batch.inputs.double(), batch.targets)
    curves = gradient_curves(m, task, batch)
    for g in curves.mean.values():
        assert g[0] > 0 and (g[1:] == 0).all()


@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "orthogonal"])
def test_init_reaches_every_layer_weight_matrix(scheme):
    base = mlp(depth=4, H=12, D=7)
    m = mlp(depth=4, H=12, D=7, init=scheme)
    for a, b in zip(base.layers, m.layers):
        assert not torch.equal(a.linear.weight, b.linear.weight)


def test_init_statistics_and_orthogonal_gain():
    torch.manual_seed(0)
    W = FeedforwardLayer(400, 300, init="kaiming").linear.weight.detach()
    assert W.var().item() == pytest.approx(2 / 400, rel=0.05)
    W = FeedforwardLayer(400, 300, init="xavier").linear.weight.detach()
    assert W.var().item() == pytest.approx(2 / 700, rel=0.05)
    for rho in (0.5, 1.0, 2.0):
        W = FeedforwardLayer(20, 20, init="orthogonal", gain=rho).linear.weight.detach()
        torch.testing.assert_close(torch.linalg.svdvals(W), torch.full((20,), rho), rtol=1e-5, atol=1e-5)
    W = FeedforwardLayer(30, 10, init="orthogonal", gain=0.5).linear.weight.detach()  # semi-orthogonal rows
    torch.testing.assert_close(W @ W.T, 0.25 * torch.eye(10), rtol=1e-5, atol=1e-5)


def test_default_init_is_torch_default_bit_for_bit():
    torch.manual_seed(3)
    ref = nn.Linear(9, 11)
    torch.manual_seed(3)
    layer = FeedforwardLayer(9, 11)
    assert torch.equal(layer.linear.weight, ref.weight) and torch.equal(layer.linear.bias, ref.bias)


@pytest.mark.parametrize("readout_init", ["xavier", "orthogonal"])
def test_readout_init(readout_init):
    a = mlp()
    torch.manual_seed(0)
    m = SequenceModel(FeedforwardLayer, input_size=5, output_size=4, hidden_size=16, num_layers=3,
                      readout_init=readout_init)
    assert not torch.equal(m.readout.weight, a.readout.weight)
    assert torch.equal(m.readout.bias, a.readout.bias)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_runs(activation):
    m = mlp(activation=activation)
    assert torch.isfinite(m(torch.randn(3, 1, 5))).all()


def test_batch_norm_uses_batch_statistics_in_train_and_running_ones_in_eval():
    m = mlp(depth=2, H=6, norm="batch")
    bn = m.layers[0].norm
    x = 3 + 2 * torch.randn(64, 1, 5)
    z = m.layers[0].linear(x)  # (B, 1, H)
    m.train()
    out = m.layers[0].input_drive(x)
    # train: normalized by the batch's own mean/var (biased), gamma = 1, beta = 0 at init
    expect = (z - z.mean((0, 1))) / torch.sqrt(z.var((0, 1), unbiased=False) + bn.eps)
    torch.testing.assert_close(out, expect, rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean, 0.1 * z.mean((0, 1)).detach(), rtol=1e-5, atol=1e-6)
    m.eval()
    out = m.layers[0].input_drive(x[:1])  # one example: only running statistics can serve
    expect = (z[:1] - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
    assert int(bn.num_batches_tracked) == 1  # eval does not update them


def test_min_batch_size_is_2_with_batch_norm():
    assert mlp().min_batch_size == 1 and mlp(norm="layer").min_batch_size == 1
    assert mlp(norm="batch").min_batch_size == 2 and mlp(between="batch").min_batch_size == 2


@pytest.mark.parametrize("make, key", [
    (lambda: FeedforwardLayer(3, 4, activation="swish"), "model.layer.activation"),
    (lambda: FeedforwardLayer(3, 4, init="identity"), "model.layer.init"),
    (lambda: FeedforwardLayer(3, 4, init="orthogonal", gain="big"), "model.layer.gain"),
    (lambda: FeedforwardLayer(3, 4, norm="group"), "model.layer.norm"),
    (lambda: SequenceModel(FeedforwardLayer, 3, 2, num_layers=2, between="batchnorm"), "model.between"),
    (lambda: SequenceModel(FeedforwardLayer, 3, 2, readout_init="identity"), "model.readout_init"),
])
def test_bad_options_name_the_key(make, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as err:
        make()
    assert "\n" not in str(err.value)
