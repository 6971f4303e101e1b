"""The depth axis of the probe's (layer x lag) grid, against independent computations and
analytic cases: autograd on retained layer outputs, a linear stack of rho * orthogonal maps,
the six-layer sigmoid chain of the textbooks, the depth fits on known curves, and old
probe.npz files."""
import math

import numpy as np
import pytest
import torch

from seqlab.models import FeedforwardLayer, GRULayer, LSTMLayer, RNNLayer, SequenceModel
from seqlab.probe import ProbeHistory, ProbeSettings, gradient_curves, probe
from seqlab.probe.fit import fit_depth, noise_floor
from seqlab.probe.gradient import parameter_groups
from seqlab.probe.history import FIT_FIELDS
from seqlab.probe.plots import write_plots
from seqlab.tasks import Adding, Copy
from seqlab.tasks.random_labels import RandomLabels

SETTINGS = ProbeSettings(batch_size=5, lyapunov_k=0, max_loss_steps=3)


def stack(layer, task, layers, hidden=5, seed=0, residual=False, between="none", **kwargs):
    torch.manual_seed(seed)
    model = SequenceModel(lambda input_size, hidden_size: layer(input_size, hidden_size, **kwargs),
                          task.input_size, task.output_size, hidden_size=hidden, num_layers=layers,
                          residual=residual, between=between)
    return model.double()


def batch_for(task, n=5, seed=0):
    b = task.make_batch(n, torch.Generator().manual_seed(seed))
    return type(b)(b.inputs.double(), b.targets.double() if b.targets.is_floating_point() else b.targets)


def orthogonal(n, seed):
    return torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


# --- against autograd on the layers' own outputs ---------------------------------------------

CASES = {
    "rnn-3-adding": (RNNLayer, Adding(seq_len=5), 3, {}),
    "lstm-2-copy": (LSTMLayer, Copy(seq_len=2), 2, {}),          # several loss steps, a subset probed
    "gru-3-residual-batchnorm-between-adding": (GRULayer, Adding(seq_len=4), 3, {"residual": True, "between": "batch"}),
    "mlp-4-random-labels": (FeedforwardLayer, RandomLabels(n_examples=8, input_dim=6, n_classes=3), 4,
                            {"activation": "tanh"}),
    "mlp-3-batchnorm-residual-random-labels": (FeedforwardLayer, RandomLabels(n_examples=8, input_dim=6, n_classes=3),
                                               3, {"norm": "batch", "residual": True}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_depth_curve_and_parameter_gradients_equal_autograd_on_retained_layer_outputs(case):
    """At lag 0 nothing later in time reaches L_tau, so the gradient that arrives at a layer's output
    tensor (fast path, read with forward hooks) at t = tau is the total dL_tau/dh^(l)_tau the taps give."""
    layer, task, layers, extra = CASES[case]
    model = stack(layer, task, layers, **extra)
    batch = batch_for(task)
    curves = gradient_curves(model, task, batch, SETTINGS.max_loss_steps)

    outputs = []
    hooks = [m.register_forward_hook(lambda _, __, y: outputs.append(y)) for m in model.layers]
    model.train()
    out = model(batch.inputs)  # the fused path where the cell has one
    for h in hooks:
        h.remove()
    per_step = task.loss_per_step(out, batch) * batch.inputs.shape[0]  # sums over the batch
    all_steps = task.loss_steps.tolist()
    norms = [[] for _ in range(layers)]
    for tau in curves.loss_steps.tolist():
        grads = torch.autograd.grad(per_step[all_steps.index(tau)], outputs, retain_graph=True)
        for i, g in enumerate(grads):
            norms[i].append(g[:, tau].norm(dim=-1))  # (B,) each example's own ||dL_tau/dh^(l)_tau||
    expected = np.array([torch.stack(n).mean().item() for n in norms])  # (NL,)
    np.testing.assert_allclose(curves.grid("h")[:, 0], expected, rtol=1e-10)

    result = probe(model, task, batch, SETTINGS)
    np.testing.assert_allclose(result.depth["h_lag0"], expected, rtol=1e-10)

    # the textbook "gradient in layer l": ||dL/dtheta_l|| of the training loss, from .grad
    model.zero_grad()
    task.loss(model(batch.inputs), batch).backward()
    for name, params in parameter_groups(model).items():
        ref = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params))
        assert curves.param_grad_norm[name] == pytest.approx(ref, rel=1e-10), name
    assert set(curves.param_grad_norm) == {f"l{i}" for i in range(layers)} | {"readout"}


