"""The cells of issue 12 (minGRU, minLSTM, coRNN, the selective SSM) and the scan paths
(seqlab.models.scan) they and the LRU run on: every fast path equals the step path, the
log-space scan equals the paper's sequential recurrence at T = 1000, coRNN's step is its
published discretization, the probe reads every state, every config trains."""
import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.models import CoRNNLayer, LRULayer, MinGRULayer, MinLSTMLayer, SelectiveLayer, SequenceModel
from seqlab.models import scan as scans
from seqlab.probe import ProbeSettings, probe
from seqlab.tasks import Adding
from seqlab.train import RunInfo, train

# every new cell and every option of its fast path
CELLS = {
    **{f"mingru-{s}": partial(MinGRULayer, scan=s) for s in scans.METHODS},
    **{f"mingru-linear-{s}": partial(MinGRULayer, candidate="linear", scan=s) for s in scans.LINEAR},
    **{f"minlstm-{s}": partial(MinLSTMLayer, scan=s) for s in scans.METHODS},
    "minlstm-linear-chunked": partial(MinLSTMLayer, candidate="linear", scan="chunked", chunk=4),
    **{f"selective-{s}": partial(SelectiveLayer, state_size=3, scan=s) for s in scans.LINEAR},
    "selective-chunk5-rank2": partial(SelectiveLayer, state_size=2, dt_rank=2, scan="chunked", chunk=5),
    **{f"lru-{s}": partial(LRULayer, scan=s) for s in scans.LINEAR},
    "cornn": CoRNNLayer,
    "cornn-psmnist": partial(CoRNNLayer, dt=0.076, gamma=0.4, epsilon=8.0),
}
NEW_CONFIGS = ("mingru", "minlstm", "cornn", "selective")


def model(name, layers=2, H=6, D=3, O=2, seed=0, residual=True):
    torch.manual_seed(seed)
    return SequenceModel(CELLS[name], input_size=D, output_size=O, hidden_size=H, num_layers=layers,
                         residual=residual).double()


def cfg_for(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["logger=none", "progress=false", *overrides])


@pytest.mark.parametrize("name", CELLS)
def test_fast_path_equals_step_path_outputs_and_gradients(name):
    m = model(name)
    x = torch.randn(3, 23, 3, dtype=torch.float64)
    fast, step = m(x), m(x, path="step")
    torch.testing.assert_close(fast, step, rtol=1e-9, atol=1e-11)
    params = list(m.parameters())
    g_fast = torch.autograd.grad(fast[:, -1].square().sum() + fast[:, 5].sum(), params)
    g_step = torch.autograd.grad(step[:, -1].square().sum() + step[:, 5].sum(), params)
    for a, b in zip(g_fast, g_step):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("name", CELLS)
def test_reading_out_at_the_loss_steps_only_changes_nothing_there(name):
    """The last layer hands back only the loss steps (no stack of all T): same outputs and gradients."""
    m = model(name)
    x = torch.randn(3, 23, 3, dtype=torch.float64)
    steps = torch.tensor([4, 17, 22])
    part, full = m(x, steps=steps), m(x)
    torch.testing.assert_close(part[:, steps], full[:, steps], rtol=1e-12, atol=1e-13)
    assert (part[:, [0, 5, 21]] == 0).all()
    params = list(m.parameters())
    g_part = torch.autograd.grad(part[:, steps].square().sum(), params)
    g_full = torch.autograd.grad(full[:, steps].square().sum(), params)
    for a, b in zip(g_part, g_full):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("T", [1, 2, 7, 16, 33])
@pytest.mark.parametrize("method", ["chunked", "parallel", "log"])
def test_every_scan_equals_the_loop_at_any_length(method, T):
    torch.manual_seed(T)
    a = torch.rand(2, T, 3, 2, dtype=torch.float64)  # (B, T, *S), a in (0, 1)
    b = torch.rand(2, T, 3, 2, dtype=torch.float64) + 0.1
    loop = scans.scan_loop(a, b)
    got = scans.scan_log(a.log(), b.log()) if method == "log" else scans.run_scan(method, a, b, chunk=3)
    torch.testing.assert_close(got, loop, rtol=1e-10, atol=1e-13)
    for a_t, b_t, h_prev, h in zip(a.unbind(1), b.unbind(1), [torch.zeros_like(b[:, 0])] + list(loop.unbind(1)),
                                   loop.unbind(1)):  # and the loop is the recurrence
        torch.testing.assert_close(h, a_t * h_prev + b_t)


