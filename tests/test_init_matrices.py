"""Init knobs reach every weight matrix, as each conf/model/*.yaml comment says (issue 10, item 5).

default = torch's own init bit for bit; xavier / kaiming / orthogonal re-draw W_hh and W_ih
of rnn, lstm, gru, bnlstm gate block by gate block, the input matrices of indrnn, lru and
exprnn, the gate/candidate blocks of mingru and minlstm, coRNN's V, W_z and W, the selective SSM's input
projection, and every W_l of the MLP; identity sets W_hh and leaves W_ih at torch's; biases
are never touched.
"""
from functools import partial

import pytest
import torch
from torch import nn

from seqlab.models import (BNLSTMLayer, CoRNNLayer, FeedforwardLayer, GRULayer, IndRNNLayer, LRULayer, LSTMLayer,
                           MinGRULayer, MinLSTMLayer, OrthogonalRNNLayer, RNNLayer, SelectiveLayer)

H, D = 24, 40
GATED = {"rnn": (RNNLayer, 1, "rnn"), "lstm": (LSTMLayer, 4, "lstm"), "gru": (GRULayer, 3, "gru"),
         "bnlstm": (partial(BNLSTMLayer, tmax=5), 4, "lstm")}
TORCH = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "bnlstm": nn.LSTM}


def weights(layer, attr):
    m = getattr(layer, attr)
    return m.weight_ih_l0.detach(), m.weight_hh_l0.detach(), m.bias_ih_l0.detach(), m.bias_hh_l0.detach()


@pytest.mark.parametrize("name", GATED)
def test_default_is_torch_default_bit_for_bit(name):
    make, _, attr = GATED[name]
    torch.manual_seed(7)
    ref = TORCH[name](D, H, batch_first=True)
    torch.manual_seed(7)
    got = weights(make(input_size=D, hidden_size=H), attr)
    for a, b in zip(got, (ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0)):
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("name", GATED)
@pytest.mark.parametrize("scheme", ["xavier", "kaiming", "orthogonal"])
def test_scheme_redraws_every_gate_block_of_both_matrices_and_no_bias(name, scheme):
    make, gates, attr = GATED[name]
    torch.manual_seed(0)
    w_ih0, w_hh0, b_ih0, b_hh0 = weights(make(input_size=D, hidden_size=H), attr)
    torch.manual_seed(0)
    w_ih, w_hh, b_ih, b_hh = weights(make(input_size=D, hidden_size=H, init=scheme, recurrent_gain=0.7), attr)
    assert torch.equal(b_ih, b_ih0) and torch.equal(b_hh, b_hh0)  # biases: torch's draws, untouched
    for block, block0 in zip(w_ih.split(H), w_ih0.split(H)):  # each (H, D)
        assert not torch.equal(block, block0)
        if scheme == "orthogonal":  # H < D: orthonormal rows, gain 1 (recurrent_gain scales W_hh only)
            torch.testing.assert_close(block @ block.T, torch.eye(H), rtol=1e-5, atol=1e-5)
        if scheme == "kaiming":  # N(0, 2 / fan_in)
            assert block.std().item() == pytest.approx((2 / D) ** 0.5, rel=0.1)
        if scheme == "xavier":  # U(-a, a), a = sqrt(6 / (fan_in + fan_out))
            assert block.abs().max().item() <= (6 / (D + H)) ** 0.5
            assert block.abs().max().item() > 0.9 * (6 / (D + H)) ** 0.5
    for block in w_hh.split(H):  # each (H, H), scaled by recurrent_gain
        if scheme == "orthogonal":
            torch.testing.assert_close(block.T @ block, 0.49 * torch.eye(H), rtol=1e-5, atol=1e-5)
        if scheme == "xavier":
            assert block.abs().max().item() <= 0.7 * (6 / (2 * H)) ** 0.5
    assert w_ih.shape == (gates * H, D) and w_hh.shape == (gates * H, H)


@pytest.mark.parametrize("name", GATED)
def test_identity_sets_W_hh_and_leaves_W_ih_at_torch_default(name):
    make, _, attr = GATED[name]
    torch.manual_seed(0)
    w_ih0 = weights(make(input_size=D, hidden_size=H), attr)[0]
    torch.manual_seed(0)
    w_ih, w_hh, _, _ = weights(make(input_size=D, hidden_size=H, init="identity", recurrent_gain=0.9), attr)
    assert torch.equal(w_ih, w_ih0)
    for block in w_hh.split(H):
        assert torch.equal(block, 0.9 * torch.eye(H))


EXPRNN = partial(OrthogonalRNNLayer, init="identity")  # A = 0 draws nothing before W_in


