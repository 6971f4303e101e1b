"""The report's depth-axis figures (seqlab.report.layers) from run directories' numbers."""
from pathlib import Path

import numpy as np

from seqlab.report.layers import _depth_at, layer_groups, plot_depth_curves, plot_layer_speed
from seqlab.report.runs import Run, Setting

PNG = b"\x89PNG\r\n\x1a\n"


def run(metrics=(), probe=None, status="finished", lag=0):
    return Run(path=Path("."), status=status, config={"seq_len": 10, "choices": {"task": "random_labels"}},
               overrides=[], summary={"lag": lag}, metrics=list(metrics), probe=probe)


def speed_rows(scale):
    return [{"step": s, **{f"train/update_ratio/{g}": scale * (i + 1) * 1e-3 for i, g in enumerate(["l0", "l1", "l10", "readout"])},
             **{f"train/grad_norm/{g}": scale * 0.1 for g in ["l0", "l1", "l10", "readout"]}} for s in (50, 100)]


def test_layer_speed_orders_layers_numerically_and_needs_logged_ratios(tmp_path):
    runs = [run(speed_rows(1.0)), run(speed_rows(4.0))]
    assert layer_groups(runs) == ["l0", "l1", "l10", "readout"]
    path = plot_layer_speed([Setting(items={}, label="a", runs=runs)], tmp_path / "speed.png")
    assert path.read_bytes()[:8] == PNG
    assert plot_layer_speed([Setting(items={}, label="b", runs=[run([{"step": 0, "eval/loss": 1.0}])])],
                            tmp_path / "none.png") is None


def probe_new(g0, grads):
    return {"steps": np.array([0, 5]), "curves": np.array(["h_l0", "h_l1", "h_l2"]),
            "depth_h_lag0": np.stack([g0, g0 * 2]), "param_groups": np.array(["l0", "readout", "l1", "l2"]),
            "param_grad_norm": np.stack([grads, grads])}


def probe_old(g0):  # before the depth axis: only the lag curves
    return {"steps": np.array([0, 5]), "curves": np.array(["h_l0", "h_l1"]),
            **{f"mean_h_l{i}": np.array([[g0[i], 0.1], [g0[i] * 3, 0.1]]) for i in range(2)}}


def test_depth_curves_read_new_and_old_probe_files(tmp_path):
    new = run(probe=probe_new(np.array([1e-3, 1e-2, 1e-1]), np.array([1.0, 9.0, 2.0, 3.0])))
    g, grads = _depth_at(new, "init")
    np.testing.assert_array_equal(g, [1e-3, 1e-2, 1e-1])
    np.testing.assert_array_equal(grads, [1.0, 2.0, 3.0, 9.0])  # layers in order, the readout last
    g, grads = _depth_at(run(probe=probe_old(np.array([0.5, 2.0]))), "final")
    np.testing.assert_array_equal(g, [1.5, 6.0])
    assert grads is None
    one_layer = run(probe={"steps": np.array([0]), "curves": np.array(["h_l0"]), "mean_h_l0": np.ones((1, 3))})
    assert _depth_at(one_layer, "init") is None
    settings = [Setting(items={}, label="new", runs=[new]), Setting(items={}, label="old", runs=[run(probe=probe_old(np.ones(2)))])]
    assert plot_depth_curves(settings, tmp_path / "depth.png").read_bytes()[:8] == PNG
    assert plot_depth_curves([Setting(items={}, label="one", runs=[one_layer])], tmp_path / "x.png") is None