def _paper_sequential(kind, layer, x):
    """The recurrence as Feng et al. 2024 write it (sec. 3.1/3.2, sequential mode), one step at a time."""
    p = layer.linear(x)  # (B, T, G)
    h = torch.zeros(x.shape[0], layer.hidden_size, dtype=x.dtype)
    out = []
    for p_t in p.unbind(1):
        if kind == "mingru":
            k, v = p_t.chunk(2, dim=-1)
            z = torch.sigmoid(k)
            h = (1 - z) * h + z * torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
        else:
            k_f, k_i, v = p_t.chunk(3, dim=-1)
            f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
            h = f / (f + i) * h + i / (f + i) * torch.where(v >= 0, v + 0.5, torch.sigmoid(v))
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("kind, cls", [("mingru", MinGRULayer), ("minlstm", MinLSTMLayer)])
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_log_space_scan_equals_the_papers_sequential_recurrence_at_T_1000(kind, cls, dtype, rtol):
    """float32: the log-space scan adds a* = sum log a (here down to ~ -3000) and logcumsumexp
    (~ +3000), so it keeps ~4 digits where the loop keeps ~7 (max relative error ~5e-4 measured)."""
    torch.manual_seed(0)
    layer = cls(2, 8, scan="log").to(dtype)
    with torch.no_grad():  # gates spread over (0, 1): some units keep h for hundreds of steps
        layer.linear.bias[:8].uniform_(-3, 6)
    x = torch.randn(4, 1000, 2, dtype=dtype)
    with torch.no_grad():
        seq = _paper_sequential(kind, layer, x)
        torch.testing.assert_close(layer(x), seq, rtol=rtol, atol=rtol * 1e-2)
        torch.testing.assert_close(layer.forward_steps(x), seq, rtol=rtol, atol=rtol * 1e-2)


def test_mingru_gradient_through_time_is_the_product_of_one_minus_z():
    """dL/dh_{t-1} = (1 - z_t) dL/dh_t per unit: the state Jacobian is diag(a_t), nothing else."""
    torch.manual_seed(0)
    T = 12
    layer = MinGRULayer(2, 5).double()
    x = torch.randn(3, T, 2, dtype=torch.float64)
    tap = {"h": torch.zeros(3, T, 5, dtype=torch.float64, requires_grad=True)}
    (g,) = torch.autograd.grad(layer.forward_steps(x, tap)[:, -1].sum(), tap["h"])
    one_minus_z = torch.sigmoid(-layer.linear(x)[..., :5]).detach()  # (B, T, H)
    expect = torch.ones(3, T, 5, dtype=torch.float64)
    for t in range(T - 2, -1, -1):
        expect[:, t] = expect[:, t + 1] * one_minus_z[:, t + 1]
    torch.testing.assert_close(g, expect, rtol=1e-12, atol=1e-15)


def test_selective_state_jacobian_is_exp_delta_a_and_stable():
    torch.manual_seed(0)
    layer = SelectiveLayer(2, 4, state_size=3).double()
    x = torch.randn(1, 5, 2, dtype=torch.float64)
    drive = layer.input_drive(x)[:, 2]  # (1, 2 S)
    h = torch.randn(1, 12, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda s: layer.step(drive, (s,))[0], h).reshape(12, 12)
    _, delta, _, _ = layer.project(x)
    A = -torch.exp(layer.A_log.double())  # (H, N)
    expect = torch.exp(delta[0, 2].unsqueeze(-1) * A).flatten().detach()
    torch.testing.assert_close(J, torch.diag(expect))
    assert (expect < 1).all() and (expect > 0).all()
    dt = F.softplus(layer.dt_proj.bias).detach()  # init: Delta's bias is log-uniform on [dt_min, dt_max]
    assert float(dt.min()) >= 1e-3 * (1 - 1e-5) and float(dt.max()) <= 0.1 * (1 + 1e-5)


def test_cornn_step_is_the_published_discretization_on_a_hand_computed_example():
    """Rusch & Mishra 2021, eq. 3, H = 1, D = 1: V = 1, W_z = -0.25, W = 0.5, b = 0.1, dt = 0.1,
    gamma = 2, epsilon = 3, from y = z = 0 with inputs u_1 = 1, u_2 = -2:
      z_1 = 0.1 tanh(1.1)                                             = 0.08004990217606297
      y_1 = 0.1 z_1                                                   = 0.008004990217606297
      z_2 = z_1 + 0.1 (tanh(0.5 y_1 - 0.25 z_1 - 2 + 0.1) - 2 y_1 - 3 z_1) = -0.03976245...
      y_2 = y_1 + 0.1 z_2"""
    layer = CoRNNLayer(1, 1, dt=0.1, gamma=2.0, epsilon=3.0).double()
    with torch.no_grad():
        layer.i2h.weight.copy_(torch.tensor([[1.0, -0.25, 0.5]]))  # [V | W_z | W], the published layout
        layer.i2h.bias.fill_(0.1)
    z1 = 0.1 * math.tanh(1.1)
    y1 = 0.1 * z1
    z2 = z1 + 0.1 * (math.tanh(0.5 * y1 - 0.25 * z1 - 2 + 0.1) - 2 * y1 - 3 * z1)
    y2 = y1 + 0.1 * z2
    assert z1 == pytest.approx(0.08004990217606297, abs=1e-15)
    x = torch.tensor([[[1.0], [-2.0]]], dtype=torch.float64)  # (B=1, T=2, D=1)
    taps = {"y": torch.zeros(1, 2, 1, dtype=torch.float64), "z": torch.zeros(1, 2, 1, dtype=torch.float64)}
    y = layer.forward_steps(x, taps)
    torch.testing.assert_close(y[0, :, 0], torch.tensor([y1, y2], dtype=torch.float64), rtol=1e-14, atol=0)
    state = layer.step(layer.input_drive(x)[:, 0], layer.initial_state(x))
    torch.testing.assert_close(torch.cat(state, -1)[0], torch.tensor([y1, z1], dtype=torch.float64))


