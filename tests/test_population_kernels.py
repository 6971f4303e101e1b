"""A population's recurrences with a hand-written backward (seqlab.models.members, issue 20): the same maps
and the same gradients as the cells' own step paths, member by member."""
import pytest
import torch
from torch.nn.utils.stateless import _reparametrize_module

from seqlab.models import GRULayer, LSTMLayer, RNNLayer
from seqlab.models.members import RNN_ACTIVATIONS

CELLS = {**{f"rnn_{f}": (RNNLayer, {"activation": f}) for f in RNN_ACTIVATIONS},
         "gru": (GRULayer, {}), "lstm": (LSTMLayer, {})}
M, B, T, D, H = 3, 2, 6, 3, 4


def stacked_layer(cell: str, dtype=torch.float64):
    """One template layer and its members' parameters stacked (M, ...), each member from its own seed."""
    cls, kw = CELLS[cell]
    layers = []
    for seed in range(M):
        torch.manual_seed(seed)
        layers.append(cls(D, H, **kw).to(dtype))
    names = [n for n, _ in layers[0].named_parameters()]
    params = {n: torch.stack([dict(l.named_parameters())[n] for l in layers]).detach().requires_grad_()
              for n in names}
    return layers[0], params


def run(layer, params, method: str, x, steps):
    """``layer.forward_members`` or ``layer.forward_steps`` on the stacked parameters."""
    with _reparametrize_module(layer, params):
        if method == "members":
            return layer.forward_members(x, steps)
        return layer.forward_steps(x, steps=steps)


@pytest.mark.parametrize("steps", [None, [2, 5], [3]], ids=["all", "two", "one"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_kernel_equals_the_step_path_and_passes_gradcheck(cell, steps):
    """Outputs (at every step, or at the loss steps only) and the gradients of the input and of every
    parameter equal the step path's in double precision; ``gradcheck`` against finite differences."""
    layer, params = stacked_layer(cell)
    steps = None if steps is None else torch.tensor(steps)
    x = torch.randn(M, B, T, D, dtype=torch.float64, requires_grad=True)
    names = list(params)

    def members(x, *ps):
        return run(layer, dict(zip(names, ps)), "members", x, steps)

    assert torch.autograd.gradcheck(members, (x, *params.values()))
    out, ref = members(x, *params.values()), run(layer, params, "steps", x, steps)
    assert out.shape == ref.shape == (M, B, T if steps is None else len(steps), H)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(ref)  # a loss that reads every output differently
    got = torch.autograd.grad((out * weights).sum(), (x, *params.values()))
    want = torch.autograd.grad((ref * weights).sum(), (x, *params.values()))
    for name, g, w in zip(["x", *names], got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_float32_gradients_agree_with_the_step_path_to_rounding(cell):
    layer, params = stacked_layer(cell, torch.float32)
    x = torch.randn(M, B, 40, D)
    got = torch.autograd.grad(run(layer, params, "members", x, torch.tensor([39])).square().sum(), list(params.values()))
    want = torch.autograd.grad(run(layer, params, "steps", x, torch.tensor([39])).square().sum(), list(params.values()))
    for name, g, w in zip(params, got, want):
        assert (g - w).abs().max() <= 1e-5 * w.abs().max(), name


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_every_parameter_gets_a_gradient_of_its_own(cell):
    """b_ih and b_hh enter the RNN's and the LSTM's maps as a sum, so their gradients are equal, but never
    one tensor: the loop clips each member's gradients in place, which would scale a shared one twice."""
    layer, params = stacked_layer(cell)
    out = run(layer, params, "members", torch.randn(M, B, T, D, dtype=torch.float64), None)
    grads = torch.autograd.grad(out.sum(), list(params.values()))
    pointers = [g.untyped_storage().data_ptr() for g in grads]
    assert len(set(pointers)) == len(pointers)
    if cell != "gru":  # (the GRU's b_hn sits inside r * (.): its two biases' gradients differ)
        names = list(params)
        b_ih, b_hh = (grads[names.index(n)] for n in names if "bias_ih" in n or "bias_hh" in n)
        torch.testing.assert_close(b_ih, b_hh)


def test_a_layer_that_reads_the_one_below_gets_its_input_gradient():
    """A second layer's input is the first layer's output: the kernel hands back dL/dx (checked above by
    gradcheck) and nothing for steps after the last one the loss reads (zeros, not uninitialized memory)."""
    layer, params = stacked_layer("gru")
    x = torch.randn(M, B, T, D, dtype=torch.float64, requires_grad=True)
    (dx,) = torch.autograd.grad(run(layer, params, "members", x, torch.tensor([2])).sum(), x)
    assert torch.all(dx[:, :, 3:] == 0) and torch.all(dx[:, :, :3].abs().sum((1, 3)) > 0)


def test_leaky_relu_and_gelu_keep_the_step_path():
    """Their derivative is not a function of their output: forward_members is the step path for them."""
    for f in ("leaky_relu", "gelu"):
        assert f not in RNN_ACTIVATIONS
        torch.manual_seed(0)
        layers = [RNNLayer(D, H, activation=f).double() for _ in range(M)]
        params = {n: torch.stack([dict(l.named_parameters())[n] for l in layers]) for n, _ in layers[0].named_parameters()}
        x = torch.randn(M, B, T, D, dtype=torch.float64)
        torch.testing.assert_close(run(layers[0], params, "members", x, None), run(layers[0], params, "steps", x, None))
