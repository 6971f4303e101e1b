"""The gradient probe against cases whose answer is known: analytic linear RNNs, finite
differences, Lyapunov spectra of linear maps, and the tanh RNN vs LSTM ordering."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from seqlab.__main__ import CONF_DIR
from seqlab.models import GRULayer, LSTMLayer, RNNLayer, SequenceModel
from seqlab.probe import (ProbeSettings, curve_keys, fit_curve, gradient_curves, layer_inputs,
                          lyapunov_spectrum, noise_floor, probe, probe_loss_steps, probe_mode)
from seqlab.tasks import Adding, Copy, DelayedRecall


def make_model(layer, task, hidden=8, layers=1, dtype=torch.float64, seed=0, **layer_kwargs):
    torch.manual_seed(seed)
    model = SequenceModel(lambda input_size, hidden_size: layer(input_size, hidden_size, **layer_kwargs),
                          task.input_size, task.output_size, hidden_size=hidden, num_layers=layers)
    return model.to(dtype)


def linear_rnn(task, rho, hidden=8, seed=0):
    """h_t = rho Q h_{t-1} + W_ih x_t + b, Q orthogonal (float64, exact to float precision)."""
    model = make_model(RNNLayer, task, hidden, activation="identity", seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    Q = torch.linalg.qr(torch.randn(hidden, hidden, generator=g, dtype=torch.float64))[0]
    with torch.no_grad():
        model.layers[0].rnn.weight_hh_l0.copy_(rho * Q)
    return model


def batch_for(task, n=6, seed=0):
    b = task.make_batch(n, torch.Generator().manual_seed(seed))
    return type(b)(b.inputs.double(), b.targets.double() if b.targets.is_floating_point() else b.targets)


# --- analytic: linear RNN with W = rho Q ----------------------------------------------------

@pytest.mark.parametrize("rho", [0.9, 1.0, 1.1])
def test_linear_rnn_one_loss_step_curve_is_rho_to_the_k(rho):
    task = Adding(seq_len=100)
    model = linear_rnn(task, rho)
    curves = gradient_curves(model, task, batch_for(task))
    g = curves.mean["h_l0"]
    k = np.arange(100)
    assert curves.lags.tolist() == k.tolist() and curves.loss_steps.tolist() == [99]
    np.testing.assert_allclose(g, rho ** k * g[0], rtol=1e-11)
    for q in curves.quartiles["h_l0"]:  # every example obeys it, so every quartile does
        np.testing.assert_allclose(q, rho ** k * q[0], rtol=1e-11)

    fit = fit_curve(g, horizon_floor=1e-3, lags=(1, 10, 500), task_lag=task.lag)
    assert fit["gain"] == pytest.approx(rho, rel=1e-12)
    assert fit["fit_lags"] == 100
    assert fit["attenuation_decades"] == pytest.approx(-99 * math.log10(rho), abs=1e-9)
    assert fit["g_lag10"] == pytest.approx(rho ** 10 * g[0], rel=1e-12) and math.isnan(fit["g_lag500"])  # asked for, beyond T: there, not a number
    assert fit["g_task_lag"] == g[99]
    if rho < 1:
        assert fit["half_life"] == pytest.approx(math.log(2) / -math.log(rho), rel=1e-10)
        assert fit["horizon"] == 65  # 0.9^65 = 1.05e-3 >= 1e-3 > 0.9^66
        assert fit["attenuation_decades"] > 0
    elif rho == 1:
        assert fit["half_life"] == math.inf or fit["half_life"] > 1e10  # flat to float precision
        assert fit["horizon"] == 99
    else:
        assert fit["half_life"] == math.inf and fit["horizon"] == 99
        assert fit["attenuation_decades"] < 0  # growing


@pytest.mark.parametrize("rho", [0.95, 1.05])
def test_linear_rnn_each_loss_step_of_copy_obeys_rho_to_the_k(rho):
    task = Copy(seq_len=5)  # total length 25, answers at steps 15..24
    model = linear_rnn(task, rho, hidden=6)
    curves = gradient_curves(model, task, batch_for(task), max_loss_steps=10)
    assert curves.loss_steps.tolist() == list(range(15, 25))
    K = 16  # lags 0 .. smallest tau = 15, so every lag averages all ten loss steps
    assert curves.lags.tolist() == list(range(K))
    k = np.arange(K)
    per = curves.per_loss_step["h_l0"]  # (L, K)
    assert per.shape == (10, K)
    for curve in per:
        np.testing.assert_allclose(curve, rho ** k * curve[0], rtol=1e-11)
    np.testing.assert_allclose(curves.mean["h_l0"], per.mean(0), rtol=1e-12)
    assert fit_curve(curves.mean["h_l0"])["gain"] == pytest.approx(rho, rel=1e-12)


def test_max_loss_steps_picks_evenly_spaced_answer_steps():
    task = Copy(seq_len=5)
    assert probe_loss_steps(task, 3).tolist() == [15, 19, 24]  # positions 0, 4.5 -> 4 (round half even), 9
    assert probe_loss_steps(task, 4).tolist() == [15, 18, 21, 24]
    assert probe_loss_steps(task, 1).tolist() == [15]
    assert probe_loss_steps(task, 50).tolist() == list(range(15, 25))
    assert probe_loss_steps(Adding(seq_len=9), 4).tolist() == [8]


# --- against finite differences --------------------------------------------------------------

def finite_difference_norms(model, task, batch, eps=1e-5):
    """||dL_tau^b / ds_t^b|| for every example b, loss step, state and t, by central differences
    of each example's own loss with respect to a perturbation of s_t where it is formed (the tap).

    With batch statistics (batch norm) the examples are coupled and the probe's quantity is the
    derivative of the batch's summed loss, d(sum_b' L_tau^b')/ds_t^b: then each example's tap
    is perturbed alone and the summed loss differenced."""
    B, T = batch.inputs.shape[:2]
    steps = task.loss_steps.tolist()
    coupled = getattr(model, "min_batch_size", 1) > 1

    def own_losses(taps):  # (B, L_task): each example's own loss at every loss step
        out = model(batch.inputs, taps=taps)
        return torch.stack([task.loss_per_step(out[b:b + 1], type(batch)(batch.inputs[b:b + 1],
                                                                            batch.targets[b:b + 1]))
                            for b in range(B)])

    def losses(taps):  # (B, L_task)
        if not coupled:
            return own_losses(taps)
        rows = []
        for b in range(B):  # keep only example b's perturbation; the whole batch's summed loss
            alone = [{n: torch.zeros_like(v).index_copy(0, torch.tensor([b]), v[b:b + 1]) for n, v in d.items()}
                     for d in taps]
            rows.append(task.loss_per_step(model(batch.inputs, taps=alone), batch) * B)
        return torch.stack(rows)

    zeros = [{n: torch.zeros(B, T, layer.state_size(n), dtype=torch.float64) for n in layer.state_names}
             for layer in model.layers]  # (B, T, S): S = H except for a wider state (the selective SSM's)
    grads = {}
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            for name in layer.state_names:
                S = layer.state_size(name)
                g = torch.zeros(len(steps), B, T, S, dtype=torch.float64)
                for t in range(T):
                    for j in range(S):
                        for sign in (1, -1):
                            zeros[i][name][:, t, j] = sign * eps
                            g[:, :, t, j] += sign * losses(zeros).T / (2 * eps)
                        zeros[i][name][:, t, j] = 0
                grads[f"{name}_l{i}"] = g.norm(dim=-1)  # (L_task, B, T)
    return grads


def model_from_config(name, task, hidden, layers=None):
    """A float64 model from conf/model/{name}.yaml (every cell, present and future)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [f"model={name}", f"model.hidden_size={hidden}", f"seq_len={task.seq_len}"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides + ([f"model.num_layers={layers}"] if layers else []))
    torch.manual_seed(0)
    return instantiate(cfg.model)(input_size=task.input_size, output_size=task.output_size).double()


MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


@pytest.mark.parametrize("case", ["lstm-2-layers-adding", "gru-copy"] + [f"{m}-adding" for m in MODELS])
def test_curves_equal_finite_differences(case):
    if case == "lstm-2-layers-adding":
        task, max_steps = Adding(seq_len=6), None
        model = make_model(LSTMLayer, task, hidden=3, layers=2)
    elif case == "gru-copy":  # several loss steps
        task, max_steps = Copy(seq_len=2), 3
        model = make_model(GRULayer, task, hidden=3)
    else:  # every model config, as configured (IndRNN: 2 layers)
        task, max_steps = Adding(seq_len=5), None
        model = model_from_config(case.removesuffix("-adding"), task, hidden=4)
    batch = batch_for(task, n=3)
    curves = gradient_curves(model, task, batch, max_loss_steps=max_steps)
    fd = finite_difference_norms(model, task, batch)
    all_steps = task.loss_steps.tolist()
    K = len(curves.lags)
    assert set(curves.keys) == set(fd) == set(curve_keys(model))
    for key in curves.keys:
        # (L, B, K) in lag order: lag k of loss step tau is t = tau - k
        per = torch.stack([fd[key][all_steps.index(tau), :, tau - np.arange(K)] for tau in curves.loss_steps])
        np.testing.assert_allclose(curves.per_loss_step[key], per.mean(1).numpy(), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(curves.mean[key], per.mean((0, 1)).numpy(), rtol=1e-6, atol=1e-9)
        q = torch.quantile(per.flatten(0, 1), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=0)
        np.testing.assert_allclose(curves.quartiles[key], q.numpy(), rtol=1e-6, atol=1e-9)


def test_per_example_gradients_are_independent_of_the_batch():
    # the sum-over-the-batch trick gives each example its own gradient: the curve of a batch is
    # the mean of the curves of its examples taken one at a time
    task = DelayedRecall(seq_len=12)
    model = make_model(RNNLayer, task, hidden=5)
    batch = batch_for(task, n=4)
    whole = gradient_curves(model, task, batch).mean["h_l0"]
    alone = [gradient_curves(model, task, type(batch)(batch.inputs[b:b + 1], batch.targets[b:b + 1])).mean["h_l0"]
             for b in range(4)]
    np.testing.assert_allclose(whole, np.mean(alone, axis=0), rtol=1e-12)


def test_norms_survive_float32_underflow_of_squares():
    # entries ~1e-25 square to 1e-50, below float32's range: the norm must still be exact
    task = Adding(seq_len=60)
    model = linear_rnn(task, 0.4).float()
    curves = gradient_curves(model, task, task.make_batch(4, torch.Generator().manual_seed(0)))
    g = curves.mean["h_l0"]
    assert curves.dtype == torch.float32
    assert 0 < g[-1] < 1e-20  # 0.4^59 ~ 3e-24 relative to g(0)
    np.testing.assert_allclose(g, 0.4 ** np.arange(60) * g[0], rtol=1e-4)


# --- fits ------------------------------------------------------------------------------------

def test_fit_ignores_the_underflowed_tail_and_states_attenuation_only_as_far_as_measured():
    g = 0.5 ** np.arange(200.0)
    g[150:] = 0.0  # flushed to zero, as float32 does
    fit = fit_curve(g, floor=1e-40)
    assert fit["fit_lags"] == 133  # 0.5^132 = 1.8e-40 > 1e-40 > 0.5^133
    assert fit["gain"] == pytest.approx(0.5, rel=1e-12)
    # not the fitted line's 199 * log10(2) = 59.9 decades: the data say "at least down to the floor"
    assert fit["attenuation_decades"] == pytest.approx(40.0, rel=1e-12)
    short = fit_curve(np.array([1.0, 0.0, 0.0]), floor=1e-33)  # below the floor from lag 1: no fit, a bound
    assert math.isnan(short["gain"]) and short["attenuation_decades"] == pytest.approx(33.0)


def test_fit_of_a_growing_curve_uses_the_prefix_before_overflow_and_states_the_growth_as_a_bound():
    from seqlab.probe.fit import ceiling, decades_text

    # a tanh RNN at W = 8 Q grows ~2x per step until float32 overflows (inf, then nan): measured to lag ~122
    g = 2.0 ** np.arange(200.0)
    g[128] = np.inf
    g[129:] = np.nan
    fit = fit_curve(g, lags=(1,))
    n = int(np.floor(np.log2(ceiling())))  # 2^n < 3.4e33 <= 2^(n + 1)
    assert fit["fit_lags"] == n + 1 and fit["gain"] == pytest.approx(2.0, rel=1e-12)  # not n/a
    assert fit["half_life"] == math.inf and fit["horizon"] == n  # it never fell; nothing past the overflow is measured
    # a growth of at least log10(ceiling / g0) = 33.5 decades (negative attenuation), not "at least 33 decades" of decay
    assert fit["attenuation_decades"] == pytest.approx(-math.log10(ceiling()), rel=1e-12)
    assert decades_text(fit["attenuation_decades"], fit["fit_lags"] < fit["n_lags"]) == "a growth of at least 33.5 decades"
    assert decades_text(40.0, True) == "at least 40 decades" and decades_text(-2.0, False) == "a growth of 2 decades"
    assert decades_text(3.01, False) == "3.01 decades"
    # a growth that stays inside float32's range is fitted over every lag, with no bound
    whole = fit_curve(1.3 ** np.arange(100.0))
    assert whole["fit_lags"] == 100 and whole["attenuation_decades"] == pytest.approx(-99 * math.log10(1.3))


def test_horizon_is_where_the_curve_first_falls_below_the_floor():
    g = np.array([1.0, 0.1, 1e-2, 1e-4, 0.5, 0.5])  # recovers after the dip: the horizon stays at 2
    assert fit_curve(g, horizon_floor=1e-3)["horizon"] == 2
    assert fit_curve(g, horizon_floor=1e-5)["horizon"] == 5
    assert fit_curve(np.zeros(5))["horizon"] == -1 and math.isnan(fit_curve(np.zeros(5))["gain"])
    assert fit_curve(np.array([1.0, 0.5, np.nan, 0.1]))["horizon"] == 1  # a diverged model's nan ends it
    assert noise_floor(torch.float32) == pytest.approx(1e5 * 1.1754944e-38, rel=1e-6)


# --- Lyapunov spectrum -------------------------------------------------------------------------

def linear_layer(W):
    layer = RNNLayer(2, W.shape[0], activation="identity").double()
    with torch.no_grad():
        layer.rnn.weight_hh_l0.copy_(W)
    return layer


def test_lyapunov_of_linear_rnn_is_log_abs_eigenvalues():
    g = torch.Generator().manual_seed(0)
    H = 10
    # real, distinct eigenvalue moduli, non-normal W: the QR method converges geometrically
    V = torch.randn(H, H, generator=g, dtype=torch.float64) + 3 * torch.eye(H, dtype=torch.float64)
    eig = torch.tensor([1.3, -1.1, 0.9, 0.8, -0.7, 0.6, 0.5, -0.4, 0.3, 0.2], dtype=torch.float64)
    W = V @ torch.diag(eig) @ torch.linalg.inv(V)
    x = torch.rand(2, 400, 2, generator=g, dtype=torch.float64)
    lam = lyapunov_spectrum(linear_layer(W), x, k=6, warmup=100)
    np.testing.assert_allclose(lam, np.log(np.abs(eig[:6].numpy())), atol=1e-7)

    # a Gaussian W: complex pairs, moduli close together; and the full spectrum sums to log|det W|
    W = torch.randn(H, H, generator=g, dtype=torch.float64) / math.sqrt(H)
    x = torch.rand(1, 1200, 2, generator=g, dtype=torch.float64)
    lam = lyapunov_spectrum(linear_layer(W), x, k=H, warmup=200)
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(W.numpy()))))[::-1]
    np.testing.assert_allclose(lam, expected, atol=2e-3)  # a pair's rotation averages out like 1/T
    assert lam.sum() == pytest.approx(np.log(abs(np.linalg.det(W.numpy()))), abs=1e-9)