@pytest.mark.parametrize("make, attr, key", [
    (partial(IndRNNLayer, tmax=10), "input", "init"),
    (LRULayer, "encoder", "init"),
    (EXPRNN, "input", "input_init"),
])
@pytest.mark.parametrize("scheme", ["default", "xavier", "kaiming", "orthogonal"])
def test_input_matrix_knob_of_indrnn_lru_exprnn(make, attr, key, scheme):
    torch.manual_seed(0)
    ref = nn.Linear(D, H, bias=make is not EXPRNN)  # exprnn's modReLU W_in has no bias
    if make is EXPRNN:  # the paper's He init is the default there
        nn.init.kaiming_normal_(ref.weight, mode="fan_in", nonlinearity="relu")
    torch.manual_seed(0)
    W = getattr(make(D, H, **{key: scheme}), attr).weight.detach()
    paper_default = scheme == ("kaiming" if make is EXPRNN else "default")
    assert torch.equal(W, ref.weight.detach()) == paper_default
    if scheme == "orthogonal":
        torch.testing.assert_close(W @ W.T, torch.eye(H), rtol=1e-5, atol=1e-5)


def test_mlp_every_layer_and_not_the_biases():
    torch.manual_seed(0)
    a = FeedforwardLayer(D, H)
    torch.manual_seed(0)
    b = FeedforwardLayer(D, H, init="orthogonal", gain=2.0)
    assert torch.equal(a.linear.bias, b.linear.bias)
    torch.testing.assert_close(b.linear.weight @ b.linear.weight.T, 4 * torch.eye(H), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, key", [
    (lambda: IndRNNLayer(2, 4, tmax=10, init="identity"), "model.layer.init"),
    (lambda: LRULayer(2, 4, init="he"), "model.layer.init"),
    (lambda: OrthogonalRNNLayer(2, 4, input_init="henaff"), "model.layer.input_init"),
    (lambda: LSTMLayer(2, 4, init="glorot"), "model.layer.init"),
])
def test_bad_init_names_the_key(make, key):
    from seqlab.checks import ConfigError

    with pytest.raises(ConfigError, match=rf"^{key}=") as err:
        make()
    assert "\n" not in str(err.value)


# the new cells: (layer, the Linear whose weight the knob sets, its blocks as (row slice, column slice))
NEW_CELLS = {
    "mingru": (MinGRULayer, lambda m: m.linear, [(slice(g * H, (g + 1) * H), slice(None)) for g in range(2)]),
    "minlstm": (MinLSTMLayer, lambda m: m.linear, [(slice(g * H, (g + 1) * H), slice(None)) for g in range(3)]),
    "cornn": (CoRNNLayer, lambda m: m.i2h, [(slice(None), slice(0, D)), (slice(None), slice(D, D + H)),
                                           (slice(None), slice(D + H, D + 2 * H))]),
    "selective": (SelectiveLayer, lambda m: m.in_proj, [(slice(None), slice(None))]),
}


@pytest.mark.parametrize("name", NEW_CELLS)
@pytest.mark.parametrize("scheme", ["default", "orthogonal", "kaiming"])
def test_init_knob_of_the_new_cells_redraws_each_block_and_nothing_else(name, scheme):
    make, linear, blocks = NEW_CELLS[name]
    torch.manual_seed(0)
    ref = make(D, H)
    torch.manual_seed(0)
    layer = make(D, H, init=scheme)
    W, W0 = linear(layer).weight.detach(), linear(ref).weight.detach()
    assert torch.equal(W, W0) == (scheme == "default")  # default: the cell's own init, bit for bit
    assert torch.equal(linear(layer).bias, linear(ref).bias)  # the bias is never redrawn
    for rows, cols in blocks:
        b = W[rows, cols]
        if scheme == "orthogonal":  # every singular value 1, block by block
            torch.testing.assert_close(torch.linalg.svdvals(b), torch.ones(min(b.shape)), rtol=1e-5, atol=1e-5)
        if scheme == "kaiming":  # N(0, 2 / fan_in)
            assert abs(float(b.var()) / (2 / b.shape[1]) - 1) < 0.25


def test_cornn_identity_sets_both_recurrent_blocks_and_keeps_V():
    torch.manual_seed(0)
    ref = CoRNNLayer(D, H)
    torch.manual_seed(0)
    layer = CoRNNLayer(D, H, init="identity")
    V, W_z, W = layer.weights()
    assert torch.equal(V, ref.weights()[0]) and torch.equal(W_z, torch.eye(H)) and torch.equal(W, torch.eye(H))


@pytest.mark.parametrize("make", [MinGRULayer, MinLSTMLayer, CoRNNLayer, SelectiveLayer])
def test_bad_init_of_the_new_cells_names_the_key(make):
    from seqlab.checks import ConfigError

    with pytest.raises(ConfigError, match=r"^model.layer.init='glorot': must be one of") as err:
        make(2, 4, init="glorot")
    assert "\n" not in str(err.value)