# --- analytic cases -----------------------------------------------------------------------------

def mlp_from_config(task, *overrides):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from seqlab.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=mlp", "task=random_labels", *overrides])
    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the init itself in float64 (Q orthogonal to 1e-16, not 1e-7)
    try:
        return instantiate(cfg.model)(input_size=task.input_size, output_size=task.output_size)
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.3])
@pytest.mark.parametrize("kind", ["mlp", "rnn"])
def test_linear_stack_of_rho_orthogonal_maps_has_depth_gain_rho(kind, rho):
    """h^(l+1) = rho Q_l h^(l) + b (identity activation): dL/dh^(l) = rho Q_l^T dL/dh^(l+1), so at the
    loss step g(l) / g(l+1) = rho for every example. mlp: model=mlp with init=orthogonal gain=rho (T = 1);
    rnn: a stacked linear RNN whose input maps are rho Q, whatever its recurrent weights do in time."""
    NL = 5
    if kind == "mlp":
        task = RandomLabels(n_examples=8, input_dim=6, n_classes=3)
        model = mlp_from_config(task, f"model.num_layers={NL}", "model.hidden_size=6", "model.layer.activation=identity",
                                "model.layer.init=orthogonal", f"model.layer.gain={rho}")
    else:
        task = Adding(seq_len=4)
        model = stack(RNNLayer, task, NL, hidden=6, activation="identity")
        with torch.no_grad():
            for i, layer in enumerate(model.layers[1:], start=1):
                layer.rnn.weight_ih_l0.copy_(rho * orthogonal(6, seed=i))
    result = probe(model, task, batch_for(task), SETTINGS)
    g = result.curves.grid("h")[:, 0]
    np.testing.assert_allclose(g[:-1] / g[1:], rho, rtol=1e-12)
    for stat in ("q25", "q50", "q75"):  # every example obeys it, so every quartile does
        q = result.curves.grid("h", stat)[:, 0]
        np.testing.assert_allclose(q[:-1] / q[1:], rho, rtol=1e-12)
    fit = result.depth_fits["h_lag0"]
    assert fit["gain"] == pytest.approx(rho, rel=1e-12)
    assert fit["attenuation_decades"] == pytest.approx(-(NL - 1) * math.log10(rho), abs=1e-10)
    assert fit["underflow_layer"] == -1 and fit["fit_layers"] == NL


@pytest.mark.parametrize("kind", ["mlp", "rnn"])
def test_six_sigmoid_layers_at_their_steepest_give_a_thousandth_at_the_first(kind):
    """The teaching example: six layers of local derivative 1/4 (the sigmoid's maximum, at a zero
    pre-activation): a gradient of 1 at the last layer is 0.25^5 = 0.00098 at the first."""
    NL, H = 6, 4
    if kind == "mlp":
        task = RandomLabels(n_examples=8, input_dim=3, n_classes=2)
        model = stack(FeedforwardLayer, task, NL, hidden=H, activation="sigmoid")
        maps = [(layer.linear.weight, layer.linear.bias) for layer in model.layers]
    else:
        task = Adding(seq_len=2)
        model = stack(RNNLayer, task, NL, hidden=H, activation="sigmoid")
        with torch.no_grad():
            for layer in model.layers:  # no path through time: the chain is the depth alone
                layer.rnn.weight_hh_l0.zero_()
                layer.rnn.bias_hh_l0.zero_()
        maps = [(layer.rnn.weight_ih_l0, layer.rnn.bias_ih_l0) for layer in model.layers]
    with torch.no_grad():
        for i, (W, b) in enumerate(maps):
            if i == 0:  # pre-activation 0 -> h = 0.5, f' = 1/4
                W.zero_()
                b.zero_()
            else:
                Q = orthogonal(H, seed=i)
                W.copy_(Q)
                b.copy_(-Q @ torch.full((H,), 0.5, dtype=torch.float64))  # Q h + b = 0 again
    result = probe(model, task, batch_for(task), SETTINGS)
    g = result.depth["h_lag0"]
    relative = g / g[-1]  # gradient 1 at the last layer
    np.testing.assert_allclose(relative, 0.25 ** np.arange(NL - 1, -1, -1), rtol=1e-12)
    assert relative[0] == pytest.approx(0.001, rel=0.03)
    fit = result.depth_fits["h_lag0"]
    assert fit["gain"] == pytest.approx(0.25, rel=1e-12)
    assert fit["attenuation_decades"] == pytest.approx(5 * math.log10(4), rel=1e-12)  # 3.01 decades