def test_lyapunov_of_rho_q_is_log_rho_and_covers_the_lstm_cell_state():
    task = Adding(seq_len=50)
    model = linear_rnn(task, 0.8, hidden=6)
    lam = lyapunov_spectrum(model.layers[0], batch_for(task, 2).inputs, k=4, warmup=10)
    np.testing.assert_allclose(lam, math.log(0.8), atol=1e-12)

    lstm = make_model(LSTMLayer, task, hidden=4, dtype=torch.float32)
    lam = lyapunov_spectrum(lstm.layers[0], task.make_batch(2, torch.Generator()).inputs, k=100, warmup=10)
    assert lam.shape == (8,)  # k capped at the full state (h, c): 2H
    assert np.all(np.diff(lam) <= 1e-6) and np.all(lam < 0)


def reference_lyapunov(layer, x, k, warmup, seed=0):
    """The QR method with each step's full Jacobian from reverse-mode autograd (one sequence)."""
    drive = layer.input_drive(x)[0]  # (T, G)
    state = layer.initial_state(x)
    sizes = [s.shape[-1] for s in state]
    s = torch.cat(state, dim=-1)[0]  # (S,)
    gen = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(1, len(s), k, generator=gen, dtype=torch.float64))[0][0]
    total = torch.zeros(k, dtype=torch.float64)
    for t, u in enumerate(drive):
        def f(v, u=u):
            return torch.cat(layer.step(u[None], tuple(v[None].split(sizes, dim=-1))), dim=-1)[0]
        J = torch.autograd.functional.jacobian(f, s)  # (S, S)
        s = f(s).detach()
        Q, R = torch.linalg.qr(J @ Q)
        r = torch.diagonal(R)
        Q = Q * torch.sign(r)
        if t >= warmup:
            total += r.abs().log()
    return (total / (len(drive) - warmup)).numpy()


