"""What W&B gets from the probe: every probe's (layer x lag) grid as a table, native series
against probe/lag and probe/layer, through a fake tracker and through an offline run's records."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.models import LSTMLayer, SequenceModel
from seqlab.probe import ProbeSettings, probe
from seqlab.probe.records import GRID_COLUMNS, GRID_TABLE, grid_table, log_probe, table_lags
from seqlab.tasks import Adding
from seqlab.train import RunInfo, train


class FakeTracker:
    """Records what a tracker is handed."""

    run_id = "fake"

    def __init__(self):
        self.rows, self.tables, self.axes, self.images = [], [], [], []

    def log(self, row):
        self.rows.append(row)

    def table(self, name, columns, rows, extra=None):
        self.tables.append((name, columns, rows, extra))

    def define_axis(self, x, glob):
        self.axes.append((x, glob))

    def image(self, name, path):
        self.images.append((name, path))


@pytest.fixture(scope="module")
def result():
    task = Adding(seq_len=5)
    torch.manual_seed(0)
    model = SequenceModel(LSTMLayer, task.input_size, task.output_size, hidden_size=4, num_layers=3).double()
    b = task.make_batch(6, torch.Generator().manual_seed(0))
    r = probe(model, task, type(b)(b.inputs.double(), b.targets.double()), ProbeSettings(lyapunov_k=0))
    r.curves.mean["h_l0"][-1] = 0.0  # an underflowed cell
    return r


def test_every_probe_logs_its_grid_table_and_scalars(result):
    t = FakeTracker()
    log_probe(t, 250, result, (), task_lag=4)
    ((name, columns, rows, extra),) = t.tables
    assert name == GRID_TABLE and columns == GRID_COLUMNS and extra == {"step": 250}
    assert len(rows) == 2 * 3 * 5  # states x layers x lags
    c = result.curves
    by = {(r[columns.index("key")], r[columns.index("lag")]): dict(zip(columns, r)) for r in rows}
    for key in c.keys:
        state, layer = key.rsplit("_l", 1)
        top = c.mean[f"{state}_l2"]
        for k in range(5):
            row = by[(key, k)]
            g = c.mean[key][k]
            assert row["step"] == 250 and row["state"] == state and row["layer"] == int(layer)
            assert row["q25"] == c.quartiles[key][0][k] and row["q75"] == c.quartiles[key][2][k]
            if g == 0:  # underflow: no number on a log scale
                assert row["g"] == 0.0 and row["log10_g"] is None and row["log10_g_norm"] is None
                continue
            assert row["g"] == g and row["log10_g"] == pytest.approx(math.log10(g))
            assert row["g_norm"] == pytest.approx(g / c.mean[key][0]) and row["g_norm_depth"] == pytest.approx(g / top[k])
            assert row["log10_g_norm"] == pytest.approx(math.log10(g / c.mean[key][0]))
    assert by[("h_l0", 0)]["g_norm"] == 1.0 and by[("c_l2", 3)]["g_norm_depth"] == 1.0
    (scalars,) = t.rows
    assert scalars["step"] == 250
    assert scalars["probe_summary/depth_h_lag0/gain"] == result.depth_fits["h_lag0"]["gain"]
    assert scalars["probe_summary/param_grad_norm/l0"] == c.param_grad_norm["l0"]
    assert scalars["probe_summary/h_l0/gain"] == result.fits["h_l0"]["gain"]
    assert not [k for k in scalars if k.rsplit("/", 1)[-1] in ("fit_lags", "n_lags", "log_gain", "fit_layers")]
    assert not t.axes  # no native series for a probe between the first and the last


def test_first_and_last_probes_log_series_against_lag_and_layer(result):
    t = FakeTracker()
    log_probe(t, 0, result, ("init",), task_lag=4, grid_image="grid.png")
    assert t.axes == [("probe/lag", "probe/*"), ("probe/layer", "probe_depth/*")]
    assert t.images == [("probe_figures/probe_grid_at_step", "grid.png")]
    lag = [r for r in t.rows if "probe/lag" in r]
    depth = [r for r in t.rows if "probe/layer" in r]
    assert [r["probe/lag"] for r in lag] == list(range(5))
    c = result.curves
    for k, row in enumerate(lag):
        g = c.mean["c_l1"]
        assert row["probe/init/c_l1"] == g[k] and row["probe/init/c_l1_norm"] == pytest.approx(g[k] / g[0])
        # two charts per curve, g and g/g(0): W&B's log axis shows the decades, the table the quartiles
        assert set(row) == {"probe/lag"} | {f"probe/init/{key}{x}" for key in c.keys for x in ("", "_norm")}
    assert lag[-1]["probe/init/h_l0"] == 0.0 and lag[-1]["probe/init/h_l0_norm"] == 0.0  # underflowed: 0
    assert [r["probe/layer"] for r in depth] == [0, 1, 2, 3]  # 3 = the readout's parameters
    for layer in range(3):
        row = depth[layer]
        assert row["probe_depth/init/h_lag0"] == c.mean[f"h_l{layer}"][0]
        assert row["probe_depth/init/c_lag0_norm"] == pytest.approx(c.mean[f"c_l{layer}"][0] / c.mean["c_l2"][0])
        assert row["probe_depth/init/h_total"] == c.total[f"h_l{layer}"]
        assert row["probe_depth/init/param_grad_norm"] == c.param_grad_norm[f"l{layer}"]
    assert depth[3] == pytest.approx({"probe/layer": 3, "probe_depth/init/param_grad_norm": c.param_grad_norm["readout"],
                                      "probe_depth/init/param_grad_norm_norm": c.param_grad_norm["readout"] / c.param_grad_norm["l2"]})


def test_long_grids_keep_under_the_table_row_limit_with_the_lags_that_matter():
    lags = table_lags(1000, 32, task_lag=777, max_rows=10_000)
    assert 32 * len(lags) == 10_000 - 10_000 % 32 and {0, 777, 999} <= set(lags.tolist())
    assert np.all(np.diff(lags) > 0)
    assert table_lags(200, 16).tolist() == list(range(200))  # 3200 rows: all of them


def test_a_small_table_limit_thins_the_lags(result):
    columns, rows = grid_table(result, 0, task_lag=4, max_rows=18)  # 6 curves: 3 lags each
    assert sorted({r[columns.index("lag")] for r in rows}) == [0, 2, 4]
    assert len(rows) == 18


def test_offline_run_records_tables_series_and_axes(tmp_path):
    from wandb_records import wandb_records

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "logger=wandb", "progress=false", "task=adding", "seq_len=5", "model.num_layers=2", "model.hidden_size=4",
            "batch_size=4", "eval_size=8", "steps=2", "eval_every=2", "probe.every=1", "probe.batch_size=4",
            "probe.lyapunov_k=0", "probe.plots=false"])
    train(cfg, RunInfo(run_dir=tmp_path, name="wb"))
    (wb,) = (tmp_path / "wandb").glob("offline-run-*")
    records = wandb_records(wb)
    metrics = [r["metric"] for r in records if r["type"] == "metric"]
    assert {"name": "probe/layer", "options": {"defined": True}, "summary": {"none": True}} in metrics
    assert any(m.get("glob_name") == "probe_depth/*" and m.get("step_metric") == "probe/layer"
               and m.get("summary") == {"none": True} for m in metrics)  # a curve's points are not results
    rows = [r["history"]["item"] for r in records if r["type"] == "history"]
    tables = [row for row in rows if f"{GRID_TABLE}._type" in row]
    assert [row["step"] for row in tables] == [0, 1, 2]  # every probe, at its training step
    with np.load(tmp_path / "probe.npz") as npz:
        for i, row in enumerate(tables):
            data = json.loads((wb / "files" / row[f"{GRID_TABLE}.path"]).read_text())
            assert data["columns"] == GRID_COLUMNS and len(data["data"]) == 2 * 5
            got = {(r[1], r[4]): r[5] for r in data["data"]}  # (key, lag) -> g
            for key in ("h_l0", "h_l1"):
                np.testing.assert_allclose([got[(key, k)] for k in range(5)], npz[f"mean_{key}"][i], rtol=1e-12)
    for label in ("init", "final"):
        depth = [row for row in rows if f"probe_depth/{label}/h_lag0" in row]
        assert [row["probe/layer"] for row in depth] == [0, 1]
        assert depth[-1][f"probe_depth/{label}/h_lag0_norm"] == pytest.approx(1.0)
    assert not any("probe_figures/probe_grid_at_step" in k for row in rows for k in row)  # probe.plots=false
