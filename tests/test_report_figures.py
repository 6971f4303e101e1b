"""The report's figures at the size of a real comparison (the README's 25 remedies): every setting
drawn, none sharing a colour and marker in a panel, labels that fit, figure sizes that follow the
content, seed means that stop where a seed's gradient underflowed."""
import math
from pathlib import Path

import numpy as np
import pytest

from seqlab.report import figures
from seqlab.report.figures import (PANEL_LINES, display_labels, panel_groups, plot_decay_curves,
                                   plot_probe_vs_seq_len, styles)
from seqlab.report.layers import _geo_series, plot_depth_curves, plot_layer_speed
from seqlab.report.runs import Run, Setting

# the README's comparison: remedy -> cell
REMEDIES = {**{f"rnn_{x}": "rnn" for x in ("tanh", "sigmoid", "relu", "leaky_relu", "gelu", "linear", "xavier",
                                        "kaiming", "orthogonal", "layernorm", "stack2", "stack2_residual",
                                        "clip_norm", "clip_value")},
            "irnn": "rnn", "lstm": "lstm", "lstm_forget1": "lstm", "lstm_chrono": "lstm", "lstm_layernorm": "lstm",
            "gru": "gru", "gru_chrono": "gru", "gru_layernorm": "gru", "indrnn": "indrnn", "exprnn": "exprnn",
            "lru": "lru"}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def run(gain: float, steps=(0,), metrics=(), layers=1, seed=0) -> Run:
    lags = np.arange(50)
    probe = {"steps": np.array(steps), "lags": lags, "curves": np.array([f"h_l{i}" for i in range(layers)]),
             "task_lag": np.array(49)}
    for i in range(layers):
        probe[f"mean_h_l{i}"] = np.stack([gain ** lags * (i + 1) for _ in steps])
    if layers > 1:
        probe["depth_h_lag0"] = np.stack([np.arange(1.0, layers + 1) for _ in steps])
    return Run(path=Path("."), status="finished", config={"seq_len": 50, "seed": seed, "choices": {"task": "adding"}},
               overrides=[], summary={"lag": 49, "baseline": 1 / 6}, metrics=list(metrics), probe=probe)


def remedy_settings(**kw) -> list[Setting]:
    return [Setting(items={"model": cell, "remedy": name, "task": "adding", "seq_len": "50"},
                    label=f"model={cell} remedy={name}", runs=[run(0.5 + 0.02 * i, **kw)])
            for i, (name, cell) in enumerate(sorted(REMEDIES.items(), key=lambda kv: (kv[1], kv[0])))]


def test_25_settings_are_split_into_panels_by_cell_with_none_dropped():
    settings = remedy_settings()
    groups = panel_groups(settings)
    assert sorted(s.label for g in groups for s in g) == sorted(s.label for s in settings)  # every one, once
    assert all(len(g) <= PANEL_LINES for g in groups)
    assert [len(g) for g in groups if {s.items["model"] for s in g} == {"rnn"}] == [8, 7]  # split evenly
    assert any({s.items["model"] for s in g} == {"lstm"} for g in groups)  # a family that fits stays whole
    for g in groups:  # within a panel: a colour and a marker each
        st = styles(g)
        assert len({(v["color"], v["marker"]) for v in st.values()}) == len({v["color"] for v in st.values()}) == len(g)
    names = display_labels(settings)
    assert names["model=rnn remedy=rnn_tanh"] == "rnn_tanh" and names["model=lru remedy=lru"] == "lru"