@pytest.mark.parametrize("model", MODELS)
def test_lyapunov_of_every_cell_equals_a_full_jacobian_reference(model):
    # the fast path (forward-mode AD through each layer's own step, dual parameters) must be exact
    # for every cell in conf/model, present and future
    task = Adding(seq_len=30)
    net = model_from_config(model, task, hidden=6)
    x = batch_for(task, 1).inputs
    for layer, inputs in zip(net.layers, layer_inputs(net, x)):
        fast = lyapunov_spectrum(layer, inputs, k=4, warmup=5)
        np.testing.assert_allclose(fast, reference_lyapunov(layer, inputs, k=4, warmup=5), rtol=1e-9, atol=1e-9)


def test_layer_inputs_are_what_each_layer_receives():
    task = Adding(seq_len=7)
    model = make_model(GRULayer, task, hidden=4, layers=3)
    x = batch_for(task, 2).inputs
    seen = layer_inputs(model, x)
    assert [s.shape[-1] for s in seen] == [2, 4, 4]
    torch.testing.assert_close(seen[0], x)
    torch.testing.assert_close(seen[2], model.layers[1](model.layers[0](x)))


# --- the probe is pure -------------------------------------------------------------------------

def test_probe_changes_nothing_and_restores_modes():
    task = Copy(seq_len=4)
    model = make_model(LSTMLayer, task, hidden=5, layers=2, dtype=torch.float32)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    settings = ProbeSettings(batch_size=4, lyapunov_k=3, lyapunov_warmup=5)
    result = probe(model, task, settings.make_batch(task), settings)
    assert not model.training and all(not m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    depth = {f"depth_{s}_{at}" for s in "hc" for at in ("lag0", "tasklag", "total")}
    assert set(result.summary()) == {"h_l0", "c_l0", "h_l1", "c_l1", "lyapunov_l0", "lyapunov_l1",
                                     "param_grad_norm", *depth}
    assert result.summary()["lyapunov_l1"]["k"] == 3
    # the same batch and model give the same numbers
    again = probe(model, task, settings.make_batch(task), settings)
    assert again.scalars() == result.scalars()


def test_probe_mode_is_train_mode_with_dropout_off():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.1), nn.Linear(2, 2)))
    net.eval()
    with probe_mode(net):
        assert net.training and net[0].training and net[2][1].training
        assert not net[1].training and not net[2][0].training
    assert not any(m.training for m in net.modules())