# --- the depth fits on known curves ---------------------------------------------------------------

def test_depth_fit_of_an_exponential_curve_counts_layers_down_from_the_loss():
    g = 2.0 * 0.3 ** np.arange(7)[::-1]  # layer 6 (last) = 2, each layer below 0.3 times the one above
    fit = fit_depth(g)
    assert fit["gain"] == pytest.approx(0.3, rel=1e-12)
    assert fit["attenuation_decades"] == pytest.approx(6 * -math.log10(0.3), rel=1e-12)
    assert fit["g_first"] == g[0] and fit["g_last"] == 2.0
    assert fit["underflow_layer"] == -1 and fit["fit_layers"] == 7
    assert fit["reach_layer"] == 1  # 0.3^5 = 2.4e-3 >= 1e-3 > 0.3^6 = 7.3e-4
    growing = fit_depth(2.0 ** np.arange(5)[::-1])  # larger towards the input: exploding with depth
    assert growing["gain"] == pytest.approx(2.0) and growing["attenuation_decades"] < 0
    assert growing["reach_layer"] == 0


def test_depth_fit_finds_the_first_underflowed_layer_and_states_attenuation_down_to_the_floor():
    floor = noise_floor(torch.float32)
    g = 1e-7 ** np.arange(8)[::-1].astype(float)  # layer 7 (last) = 1, then 1e-7 ... 1e-49 going down
    g[g < 1e-40] = 0.0  # float32 flushed the bottom two layers to zero
    fit = fit_depth(g, floor=floor)  # floor 1.2e-33
    assert fit["underflow_layer"] == 2  # layer 3 holds 1e-28; layer 2 (1e-35) is below the floor, though not 0
    assert fit["fit_layers"] == 5
    assert fit["gain"] == pytest.approx(1e-7, rel=1e-9)  # fitted on the layers above the floor only
    # at least down to the floor (32.9 decades), not the fitted line's 49 decades past float32's range
    assert fit["attenuation_decades"] == pytest.approx(-math.log10(floor), rel=1e-9)
    assert fit_depth(np.array([0.0, 0.0, 1.0]), floor=floor)["underflow_layer"] == 1


def test_depth_gain_at_every_lag_is_the_fit_of_each_column_of_the_grid():
    task = Adding(seq_len=6)
    result = probe(stack(LSTMLayer, task, 3), task, batch_for(task), SETTINGS)
    for state in ("h", "c"):
        grid = result.curves.grid(state)  # (NL, K)
        assert grid.shape == (3, 6)
        gains = result.depth_gain[state]
        assert gains.shape == (6,)
        for k in range(6):
            assert gains[k] == pytest.approx(fit_depth(grid[:, k])["gain"], rel=1e-12)
        assert gains[0] == pytest.approx(result.depth_fits[f"{state}_lag0"]["gain"], rel=1e-12)
        np.testing.assert_array_equal(result.depth[f"{state}_tasklag"], grid[:, task.lag])


