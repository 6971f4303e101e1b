"""What ``python -m seqlab.report`` prints and draws when the runs lack something: a curve the model
does not have (an RNN has no c_l0), gradient norms (a run shorter than log_every), probe lags that
underflowed to 0 in every run."""
import json
import struct
import warnings

import numpy as np
import pytest

from seqlab import report
from seqlab.report import figures
from test_report import make_run


def png_height(path) -> int:
    return struct.unpack(">II", path.read_bytes()[16:24])[1]


def add_cell_curve(run_dir, gains):
    """Give an LSTM run's probe a c_l0 curve with its own gains (so numbers show which curve they came from)."""
    with np.load(run_dir / "probe.npz") as z:
        arrays = {k: z[k] for k in z.files}
    lags = arrays["lags"]
    arrays["curves"] = np.array(["h_l0", "c_l0"])
    arrays["mean_c_l0"] = np.stack([g ** lags for g in gains])
    arrays["gain_c_l0"] = np.array(gains, dtype=float)
    arrays["half_life_c_l0"] = np.log(2) / -np.log(np.array(gains))
    arrays["horizon_c_l0"] = arrays["horizon_h_l0"]
    np.savez(run_dir / "probe.npz", **arrays)


@pytest.fixture
def mixed(tmp_path):
    """rnn and lstm, 2 seeds each, T=50; only the lstm has a cell state."""
    root = tmp_path / "sweep"
    n = 0
    for model in ("rnn", "lstm"):
        for seed in (0, 1):
            d = make_run(root, n, model=model, seq_len=50, seed=seed, status="finished", gains=(0.6, 0.7))
            if model == "lstm":
                add_cell_curve(d, (0.9, 0.99))
            n += 1
    return root


def test_curve_asked_for_is_never_replaced_by_another(mixed, capsys):
    assert report.main([str(mixed), "--curve", "c_l0"]) == 0
    data = json.loads((mixed / "report" / "report.json").read_text())
    rows = {s["label"]: s for s in data["settings"]}
    assert rows["model=lstm"]["gain"]["mean"] == pytest.approx(0.99)  # c_l0's gain, not h_l0's 0.7
    assert rows["model=lstm"]["curves"] == ["c_l0"]
    assert rows["model=rnn"]["curves"] == [] and rows["model=rnn"]["gain"]["n"] == 0  # empty, not h_l0
    assert rows["model=rnn"]["lyapunov_max"]["n"] == 2  # the layer's exponents do not depend on the curve
    md = (mixed / "report" / "report.md").read_text()
    assert "`c_l0` was not measured in model=rnn (T=50)" in md
    out = capsys.readouterr().out
    assert "half-life c_l0" in out and "## Runs" not in out and "|" not in out


def test_curve_no_run_has_is_one_line_and_writes_nothing(mixed, capsys):
    rnn_only = [str(mixed / "0"), str(mixed / "1")]
    assert report.main([*rnn_only, "--curve", "c_l0", "-o", str(mixed / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["seqlab.report: error: --curve c_l0: no run has this probe curve; curves in these runs: h_l0"]
    assert not (mixed / "out").exists()


def test_default_curve_falls_back_and_says_so(tmp_path):
    """A cell without h_l0 (coRNN probes y_l0): the default shows its first curve, labelled as such."""
    d = make_run(tmp_path / "s", 0, model="cornn", seq_len=50, seed=0, status="finished")
    with np.load(d / "probe.npz") as z:
        arrays = {k.replace("h_l0", "y_l0"): z[k] for k in z.files}
    arrays["curves"] = np.array(["y_l0"])
    np.savez(d / "probe.npz", **arrays)
    out = tmp_path / "r"
    assert report.main([str(d), "-o", str(out)]) == 0
    assert "their probe numbers and decay curves are for y_l0" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["settings"][0]["gain"]["n"] == 1


def test_short_runs_get_no_empty_gradient_norm_panels(tmp_path):
    long_run = make_run(tmp_path / "a", 0, model="rnn", seq_len=50, seed=0, status="finished")
    short = make_run(tmp_path / "b", 0, model="rnn", seq_len=50, seed=0, status="finished")
    # shorter than log_every: evaluations at 0 and 3, no gradient norm
    (short / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "eval/loss": 0.2}) + "\n" for s in (0, 3)))
    runs = report.load_runs([short])
    assert [k for k, _ in figures.learning_rows(runs)] == ["eval/loss"]
    assert [k for k, _ in figures.learning_rows(report.load_runs([long_run]))] == ["eval/loss", "train/grad_norm"]
    assert report.main([str(short), "-o", str(tmp_path / "rs")]) == 0
    assert report.main([str(long_run), "-o", str(tmp_path / "rl")]) == 0
    one_row, two_rows = (png_height(tmp_path / d / "learning_curves.png") for d in ("rs", "rl"))
    assert one_row < 0.75 * two_rows


def test_runs_that_did_not_train_get_no_learning_curves_and_the_report_says_so(tmp_path):
    run = make_run(tmp_path / "z", 0, model="rnn", seq_len=50, seed=0, status="finished")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval/loss": 0.2}) + "\n")  # steps=0
    assert report.main([str(run), "-o", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / "learning_curves.png").exists()  # one point per run is no curve
    assert "No learning curves: no run evaluated after step 0" in (tmp_path / "out" / "report.md").read_text()


def test_lags_that_underflowed_in_every_run_warn_nothing(tmp_path):
    """A tanh RNN's g(k) reaches float32's 0 beyond some lag in every seed: a gap in the curve, no warning."""
    root = tmp_path / "s"
    for seed in (0, 1):
        d = make_run(root, seed, model="rnn", seq_len=50, seed=seed, status="finished")
        with np.load(d / "probe.npz") as z:
            arrays = {k: z[k] for k in z.files}
        arrays["mean_h_l0"][:, 5:] = 0.0
        np.savez(d / "probe.npz", **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert report.main([str(root)]) == 0
    settings = report.group_runs(report.load_runs([root]))
    lags, g = figures._mean_log_curve(settings[0].runs, lambda p: "h_l0", "final")
    assert np.isnan(g[5:]).all() and np.isfinite(g[:5]).all()
