"""Lyapunov exponents that converge: the non-normal linear case against ln|eig W|, the convergence
estimate, and the probe's long spectrum at the first and last probe only."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqlab.models import RNNLayer, SequenceModel
from seqlab.probe import ProbeSettings, probe
from seqlab.probe.lyapunov import driving_inputs, lyapunov_estimate
from seqlab.tasks import Adding

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from lyapunov_convergence import linear_layer, nonnormal_matrix  # noqa: E402


@pytest.fixture(scope="module")
def nonnormal():
    W = nonnormal_matrix(H=32, top=0.97, bottom=0.5, sigma=1.9)
    eig = np.abs(np.linalg.eigvals(W.numpy()))
    assert eig.max() == pytest.approx(0.97) and torch.linalg.matrix_norm(W, 2) == pytest.approx(1.9)
    return W


def test_nonnormal_linear_case_converges_to_log_eig_and_says_when_it_has_not(nonnormal):
    task = Adding(200)
    layer = linear_layer(nonnormal, task.input_size)
    truth = math.log(0.97)
    # the finite-time estimate along one task sequence: far off, and its convergence estimate says so
    short = lyapunov_estimate(layer, driving_inputs(task, 200).double(), k=16, warmup=50)
    assert abs(short.exponents[0] - truth) > 0.01
    assert short.err[0] > abs(short.exponents[0] - truth) / 3
    # driven for longer than T (the task's sequences back to back): converged, and it says so
    long = lyapunov_estimate(layer, driving_inputs(task, 2500).double(), k=16, warmup=500)
    assert long.steps == 2000
    assert long.exponents[0] == pytest.approx(truth, abs=1e-4)
    assert long.err[0] < 1e-4
    # the full top of the spectrum: ln of the next eigenvalue moduli (0.97 - 0.5 / 31 * i)
    expected = np.log(np.sort(np.abs(np.linalg.eigvals(nonnormal.numpy())))[::-1][:4])
    np.testing.assert_allclose(long.exponents[:4], expected, atol=1e-3)


def test_probe_default_spectrum_converges_on_the_nonnormal_case(nonnormal):
    task = Adding(200)
    torch.manual_seed(0)
    model = SequenceModel(lambda input_size, hidden_size: RNNLayer(input_size, hidden_size, activation="identity"),
                          task.input_size,
                          task.output_size, hidden_size=32).double()
    with torch.no_grad():
        model.layers[0].rnn.weight_hh_l0.copy_(nonnormal)
    settings = ProbeSettings(batch_size=4)  # the default lyapunov_steps / lyapunov_warmup
    batch = settings.make_batch(task)
    batch = type(batch)(batch.inputs.double(), batch.targets.double())
    result = probe(model, task, batch, settings)
    s = result.summary()["lyapunov_l0"]
    assert s["max"] == pytest.approx(math.log(0.97), abs=1e-4) and s["max_err"] < 1e-4
    assert s["steps"] == settings.lyapunov_steps
    assert probe(model, task, batch, settings, lyapunov=False).lyapunov == []


def test_long_spectrum_only_at_first_and_last_probe(tmp_path):
    from hydra import compose, initialize_config_dir

    from seqlab.__main__ import CONF_DIR
    from seqlab.train import RunInfo, train

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "logger=none", "progress=false", "task=adding", "seq_len=10", "steps=6", "probe.every=2",
            "eval_size=16", "batch_size=4", "model.hidden_size=6", "probe.batch_size=4", "probe.lyapunov_k=3",
            "probe.lyapunov_steps=40", "probe.lyapunov_warmup=10", "probe.plots=false"])
    summary = train(cfg, RunInfo(run_dir=tmp_path / "run", name="run"))
    with np.load(tmp_path / "run" / "probe.npz") as z:
        assert z["steps"].tolist() == [0, 2, 4, 6]
        lam, err = z["lyapunov_l0"], z["lyapunov_err_l0"]
        assert lam.shape == (4, 3) and z["lyapunov_steps"].tolist() == [40, 0, 0, 40]
        assert np.isfinite(lam[[0, 3]]).all() and np.isnan(lam[[1, 2]]).all()
        assert np.isfinite(err[[0, 3]]).all() and (err[[0, 3]] >= 0).all()
        assert summary["probe"]["lyapunov_l0"]["max"] == pytest.approx(lam[3, 0])


def test_a_state_that_forgets_at_once_has_exponent_minus_infinity_with_no_spread_and_no_warning():
    """A feedforward layer (T = 1) or a unit pinned at a constant: the tangent is zeroed, log R = -inf."""
    import warnings

    from seqlab.probe.lyapunov import summarize_log_r

    log_r = np.full((40, 2, 3), -0.5)
    log_r[:, :, 2] = -np.inf  # the third direction collapses at every step
    log_r[7, 1, 1] = -np.inf  # the second collapses once: the product is zero from then on
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = summarize_log_r(log_r)
    assert est.exponents[0] == -0.5 and est.exponents[1] == est.exponents[2] == -np.inf
    assert est.err[1] == est.err[2] == 0.0 and np.isfinite(est.err[0])
