"""The gated cells' mean field (seqlab.theory.gated) against closed forms, random-matrix spectra and wide
random LSTMs/GRUs built by the lab's own layers.

Tolerances. The spectral edge of a finite N x N matrix A + X D fluctuates around its N -> infinity value by
O(N^(-1/2)) at the edge of a circular-law density (a few percent at N = 400): 4% here. The length maps are
checked against the lab's own cells at width 1024 (float64, 16 sequences): the theory takes the fluctuating
part of each pre-activation as independent across steps and the cell state as Gaussian given its unit's
biases; measured at t = 40 the gaps are 1-7% (docs/theory.md), the band is 12%. A prediction of the same
map with fresh, not quenched, biases is off by 3x for the default LSTM's cell state, so the band still tells
the quenched treatment from the annealed one.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from seqlab.models import GRULayer, LSTMLayer, SequenceModel
from seqlab.probe import ProbeSettings, probe
from seqlab.tasks.adding import Adding
from seqlab.theory import TheoryError, bias_variance, init_variance, theory_block
from seqlab.theory.gated import (_chi_independent, _edge, chrono_nodes, gated_lag_curve, gru_stationary, gru_steps,
                                 lstm_stationary, lstm_steps)

EDGE_TOL = 0.04
MAP_TOL = 0.12


# --- the two per-step numbers: closed forms and random matrices ----------------------------------------

def test_uniform_gates_give_a_plus_d_reused_and_the_root_of_a2_plus_d2_fresh():
    a, d = 0.5, 0.25 / math.sqrt(3)  # torch's default LSTM in its linear regime: f = 1/2, d = i tanh' o / sqrt(3)
    one = np.ones(1)
    assert _edge(a * one, d * d * one, one) == pytest.approx(a + d, rel=1e-10)
    assert _chi_independent(a * a * one, d * d * one, one) == pytest.approx(a * a + d * d, rel=1e-10)
    assert a + d == pytest.approx(0.644, abs=1e-3) and math.sqrt(a * a + d * d) == pytest.approx(0.520, abs=1e-3)
    # no diagonal path: both are the vanilla RNN's sqrt(sigma_w^2 E[phi'^2])
    assert _edge(0 * one, 0.36 * one, one) == pytest.approx(0.6, rel=1e-10)
    assert math.sqrt(_chi_independent(0 * one, 0.36 * one, one)) == pytest.approx(0.6, rel=1e-10)


@pytest.mark.parametrize("a,d,w", [
    ([0.5], [0.25], [1.0]),
    ([0.2, 0.9], [0.5, 0.1], [0.5, 0.5]),       # a fast and a slow class of units (chrono-like)
    ([0.1, 0.6, 0.95], [0.4, 0.3, 0.05], [0.3, 0.4, 0.3]),
])
def test_edge_is_the_spectral_radius_of_one_reused_random_jacobian(a, d, w):
    N = 400
    rng = np.random.default_rng(0)
    counts = np.round(np.array(w) * N).astype(int)
    av = np.repeat(a, counts)
    dv = np.repeat(d, counts)
    M = np.diag(av) + rng.standard_normal((N, N)) / math.sqrt(N) * dv[None, :]  # A + X D
    radius = np.abs(np.linalg.eigvals(M)).max()
    assert radius == pytest.approx(_edge(np.array(a), np.array(d) ** 2, np.array(w)), rel=EDGE_TOL)


def test_chi_is_the_growth_of_products_of_fresh_random_jacobians():
    N, steps = 400, 30
    rng = np.random.default_rng(1)
    a = np.repeat([0.3, 0.9], N // 2)
    d = np.repeat([0.5, 0.2], N // 2)
    v = rng.standard_normal(N)
    logs = []
    for _ in range(steps):
        v2 = a * v + (rng.standard_normal((N, N)) / math.sqrt(N)) @ (d * v)  # a fresh A + X_t D every step
        logs.append(math.log((v2 @ v2) / (v @ v)))
        v = v2
    chi = _chi_independent(np.array([0.09, 0.81]), np.array([0.25, 0.04]), np.array([0.5, 0.5]))
    assert math.exp(np.mean(logs[10:])) == pytest.approx(chi, rel=0.05)  # after the transient


# --- the length maps against the lab's wide random cells ------------------------------------------------

def _wide_cell(kind, H=1024, T=40, B=16, **kw):
    torch.manual_seed(0)
    task = Adding(seq_len=T)
    x = task.make_batch(B, torch.Generator().manual_seed(1)).inputs.double()
    layer = (LSTMLayer if kind == "lstm" else GRULayer)(task.input_size, H, **kw).double()
    u = layer.input_drive(x)
    state = tuple(torch.zeros(B, H, dtype=torch.float64) for _ in layer.state_names)
    with torch.no_grad():
        for t in range(T):
            state = layer.step(u[:, t], state)
    P = x.pow(2).mean(dim=(0, 2)).numpy()
    M = x.mean(dim=0).pow(2).mean(dim=-1).numpy()
    return state, P, M


@pytest.mark.slow
@pytest.mark.parametrize("kind,kw", [
    ("lstm", {}), ("lstm", {"forget_bias": 1.0}), ("lstm", {"chrono": True, "chrono_tmax": 40}),
    ("gru", {"recurrent_gain": 3.0}),
])
def test_length_maps_match_a_wide_random_cell(kind, kw):
    H = 1024
    state, P, M = _wide_cell(kind, H, **kw)
    rho = kw.get("recurrent_gain", 1.0)
    sw2, su2 = init_variance("default", rho, H, H, default_fan=H), init_variance("default", 1.0, 2, H, default_fan=H)
    tmax = kw.get("chrono_tmax")
    if kind == "lstm":
        st = lstm_steps(sw2, su2, P, bias_variance(H, 2), kw.get("forget_bias"), tmax, M)
        assert float(state[1].pow(2).mean()) == pytest.approx(st.c2[-1], rel=MAP_TOL)
    else:
        st = gru_steps(sw2, su2, P, bias_variance(H, 2), None, tmax, M)
    assert float(state[0].pow(2).mean()) == pytest.approx(st.h2[-1], rel=MAP_TOL)


def test_quenched_biases_matter_an_annealed_cell_state_would_be_3x_small():
    # torch's default LSTM is driven by its biases: c -> i b_g / (1 - f) = b_g per unit, E[c^2] ~ Var(b_g);
    # fresh biases every step would give (1/4) Var(b_g) / (1 - 1/4) = Var(b_g) / 3
    H = 256
    st = lstm_stationary(1e-6, 0.0, 0.0, bias_variance(H, 2))
    assert st.c2_star == pytest.approx(bias_variance(H, 2), rel=0.02)
    assert 0.5 < st.lam < 0.55  # d ~ sigma_w -> 0: the edge sits at the largest forget gate, ~1/2


def test_stationary_is_the_end_of_the_steps_and_the_fixed_point_of_the_map():
    H = 128
    sw2, su2, sb2 = 1 / 3, 2 / (3 * H), bias_variance(H, 2)
    for cell, steps, stat in (("lstm", lstm_steps, lstm_stationary), ("gru", gru_steps, gru_stationary)):
        long = steps(sw2, su2, np.full(100, 0.2), sb2, None, None, np.full(100, 0.05))
        fp = stat(sw2, su2, 0.2, sb2, None, None, 0.05)
        assert fp.h2_star == pytest.approx(long.h2[-1], rel=1e-6), cell
        assert fp.lam == pytest.approx(long.lam[-1], rel=1e-6), cell
        assert fp.xi == pytest.approx(-1 / math.log(fp.lam)) and fp.gain_independent == pytest.approx(math.sqrt(fp.chi))
        assert fp.gain_independent < fp.lam < 1  # reused W: the cross terms add up; fresh ones: they cancel


def test_forget_bias_and_chrono_lengthen_the_timescale():
    H, sb2 = 128, bias_variance(128, 2)
    default = lstm_stationary(1 / 3, 2 / (3 * H), 0.2, sb2)
    forget1 = lstm_stationary(1 / 3, 2 / (3 * H), 0.2, sb2, forget_bias=1.0)
    chrono = lstm_stationary(1 / 3, 2 / (3 * H), 0.2, sb2, chrono_tmax=200)
    assert default.lam < forget1.lam < chrono.lam < 1
    # chrono's slowest units forget at 1 - 1/(Tmax - 1): the edge sits just above that sigmoid
    assert chrono.lam > 1 / (1 + math.exp(-chrono_nodes(200)[0].max())) - 1e-3
    gru = gru_stationary(1 / 3, 2 / (3 * H), 0.2, sb2, chrono_tmax=200)
    assert gru.lam > 0.99


def test_bad_settings_are_one_clear_error():
    with pytest.raises(TheoryError, match="sigma_w2=-1"):
        lstm_steps(-1, 0.1, np.ones(3), 0.01)
    with pytest.raises(TheoryError, match="give one"):
        gru_steps(1, 0.1, np.ones(3), 0.01, update_bias=1.0, chrono_tmax=10)
    with pytest.raises(TheoryError, match="chrono_tmax=2"):
        lstm_stationary(1, 0.1, 1.0, 0.01, chrono_tmax=2)
    with pytest.raises(TheoryError, match="input_mean_power"):
        lstm_steps(1, 0.1, np.ones(3), 0.01, input_mean_power=np.full(3, 2.0))


def test_lag_curve_is_the_product_of_the_step_gains():
    lam = np.array([9.0, 0.5, 0.8, 0.9])
    assert gated_lag_curve(lam, 3, 5)[:4] == pytest.approx([1.0, 0.9, 0.72, 0.36])
    assert math.isnan(gated_lag_curve(lam, 3, 5)[4])
    # the first step back from the loss has its own factor (the loss reaches h alone), then the edge
    assert gated_lag_curve(lam, 3, 4, first=np.array([9.0, 9.0, 9.0, 0.1])) == pytest.approx([1.0, 0.1, 0.08, 0.04])


def test_first_step_of_the_default_lstm_is_one_jacobian_on_h_alone():
    # linear regime (tiny drive): Gamma = o dL/dh = dL/dh / 2, then W_g^T (i Gamma): sqrt(sigma_w^2 / 16)
    st = lstm_steps(1 / 3, 0.0, np.zeros(5), 1e-8)
    assert st.first[-1] == pytest.approx(math.sqrt(1 / 3 / 16), rel=1e-3)
    gru = gru_steps(1 / 3, 0.0, np.zeros(5), 1e-8)  # z dL/dh + W_n^T ((1 - z) r dL/dh): sqrt(1/4 + sigma_w^2 / 16)
    assert gru.first[-1] == pytest.approx(math.sqrt(0.25 + 1 / 3 / 16), rel=1e-3)


# --- beside the probe ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind,kw,fresh_differs", [("lstm", {"forget_bias": 1.0}, True), ("gru", {}, True),
                                                   ("gru", {"chrono": True, "chrono_tmax": 60}, False)])
def test_probe_gain_of_a_wide_random_cell_matches_the_prediction(kind, kw, fresh_differs):
    torch.manual_seed(0)
    task = Adding(seq_len=60)
    layer = functools.partial(LSTMLayer if kind == "lstm" else GRULayer, **kw)
    model = SequenceModel(layer, task.input_size, task.output_size, hidden_size=512).double()
    batch = ProbeSettings(batch_size=32).make_batch(task)
    batch = type(batch)(batch.inputs.double(), batch.targets)
    result = probe(model, task, batch, ProbeSettings(batch_size=32, lyapunov_k=0), lyapunov=False)
    block = theory_block(model, {"layer": kw}, batch.inputs, task.answer_steps, len(result.curves.lags))["time"]
    measured = result.fits["h_l0"]["gain"]
    assert measured == pytest.approx(block["gain"], rel=0.03)
    # the fresh-W number is not what a network does, except where the gates' diagonal dominates (chrono: both ~0.98)
    assert (abs(measured - block["gain_independent"]) > 0.05) == fresh_differs


def test_lstm_and_gru_get_a_prediction_and_the_batch_normalized_lstm_its_reason():
    from seqlab.models.bnlstm import BNLSTMLayer

    task = Adding(seq_len=12)
    batch = task.make_batch(4, torch.Generator().manual_seed(0))
    for layer in (LSTMLayer, GRULayer):
        model = SequenceModel(functools.partial(layer), task.input_size, task.output_size, hidden_size=32)
        time = theory_block(model, {}, batch.inputs, task.answer_steps, 12)["time"]
        assert "Gilboa" in time["theory"] and len(time["curve"]) == 12 and 0.5 < time["gain"] < 0.8
    ln = SequenceModel(functools.partial(LSTMLayer, layer_norm=True), task.input_size, task.output_size, hidden_size=32)
    assert "layer-normalized LSTM" in theory_block(ln, {}, batch.inputs, task.answer_steps, 12)["time"]["absent"]
    bn = SequenceModel(functools.partial(BNLSTMLayer), task.input_size, task.output_size, hidden_size=32)
    assert "batch-normalized" in theory_block(bn, {}, batch.inputs, task.answer_steps, 12)["time"]["absent"]
    ident = SequenceModel(functools.partial(GRULayer, init="identity"), task.input_size, task.output_size, hidden_size=32)
    assert "identity" in theory_block(ident, {"layer": {"init": "identity"}}, batch.inputs, task.answer_steps,
                                      12)["time"]["absent"]