def test_decay_and_probe_figures_draw_every_setting_at_a_size_that_follows_them(tmp_path):
    settings = remedy_settings()
    path = plot_decay_curves(settings, tmp_path / "decay.png")
    assert path is not None
    few = plot_decay_curves(settings[:3], tmp_path / "few.png")
    (w25, h25), (w3, h3) = png_size(path), png_size(few)
    assert w25 > 2 * w3 and h25 < 1.3 * h3  # four panels side by side, not one panel under a taller legend
    rows = [{"label": s.label, "seq_len": 50, **{f"{k}{at}": (0.5 + i, 0.0, 1) for k, _ in figures.PROBE_PANELS
                                                 for at in ("", "_init")}} for i, s in enumerate(settings)]
    big = plot_probe_vs_seq_len(rows, tmp_path / "probe.png", trained=False)
    small = plot_probe_vs_seq_len(rows[:5], tmp_path / "probe5.png", trained=False)
    assert png_size(big)[1] > 2.5 * png_size(small)[1]  # a row per setting: the height follows the count


def test_untrained_runs_get_their_step_0_probe_once(tmp_path, monkeypatch):
    rows = [{"label": f"x={i}", "seq_len": 50, **{f"{k}{at}": (0.5 + i, 0.0, 1) for k, _ in figures.PROBE_PANELS
                                                 for at in ("", "_init")}} for i in range(3)]
    drawn = []
    real = figures._save

    def spy(plt, fig, path, title, what):
        drawn.append([len(ax.containers) for ax in fig.axes])
        real(plt, fig, path, title, what)

    monkeypatch.setattr(figures, "_save", spy)
    plot_probe_vs_seq_len(rows, tmp_path / "a.png", trained=False)
    plot_probe_vs_seq_len(rows, tmp_path / "b.png", trained=True)
    assert drawn == [[1] * 4, [2] * 4]  # steps=0: the last probe is the step-0 probe, one set of points


def test_layer_speed_keeps_every_setting(tmp_path):
    rows = [{"step": s, "train/update_ratio/l0": 1e-3, "train/grad_norm/l0": 0.1,
             "train/update_ratio/readout": 1e-3, "train/grad_norm/readout": 0.1} for s in (10, 20)]
    settings = [Setting(items={"model": "rnn"}, label=f"x={i}", runs=[run(0.9, metrics=rows)]) for i in range(9)]
    nine = plot_layer_speed(settings, tmp_path / "nine.png")
    two = plot_layer_speed(settings[:2], tmp_path / "two.png")
    (w9, h9), (w2, h2) = png_size(nine), png_size(two)
    assert h9 > 1.6 * h2 and w9 < 3 * w2  # the 9th setting is a second row, not dropped, not 4000 px wide


def test_depth_curves_have_whole_layer_ticks(tmp_path, monkeypatch):
    settings = [Setting(items={"model": "rnn"}, label=f"x={i}", runs=[run(0.9, layers=2)]) for i in range(2)]
    seen = []
    real = figures._save

    def spy(plt, fig, path, title, what):
        seen.extend(t for ax in fig.axes if ax.get_xlabel().startswith("layer") for t in ax.get_xticks())
        real(plt, fig, path, title, what)

    monkeypatch.setattr("seqlab.report.layers._save", spy)
    assert plot_depth_curves(settings, tmp_path / "depth.png") is not None
    assert seen and all(float(t).is_integer() for t in seen)


def test_seed_means_stop_where_a_seed_underflowed():
    a, b = run(0.5, seed=0), run(0.5, seed=1)
    b.probe["mean_h_l0"][0, 30:] = 0.0  # one seed's gradient underflowed from lag 30
    lags, g = figures._mean_log_curve([a, b], lambda p: "h_l0", "init")
    assert np.isfinite(g[:30]).all() and np.isnan(g[30:]).all()  # no mean of the other seed alone (a kink)
    assert g[10] == pytest.approx(0.5 ** 10)
    rows_a = [{"step": s, "train/grad_norm/l0": 1.0} for s in (1, 2)]
    rows_b = [{"step": 1, "train/grad_norm/l0": 4.0}, {"step": 2, "train/grad_norm/l0": 0.0}]
    steps, y = _geo_series([run(0.5, metrics=rows_a), run(0.5, metrics=rows_b)], "train/grad_norm/l0")
    assert steps.tolist() == [1] and y[0] == pytest.approx(math.sqrt(4.0))