def test_probe_settings_reject_bad_values():
    from seqlab.checks import ConfigError

    for bad in (dict(every=0), dict(batch_size=0), dict(max_loss_steps=0), dict(horizon_floor=1.0),
                dict(lags=[1, -2]), dict(lags="10"), dict(lyapunov_k=-1), dict(plots="yes")):
        with pytest.raises(ConfigError, match="probe."):
            ProbeSettings(**bad)
    assert ProbeSettings(lags=[3, 4]).lags == (3, 4)


# --- the phenomenon ----------------------------------------------------------------------------

def test_at_init_tanh_rnn_gradient_vanishes_faster_than_lstm_cell_state():
    """Adding, T=200, PyTorch's default init: dL/dh of a tanh RNN falls by several decades
    over the sequence; dL/dc of an LSTM falls less, and far less with forget bias 1."""
    task = Adding(seq_len=200)
    batch = task.make_batch(8, torch.Generator().manual_seed(0))
    rnn = make_model(RNNLayer, task, hidden=64, dtype=torch.float32)
    lstm = make_model(LSTMLayer, task, hidden=64, dtype=torch.float32)
    lstm_fb1 = make_model(LSTMLayer, task, hidden=64, dtype=torch.float32, forget_bias=1.0)
    fits = [fit_curve(gradient_curves(m, task, batch).mean[key], task_lag=task.lag)
            for m, key in ((rnn, "h_l0"), (lstm, "c_l0"), (lstm_fb1, "c_l0"))]
    att = [f["attenuation_decades"] for f in fits]
    gain = [f["gain"] for f in fits]
    assert att[0] > 5  # several decades
    assert att[0] > att[1] > att[2] > 0
    assert gain[0] < gain[1] < gain[2] < 1
