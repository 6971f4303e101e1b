"""The report's trainability analysis on run directories written here with a known answer.

24 runs: rnn/lstm/gru x T = 20/40 x 4 gains. A run solves exactly when its step-0 gradient at
the task's lag, g(lag)/g(0) = gain^lag, is above 1e-2 (and the unsolved ones are below 1e-4).
Every cell and every T has half its runs solved, and lambda1 and the horizon are the same for
all: those predictors know nothing, the gradient statistics know everything.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from seqlab.report import load_runs
from seqlab.report.cli import main as report_main
from seqlab.report.trainability import trainability

BASELINE = 1 / 6


def make_run(root: Path, num: int, *, cell: str, T: int, gain: float, solved: bool, status="finished",
             probe=True) -> None:
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={cell}", f"seq_len={T}", f"seed={num}"]))
    (d / "config.yaml").write_text(yaml.safe_dump({"seq_len": T, "seed": num, "choices": {"task": "adding",
                                                                                          "model": cell}}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 0, "eval/loss": BASELINE}) + "\n")
    if probe:
        lag, lags = T - 1, np.arange(T)
        np.savez(d / "probe.npz", steps=np.array([0]), lags=lags, loss_steps=np.array([lag]),
                 task_lag=np.array(lag), curves=np.array(["h_l0"]), mean_h_l0=(gain ** lags)[None],
                 gain_h_l0=np.array([gain]), half_life_h_l0=np.array([math.log(2) / -math.log(gain)]),
                 horizon_h_l0=np.array([5.0]), lyapunov_l0=np.array([[-0.1, -0.2]]))
    loss = 0.001 if solved else 0.16
    summary = {"status": status, "task": "adding", "model": cell, "baseline": BASELINE, "solved": solved,
               "solved_step": 100 if solved else None, "final_loss": loss, "loss_over_baseline": loss / BASELINE}
    (d / "summary.json").write_text(json.dumps(summary))


def known_sweep(root: Path, n_extra_failed=1) -> Path:
    num = 0
    for cell in ("rnn", "lstm", "gru"):
        for T in (20, 40):
            lag = T - 1
            # log10 g(lag)/g(0) = lag log10 gain: -1, -1.5 (solved); -5, -6 (not)
            for target, solved in ((-1.0, True), (-1.5, True), (-5.0, False), (-6.0, False)):
                make_run(root, num, cell=cell, T=T, gain=10 ** (target / lag), solved=solved)
                num += 1
    for _ in range(n_extra_failed):  # left out: no outcome; and a run without a probe
        make_run(root, num, cell="rnn", T=20, gain=0.9, solved=False, status="failed")
        make_run(root, num + 1, cell="rnn", T=20, gain=0.9, solved=True, probe=False)
        num += 2
    return root


def by_name(result):
    return {r["predictor"]: r for r in result["predictors"]}


def test_known_answer(tmp_path):
    result = trainability(load_runs([known_sweep(tmp_path / "sweep")]))
    assert result["runs"] == 24 and result["solved"] == 12
    assert result["left_out"] == {"without an outcome (failed, unfinished, preempted)": 1,
                                  "without a step-0 probe": 1}
    p = by_name(result)
    for key in ("log_g_lag", "log_gain_lag", "half_life_over_lag"):  # all monotone in gain^lag
        assert p[key]["auc"] == 1.0 and p[key]["accuracy"] == 1.0 and p[key]["direction"] == ">="
        assert p[key]["cv_accuracy"][0] == 1.0 and p[key]["cv_auc"][0] == 1.0
    assert -5.0 < p["log_g_lag"]["threshold"] < -1.5
    for key in ("lyapunov_max", "horizon_over_lag"):  # the same value for every run: no information
        assert p[key]["auc"] == 0.5
    for key in ("cell", "T", "cell_T", "setting"):  # half of every cell, T and setting solves
        assert p[key]["auc"] == 0.5 and p[key]["cv_accuracy"][0] <= 0.6
    assert p["majority"]["cv_accuracy"][0] <= 0.6
    assert p["classifier"]["cv_accuracy"][0] >= 0.95
    assert result["misses"] == []
    within = {w["cell"]: w for w in result["within_cell"]}
    assert set(within) == {"rnn", "lstm", "gru"} and within["gru"]["auc"]["log_g_lag"] == 1.0


def test_report_writes_the_section_figure_and_json(tmp_path):
    root = known_sweep(tmp_path / "sweep")
    assert report_main([str(root), "-o", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Trainability" in md and "| log10 g(lag)/g(0) | 1 |" in md and "cell family alone" in md
    assert (tmp_path / "out" / "trainability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "out" / "report.json").read_text()
    assert "NaN" not in text and json.loads(text)["trainability"]["solved"] == 12
    assert "Trainability" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("case", ["too few", "single outcome"])
def test_refuses_with_one_line(tmp_path, case):
    root = tmp_path / "sweep"
    n = 6 if case == "too few" else 12
    for i in range(n):
        solved = (i % 2 == 0) if case == "too few" else True
        make_run(root, i, cell="rnn", T=20, gain=0.9 if solved else 0.5, solved=solved)
    result = trainability(load_runs([root]))
    line = result["refused"]
    assert "\n" not in line and line.startswith("trainability: not computed")
    assert ("too few runs" if case == "too few" else "a single outcome") in line
    assert report_main([str(root), "-o", str(tmp_path / "out")]) == 0  # the rest of the report is written
    md = (tmp_path / "out" / "report.md").read_text()
    section = md.split("## Trainability")[1].split("## Runs")[0].strip().splitlines()
    assert [s for s in section[1:] if s.strip()] == [line]  # nothing left out here
    assert not (tmp_path / "out" / "trainability.png").exists()
