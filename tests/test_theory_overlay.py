"""The mean-field prediction drawn beside the measured decay curves: in the report's own figures
(decay_curves.png, depth_curves.png) as a dashed line in the setting's colour with the predicted
slope, absent (with the reason in the report text) where a run has no prediction, and in every
figure never below the float32 floor a measurement can reach."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seqlab import claims
from seqlab.probe.history import ProbeHistory
from seqlab.report import figures, layers
from seqlab.report.runs import Run, Setting
from seqlab.theory.overlay import FLOAT32_MAX, FLOAT32_TINY, measurable, run_theory

K = 200  # lags: 0.572^199 = 1e-48, far below float32's 1.2e-38 (the old figures drew it there)


def _run(gain=0.57, predicted=0.572, g0=1e-3, seed=0, layers_=1, depth_pred=None, steps=(0,), absent=None):
    lags = np.arange(K)
    g = g0 * gain ** lags.astype(float)
    g[g < FLOAT32_TINY] = 0.0  # what a float32 probe records: 0 below the smallest normal
    probe = {"steps": np.array(steps), "lags": lags, "curves": np.array([f"h_l{i}" for i in range(layers_)]),
             "task_lag": np.array(K - 1)}
    for i in range(layers_):
        probe[f"mean_h_l{i}"] = np.stack([g for _ in steps])
    summary = {"lag": K - 1, "baseline": 1 / 6}
    if predicted is not None or absent or depth_pred is not None:
        time = {"absent": absent} if absent else {"gain": predicted, "curve": (predicted ** lags.astype(float)).tolist()}
        depth = {"absent": "one layer: no depth axis"}
        if depth_pred is not None:
            n = layers_
            depth = {"gain": depth_pred, "curve": (depth_pred ** np.arange(n - 1, -1, -1.0)).tolist()}
        summary["theory"] = {"step": 0, "time": time, "depth": depth}
    if layers_ > 1:
        probe["depth_h_lag0"] = np.stack([1e-2 * gain ** np.arange(layers_ - 1, -1, -1.0) for _ in steps])
    return Run(path=Path("."), status="finished", config={"seq_len": K, "seed": seed, "choices": {"task": "adding"}},
               overrides=[], summary=summary, metrics=[], probe=probe)


def _capture(monkeypatch, module):
    figs = []
    real = module._save

    def spy(plt, fig, path, title, what):
        figs.append((fig, what))
        real(plt, fig, path, title, what)

    monkeypatch.setattr(module, "_save", spy)
    return figs


def _dashed(fig):
    """The dashed prediction lines with data (the legend's stand-in has none)."""
    return [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() == "--" and len(ln.get_xdata())]


def test_measurable_stops_the_line_where_float32_can_no_longer_measure():
    curve = 0.5 ** np.arange(40.0)
    shown = measurable(curve, 1e-30)  # floor at 1.2e-38 / 1e-30 = 1.2e-8 relative: 0.5^26 = 1.5e-8 is the last
    assert np.isfinite(shown[:27]).all() and np.isnan(shown[27:]).all()
    assert (1e-30 * shown[:27] >= FLOAT32_TINY).all()
    assert np.isnan(measurable(curve, [1e-30, 1e-20])[27])  # the smallest seed's g sets the floor
    depth = 0.5 ** np.arange(39.0, -1, -1)  # g(l)/g(last): walked from the last layer down
    shown = measurable(depth, 1e-30, from_end=True)
    assert np.isfinite(shown[-27:]).all() and np.isnan(shown[:-27]).all()
    up = 2.0 ** np.arange(40.0)
    assert np.isnan(measurable(up, 1e30)[29]) and (1e30 * measurable(up, 1e30)[:29] <= FLOAT32_MAX).all()  # 2^29 > 3.4e8
    assert np.isnan(measurable(curve, 0.0)).all()  # no measured reference: nothing to draw against


def test_the_decay_figure_draws_a_runs_prediction_dashed_with_its_slope_and_a_run_without_none(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, figures)
    with_theory = Setting(items={"model": "rnn"}, label="x=a", runs=[_run(seed=0), _run(seed=1)])
    without = Setting(items={"model": "rnn"}, label="x=b", runs=[_run(gain=0.9, predicted=None)])
    assert figures.plot_decay_curves([with_theory, without], tmp_path / "d.png") is not None
    fig, caption = figs[-1]
    dashed = _dashed(fig)
    assert len(dashed) == 1  # one prediction: the run without a theory block has none
    colors = {ln.get_label(): ln.get_color() for ax in fig.axes for ln in ax.get_lines()}
    x, y = np.asarray(dashed[0].get_xdata(), float), np.asarray(dashed[0].get_ydata(), float)
    ok = np.isfinite(y)
    slope = np.polyfit(x[ok], np.log(y[ok]), 1)[0]
    assert np.exp(slope) == pytest.approx(0.572, rel=1e-9)  # the predicted gain per step
    assert dashed[0].get_color() == colors["a"]  # the legend drops the key of a single varying key and dashed[0].get_marker() in ("None", None, "")
    assert (1e-3 * y[ok] >= FLOAT32_TINY).all() and np.isnan(y[~ok]).all() and (~ok).any()  # stopped at the floor
    assert y[ok].min() > FLOAT32_TINY / 1e-3 * 0.5  # ... and not before: it reaches the floor
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "mean-field at init" in labels and "float32" in caption and "dashed" in caption


def test_no_run_with_a_prediction_draws_no_dashes_and_no_legend_entry(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, figures)
    s = Setting(items={"model": "lstm"}, label="x=c", runs=[_run(absent="LSTM: not here")])
    figures.plot_decay_curves([s], tmp_path / "d.png")
    fig, caption = figs[-1]
    assert not _dashed(fig) and "mean-field" not in caption
    notes = figures.theory_notes([s])
    assert len(notes) == 1 and "absent for x=c (LSTM: not here)" in notes[0]


def test_the_depth_figure_draws_the_depth_prediction_from_the_last_layer_down(tmp_path, monkeypatch):
    figs = _capture(monkeypatch, layers)
    s = Setting(items={"model": "mlp"}, label="x=d", runs=[_run(layers_=30, gain=0.41, depth_pred=0.408)])
    assert layers.plot_depth_curves([s], tmp_path / "depth.png") is not None
    fig, caption = figs[-1]
    dashed = _dashed(fig)
    assert len(dashed) == 1
    y = np.asarray(dashed[0].get_ydata(), float)
    assert y[-1] == pytest.approx(1.0) and y[-2] / y[-1] == pytest.approx(0.408)
    # 0.408^29 = 5e-12 relative to g(last) = 1e-2: well above the floor, drawn to the input layer
    assert np.isfinite(y).all() and "float32" in caption


def test_runs_trained_without_a_step_0_probe_get_no_prediction_and_the_reason():
    r = _run(steps=(100,))
    curve, why = run_theory(r, "time")
    assert curve is None and why == "no probe at step 0"
    old = _run(predicted=None)
    old.probe["theory_json"] = np.asarray(json.dumps({"step": 0, "time": {"curve": [1.0, 0.5]}, "depth": {}}))
    assert run_theory(old, "time")[0].tolist() == [1.0, 0.5]  # probe.npz's copy when summary.json has none


def test_the_probe_figures_stop_the_prediction_at_the_float32_floor(tmp_path):
    from seqlab.probe import plots

    lags = np.arange(K)
    g = 1e-3 * 0.57 ** lags.astype(float)
    g[g < FLOAT32_TINY] = 0.0
    row = {"mean_h_l0": g, "gain_h_l0": np.float64(0.57)}
    history = ProbeHistory(task_lag=K - 1, steps=[0], rows=[row],
                           static={"lags": lags, "loss_steps": np.array([K - 1]), "task_lag": np.asarray(K - 1),
                                   "curves": np.array(["h_l0"]), "param_groups": np.array([], dtype=str)},
                           theory={"step": 0, "time": {"gain": 0.572, "curve": (0.572 ** lags.astype(float)).tolist()},
                                   "depth": {"absent": "one layer: no depth axis"}})
    import matplotlib.pyplot as plt

    seen = []
    real = plots._finish

    def spy(plt_, fig, path, title, note=""):
        seen.extend(_dashed(fig))
        return real(plt_, fig, path, title, note)

    plots._finish = spy
    try:
        plots.plot_curves(history, tmp_path / "c.png", "t")
    finally:
        plots._finish = real
        plt.close("all")
    raw = [np.asarray(ln.get_ydata(), float) for ln in seen]
    assert len(raw) == 2  # raw and normalized panels
    assert np.nanmin(raw[0]) >= FLOAT32_TINY and np.isnan(raw[0][-1])  # the old line went on to 1e-48
    assert np.nanmin(raw[1]) * 1e-3 >= FLOAT32_TINY


def _spy_on_claims_dashed_lines(monkeypatch) -> list:
    """The dashed lines of every figure seqlab.claims saves, appended to the returned list."""
    seen = []
    real = claims._save

    def spy(plt, fig, path, suptitle, dpi):
        seen.extend(_dashed(fig))
        return real(plt, fig, path, suptitle, dpi)

    monkeypatch.setattr(claims, "_save", spy)
    return seen


def test_the_claims_figure_stops_the_prediction_at_the_float32_floor(tmp_path, monkeypatch):
    seen = _spy_on_claims_dashed_lines(monkeypatch)
    s = Setting(items={}, label="activation=tanh", runs=[_run()])
    claims.plot_init(claims.CLAIMS["decay"], {"time": [s]}, tmp_path / "c.png")
    y = np.asarray(seen[0].get_ydata(), float)
    assert np.nanmin(y) * 1e-3 >= FLOAT32_TINY and np.isnan(y[-1]) and np.isfinite(y[:100]).all()


def test_the_claims_figure_draws_no_h_prediction_over_an_lstms_cell_curve(tmp_path, monkeypatch):
    seen = _spy_on_claims_dashed_lines(monkeypatch)
    run = _run()  # its prediction is h_l0's; give it the LSTM's cell curve, which the gated claim shows
    run.probe["curves"] = np.array(["h_l0", "c_l0"])
    run.probe["mean_c_l0"] = run.probe["mean_h_l0"] * 0.5
    s = Setting(items={}, label="remedy=lstm", runs=[run])
    claims.plot_init(claims.CLAIMS["gated"], {"time": [s]}, tmp_path / "g.png")  # time_curve c_l0
    assert seen == []  # the first lags of h and c differ: no dashed line on c
    claims.plot_init(claims.CLAIMS["decay"], {"time": [s]}, tmp_path / "d.png")  # time_curve h_l0
    assert len(seen) == 1


def test_the_across_tasks_figure_draws_the_prediction_only_for_untrained_runs(tmp_path, monkeypatch):
    from seqlab.report import across_tasks as at

    seen = []
    real = at.save_figure

    def spy(fig, path, **kw):
        seen.append(_dashed(fig))
        return real(fig, path, **kw)

    monkeypatch.setattr(at, "save_figure", spy)

    def setting(task, steps):
        r = _run(steps=steps)
        r.config["choices"]["task"] = task
        return Setting(items={"model": "rnn", "task": task, "seq_len": str(K)}, label=f"task={task}", runs=[r])

    untrained = [setting("adding", (0,)), setting("parity", (0,))]
    cells, tasks, grid = at.across_tasks(untrained)
    at.plot_across_tasks(grid, cells, tasks, tmp_path / "a.png")
    assert len(seen[-1]) == 2  # one prediction per task panel, the last probe being the one at init
    trained = [setting("adding", (0, 100)), setting("parity", (0, 100))]
    cells, tasks, grid = at.across_tasks(trained)
    at.plot_across_tasks(grid, cells, tasks, tmp_path / "b.png")
    assert seen[-1] == []  # the last probe is after training: mean-field does not describe it