def test_one_layer_has_no_depth_axis_but_keeps_its_parameter_gradients():
    task = Adding(seq_len=5)
    result = probe(stack(RNNLayer, task, 1), task, batch_for(task), SETTINGS)
    assert result.depth == {} and result.depth_fits == {} and result.depth_gain == {}
    assert set(result.summary()["param_grad_norm"]) == {"l0", "readout"}
    assert result.summary()["h_l0"]["g_total"] > 0


# --- probe.npz: the new arrays, and files written before them ----------------------------------

def test_probe_npz_holds_the_depth_axis_and_round_trips(tmp_path):
    task = Adding(seq_len=6)
    model = stack(RNNLayer, task, 3)
    history = ProbeHistory(task.lag)
    for step in (0, 5):
        history.append(step, probe(model, task, batch_for(task), SETTINGS))
    history.save(tmp_path / "probe.npz")
    loaded = ProbeHistory.load(tmp_path / "probe.npz")
    with np.load(tmp_path / "probe.npz") as z:
        assert z["param_groups"].tolist() == ["l0", "l1", "l2", "readout"]
        assert z["param_grad_norm"].shape == (2, 4)
        assert z["depth_curves"].tolist() == ["h_lag0", "h_tasklag", "h_total"]
        assert z["depth_h_lag0"].shape == (2, 3) and z["depth_gain_h_lag0"].shape == (2,)
        assert z["depth_gain_by_lag_h"].shape == (2, 6)
        np.testing.assert_array_equal(z["depth_h_lag0"], loaded.grid("h")[:, :, 0])
    assert loaded.grid("h").shape == (2, 3, 6)
    np.testing.assert_array_equal(loaded.depth_curve("h", "total"), history.depth_curve("h", "total"))


def old_format_file(path, task, model):
    """A probe.npz as written before the depth axis: only the lag-axis arrays."""
    result = probe(model, task, batch_for(task), SETTINGS)
    c = result.curves
    arrays = {"steps": np.array([0, 10]), "lags": c.lags, "loss_steps": c.loss_steps,
              "task_lag": np.asarray(task.lag), "curves": np.asarray(c.keys)}
    for key in c.keys:
        arrays[f"mean_{key}"] = np.stack([c.mean[key]] * 2)
        for i, name in enumerate(("q25", "q50", "q75")):
            arrays[f"{name}_{key}"] = np.stack([c.quartiles[key][i]] * 2)
        arrays[f"per_loss_step_{key}"] = np.stack([c.per_loss_step[key]] * 2)
        for name in FIT_FIELDS:
            arrays[f"{name}_{key}"] = np.array([result.fits[key][name]] * 2, dtype=float)
    np.savez(path, **arrays)
    return result


def test_files_from_before_the_depth_axis_load_plot_and_continue(tmp_path):
    task = Adding(seq_len=6)
    model = stack(RNNLayer, task, 3)
    result = old_format_file(tmp_path / "probe.npz", task, model)
    old = ProbeHistory.load(tmp_path / "probe.npz")
    assert old.steps == [0, 10] and old.keys == ["h_l0", "h_l1", "h_l2"] and old.param_groups == []
    np.testing.assert_array_equal(old.depth_curve("h", "lag0")[1], result.curves.grid("h")[:, 0])
    np.testing.assert_array_equal(old.depth_curve("h", "tasklag")[0], result.curves.grid("h")[:, task.lag])
    assert old.depth_curve("h", "total") is None and old.series("param_grad_norm") is None
    assert {p.name for p in write_plots(old, tmp_path)} == {"probe_curves.png", "probe_heatmap.png",
                                                             "probe_depth.png", "probe_grid.png"}
    # a run resumed from such a file appends new probes: the old rows get nan for the new arrays
    old.append(20, probe(model, task, batch_for(task), SETTINGS))
    old.save(tmp_path / "probe.npz")
    with np.load(tmp_path / "probe.npz") as z:
        assert z["steps"].tolist() == [0, 10, 20]
        assert np.isnan(z["param_grad_norm"][:2]).all() and np.isfinite(z["param_grad_norm"][2]).all()
        assert z["param_groups"].tolist() == ["l0", "l1", "l2", "readout"]
        assert z["mean_h_l0"].shape == (3, 6)
