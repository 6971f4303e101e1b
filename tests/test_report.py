"""The offline comparison report, on run directories written here by hand (no training).

A sweep model=rnn,lstm x seed=0,1,2 at T=50, plus one rnn setting at T=100: the
lstm's seed 2 failed, the rnn's seed 2 was killed (no summary.json), and one run
died before it wrote anything but Hydra's own files. The table must say what the
summaries say, average over seeds right, and mark every run that did not finish.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from seqlab import report

BASELINE = 1 / 6


def make_run(root: Path, num: int, *, model: str, seq_len: int, seed: int, status: str | None,
             final_loss: float = 0.1, solved_step: int | None = None, gains=(0.9, 0.95), lyap=(-0.1, -0.05),
             write_config: bool = True, probe: bool = True) -> Path:
    """One run directory as seqlab writes it (``status=None``: no summary.json, i.e. unfinished)."""
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    overrides = [f"model={model}", f"seq_len={seq_len}", f"seed={seed}", "logger=none"]
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"seq_len": seq_len, "seed": seed, "steps": 20,
              "choices": {"task": "adding", "model": model, "optim": "adam"}}
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "choices"}))
    (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(
        {"hydra": {"runtime": {"choices": {**config["choices"], "hydra/launcher": "basic"}}}}))
    if not write_config:
        return d
    (d / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [{"step": s, "eval/loss": BASELINE * (1 - s / 40), "train/grad_norm": 1.0 + s} for s in (0, 10, 20)]
    if status is None:
        rows = rows[:2]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if probe:
        K = 8
        lags = np.arange(K)
        arrays = {"steps": np.array([0, 20]), "lags": lags, "loss_steps": np.array([seq_len - 1]),
                  "task_lag": np.array(seq_len - 1), "curves": np.array(["h_l0"])}
        arrays["mean_h_l0"] = np.stack([g ** lags for g in gains])
        arrays["gain_h_l0"] = np.array(gains, dtype=float)
        arrays["half_life_h_l0"] = np.array([math.log(2) / -math.log(g) if g < 1 else math.inf for g in gains])
        arrays["horizon_h_l0"] = np.array([K - 1, K - 1], dtype=float)
        arrays["lyapunov_l0"] = np.array([[lyap[0], lyap[0] - 1], [lyap[1], lyap[1] - 1]])
        np.savez(d / "probe.npz", **arrays)
    if status is not None:
        summary = {"status": status, "task": "adding", "model": model, "baseline": BASELINE,
                   "solved": solved_step is not None, "solved_step": solved_step, "steps": 20}
        if status == "finished":
            summary.update(final_loss=final_loss, loss_over_baseline=final_loss / BASELINE)
        else:
            summary["error"] = "RuntimeError: injected failure"
        (d / "summary.json").write_text(json.dumps(summary))
    return d


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "multirun" / "2026-11-22" / "21-50-00"
    (root / "multirun.yaml").parent.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    n = 0
    spec = [  # model, seed, status, final loss, solved step, gains (init, end), lyapunov (init, end)
        ("rnn", 0, "finished", 0.16, None, (0.8, 0.85), (-0.2, -0.1)),
        ("rnn", 1, "finished", 0.15, None, (0.8, 0.75), (-0.2, -0.3)),
        ("rnn", 2, None, None, None, (0.8, 0.8), (-0.2, -0.2)),
        ("lstm", 0, "finished", 0.004, 10, (0.9, 0.99), (-0.1, -0.01)),
        ("lstm", 1, "finished", 0.008, 20, (0.9, 0.97), (-0.1, -0.03)),
        ("lstm", 2, "failed", None, None, (0.9, 0.9), (-0.1, -0.1)),
    ]
    for model, seed, status, loss, solved, gains, lyap in spec:
        make_run(root, n, model=model, seq_len=50, seed=seed, status=status, final_loss=loss,
                 solved_step=solved, gains=gains, lyap=lyap)
        n += 1
    make_run(root, n, model="rnn", seq_len=100, seed=0, status="finished", final_loss=0.17, probe=False)
    make_run(root, n + 1, model="gru", seq_len=100, seed=0, status=None, write_config=False)
    (root / "0" / "wandb" / "offline-run-x").mkdir(parents=True)  # never mistaken for a run
    return root


def test_finds_every_run_dir_and_reads_status(sweep):
    runs = report.load_runs([sweep])
    assert [r.path.name for r in runs] == [str(i) for i in range(8)]
    assert [r.status for r in runs] == ["finished", "finished", "unfinished", "finished", "finished",
                                        "failed", "finished", "unfinished"]
    assert runs[7].config["choices"]["model"] == "gru" and runs[7].metrics == []  # from Hydra's own files


def test_table_equals_the_summaries_and_averages_over_seeds(sweep):
    runs = report.load_runs([sweep])
    settings = report.group_runs(runs)
    assert [(s.label, s.seq_len, len(s.runs)) for s in settings] == [
        ("model=gru", 100, 1), ("model=lstm", 50, 3), ("model=rnn", 50, 3), ("model=rnn", 100, 1)]
    rows = {(r["label"], r["seq_len"]): r for r in (report.setting_row(s) for s in settings)}

    lstm = rows[("model=lstm", 50)]
    assert lstm["runs"] == 3 and lstm["finished"] == 2 and lstm["status"] == {"finished": 2, "failed": 1}
    mean, std, n = lstm["final_loss"]
    assert n == 2 and mean == pytest.approx(0.006) and std == pytest.approx(np.std([0.004, 0.008], ddof=1))
    assert lstm["loss_over_baseline"][0] == pytest.approx(0.006 / BASELINE)
    assert lstm["solved"] == 2 and lstm["solved_step"][:2] == pytest.approx((15, np.std([10, 20], ddof=1)))
    # probe numbers: the end of training over finished runs; step 0 over every run that probed
    assert lstm["gain"][0] == pytest.approx(0.98) and lstm["gain"][2] == 2
    hl = [math.log(2) / -math.log(g) for g in (0.99, 0.97)]
    assert lstm["half_life"][:2] == pytest.approx((np.mean(hl), np.std(hl, ddof=1)))
    assert lstm["half_life_init"][2] == 3 and lstm["half_life_init"][0] == pytest.approx(math.log(2) / -math.log(0.9))
    assert lstm["lyapunov_max"][:2] == pytest.approx((-0.02, np.std([-0.01, -0.03], ddof=1)))

    rnn = rows[("model=rnn", 50)]
    assert rnn["status"] == {"finished": 2, "unfinished": 1} and rnn["solved"] == 0
    assert rnn["final_loss"][0] == pytest.approx(0.155) and rnn["solved_step"][2] == 0
    single = rows[("model=rnn", 100)]
    assert single["final_loss"] == (pytest.approx(0.17), pytest.approx(math.nan, nan_ok=True), 1)
    assert single["half_life"][2] == 0  # no probe.npz: nothing to average


def test_report_files_mark_failed_and_unfinished_runs(sweep, capsys):
    assert report.main([str(sweep), "--title", "test sweep"]) == 0
    out = sweep / "report"
    for name in ("report.md", "report.html", "report.json", "decay_curves.png", "learning_curves.png",
                 "probe_vs_seq_len.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    assert "| model=lstm | 50 | 2/3 (1 failed) | 0.1667 | 0.006 ± 0.0028 |" in md
    assert "| model=rnn | 50 | 2/3 (1 unfinished) |" in md
    assert "| 5 | model=lstm | 50 | 2 | FAILED | — | — | RuntimeError: injected failure |" in md
    assert "| 2 | model=rnn | 50 | 2 | UNFINISHED |" in md and "last eval at step 10" in md
    assert "killed before its first evaluation" in md  # run 7: only Hydra's files
    html = (out / "report.html").read_text()
    assert html.count("class=\"bad\"") == 3
    data = json.loads((out / "report.json").read_text())
    assert [r["status"] for r in data["runs"]].count("finished") == 5
    lstm = next(s for s in data["settings"] if s["label"] == "model=lstm")
    assert lstm["final_loss"]["mean"] == pytest.approx(0.006) and lstm["final_loss"]["n"] == 2
    assert "report.html" in capsys.readouterr().out


def test_single_run_dirs_and_bad_paths(sweep, tmp_path, capsys):
    out = tmp_path / "r"
    assert report.main([str(sweep / "3"), str(sweep / "4"), "-o", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    assert len(data["settings"]) == 1 and data["settings"][0]["seeds"] == [0, 1]
    assert report.main([str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "no run directories" in capsys.readouterr().err


def test_mean_std_handles_inf_and_nan():
    assert report.mean_std([1.0, math.inf])[0] == math.inf
    assert report.mean_std([None, math.nan, 2.0]) == (2.0, pytest.approx(math.nan, nan_ok=True), 1)
    assert report.fmt((math.inf, math.nan, 2), 2) == "∞" and report.fmt((math.nan, math.nan, 0), 2) == "—"