@pytest.mark.parametrize("name", ["mingru-loop", "minlstm-log", "selective-chunked", "cornn", "lru-chunked"])
def test_the_probe_runs_and_reads_every_state(name):
    torch.manual_seed(0)
    task = Adding(seq_len=12)
    m = SequenceModel(CELLS[name], task.input_size, task.output_size, hidden_size=6, num_layers=2)
    batch = task.make_batch(4, torch.Generator().manual_seed(0))
    result = probe(m, task, batch, ProbeSettings(batch_size=4, lyapunov_k=4, lyapunov_warmup=2, plots=False))
    expect = {f"{s}_l{i}" for i in range(2) for s in m.layers[0].state_names}
    assert set(result.curves.keys) == expect
    for key in expect:
        g = result.curves.mean[key]
        assert g.shape == (12,) and (g[1:] > 0).all() and all(map(math.isfinite, g))
    assert len(result.lyapunov) == 2 and all(math.isfinite(float(s[0])) for s in result.lyapunov)
    if name.startswith("selective"):  # taps as wide as the state: H * N
        assert m.make_taps(2, 5)[0]["h"].shape == (2, 5, 6 * 3)
        assert float(result.lyapunov[0][0]) < 0  # exp(Delta A) < 1: contracting


@pytest.mark.parametrize("make, key", [
    (lambda: MinGRULayer(2, 4, scan="fast"), "model.layer.scan"),
    (lambda: MinGRULayer(2, 4, candidate="linear", scan="log"), "model.layer.scan"),
    (lambda: MinGRULayer(2, 4, candidate="tanh"), "model.layer.candidate"),
    (lambda: MinLSTMLayer(2, 4, chunk=0), "model.layer.chunk"),
    (lambda: SelectiveLayer(2, 4, scan="log"), "model.layer.scan"),
    (lambda: SelectiveLayer(2, 4, state_size=0), "model.layer.state_size"),
    (lambda: SelectiveLayer(2, 4, dt_min=0.1, dt_max=0.01), "model.layer.dt_max"),
    (lambda: SelectiveLayer(2, 4, dt_rank=1.5), "model.layer.dt_rank"),
    (lambda: CoRNNLayer(2, 4, dt=0), "model.layer.dt"),
    (lambda: CoRNNLayer(2, 4, gamma=-1), "model.layer.gamma"),
    (lambda: CoRNNLayer(2, 4, epsilon="x"), "model.layer.epsilon"),
    (lambda: LRULayer(2, 4, scan="log"), "model.layer.scan"),
])
def test_bad_options_name_the_key(make, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as err:
        make()
    assert "\n" not in str(err.value)


def test_auto_picks_the_measured_default_per_device_and_length_and_can_be_overridden():
    x = torch.zeros(1, 3, 2)
    assert MinGRULayer(2, 4).method(x) == "loop" and SelectiveLayer(2, 4).method(x) == "loop"  # CPU
    assert MinGRULayer(2, 4, scan="parallel").method(x) == "parallel"
    as_cuda = {"meta": MinGRULayer.auto["cuda"]}  # the CUDA rule, read on shape-only tensors
    assert scans.resolve("auto", torch.zeros(1, 1000, 2, device="meta"), as_cuda) == "log"
    assert scans.resolve("auto", torch.zeros(1, 5000, 2, device="meta"), as_cuda) == "chunked"
    layer = MinGRULayer(2, 4, candidate="linear")  # no log-space path without the positive candidate
    layer.auto = {"cpu": ((math.inf, "log"),)}
    assert layer.method(x) == "chunked"
    assert cfg_for("model=mingru", "model.layer.scan=log").model.layer.scan == "log"


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_new_configs_compose_and_train(name, tmp_path):
    assert name in {p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml")}
    cfg = cfg_for(f"remedy={name}", "task=copy", "seq_len=6", "steps=4", "eval_every=2", "eval_size=8",
                  "batch_size=4", "model.hidden_size=6", "probe.every=2", "probe.batch_size=4",
                  "probe.lyapunov_k=2", "probe.lyapunov_steps=0", "probe.plots=false")
    assert cfg.model.layer._target_.startswith("seqlab.models.")
    summary = train(cfg, RunInfo(run_dir=tmp_path / name, name=name))
    assert summary["status"] == "finished" and math.isfinite(summary["final_loss"])
    states = ("y", "z") if name == "cornn" else ("h",)
    assert {k for k in summary["probe"] if k.endswith("_l0") and not k.startswith("lyapunov")} == \
        {f"{s}_l0" for s in states}
