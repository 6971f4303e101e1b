"""The last traceback families and the "accepted but wrong" cases of issue 22: each ends in one line
and a non-zero exit with nothing written, or is accepted correctly (and said so). In-process where the
check runs before Hydra (fast), through the CLI where the user meets it after a run started."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seqlab import __main__ as entry
from seqlab import claims, demo
from seqlab.probe import __main__ as probe_entry
from seqlab.report.cli import main as report_main

TINY = ["task=adding", "seq_len=5", "model.hidden_size=4", "batch_size=4", "eval_size=8", "log_every=1",
        "eval_every=1", "checkpoint_every=1", "probe.every=1", "probe.batch_size=2", "probe.lyapunov_k=1",
        "probe.lyapunov_steps=0", "probe.plots=false", "progress=false", "logger=none", "threads=1"]


def in_process(main, argv, capsys, monkeypatch, tmp_path, prog="seqlab"):
    """Run an entry point's ``main`` with ``argv`` in ``tmp_path``; (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [prog, *argv])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err


def assert_one_line(code, err, *words):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("argv, words", [
    (["-m", "seed=range(0,10,0)"], ["seed=range(0,10,0)", "cannot be expanded"]),
    (["-m", "seed=range(5,1)"], ["seed=range(5,1)", "no values"]),
    (["-m", "model=glob(zzz*)"], ["model=glob(zzz*)", "no option of conf/model/"]),
    (["hydra.run.dir=${oc.env:SEQLAB_SURELY_UNSET}"], ["hydra.run.dir=", "SEQLAB_SURELY_UNSET"]),
    (["-m", "seed=0,1", "hydra.sweep.dir=${oc.env:SEQLAB_SURELY_UNSET}"], ["hydra.sweep.dir=", "not found"]),
    (["+optim.capturable=true"], ["capturable=True", "fails at its first step"]),
    (["+optim.differentiable=true"], ["differentiable=True", "fails at its first step"]),
    (["~optim.lr"], ["~optim.lr", "cannot be removed"]),
    (["logger=wandb", "logger.project=" + "p" * 129], ["logger.project=", "at most 128 characters"]),
    (["logger=wandb", "logger.project=my/project"], ["logger.project='my/project'", "without any of"]),
    (["-m", "hydra/launcher=parallel", "hydra.launcher.backend=bogus", "seed=0,1"], ["hydra.launcher.backend='bogus'"]),
    (["-sc", "bogus"], ["-sc bogus", "install=bash"]),
    (["-sc", "query=tcsh"], ["-sc query=tcsh"]),
    (["--experimental-rerun", "missing.pkl"], ["--experimental-rerun missing.pkl", "refused"]),
    (["hydra.mode=MULTIRUN", "resume=somewhere"], ["resume=somewhere", "not in a sweep"]),
])
def test_a_command_line_that_cannot_run_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, words):
    tiny = [o for o in TINY if not (o == "logger=none" and any(a.startswith("logger") for a in argv))]
    code, err = in_process(entry.main, [*argv, *tiny], capsys, monkeypatch, tmp_path)
    assert_one_line(code, err, *words)
    assert list(tmp_path.iterdir()) == []


def test_the_probe_cli_output_directory_and_a_stored_config_too_large(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("x")
    for where, words in (("afile/out", ["is a file"]), ("/proc/seqlab", ["system directory"])):
        code, err = in_process(probe_entry.main, [*TINY, f"hydra.run.dir={where}"], capsys, monkeypatch, tmp_path)
        assert_one_line(code, err, *words)
    # a checkpoint whose stored config asks for a model no machine holds: the memory check, as for a command line
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from seqlab._paths import CONF_DIR
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=TINY)
    config = OmegaConf.to_container(cfg, resolve=True)
    config["model"]["hidden_size"], config["model"]["num_layers"] = 10**6, 1000
    torch.save({"model": {}, "config": config}, tmp_path / "big.pt")
    code, err = in_process(probe_entry.main, ["checkpoint=big.pt", "hydra.run.dir=out"], capsys, monkeypatch,
                           tmp_path)
    assert_one_line(code, err, "memory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "big.pt"]


def test_demo_seed_beyond_the_lab_range(capsys):
    with pytest.raises(SystemExit) as e:
        demo.main(["--seed", str(2**70)])
    assert_one_line(e.value.code, capsys.readouterr().err, "--seed=", "2^32 - 1")


def _run_dir(path: Path, probe: dict | None = None, **summary) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "seq_len": 5, "choices": {"task": "adding",
                                                                                           "model": "rnn"}}))
    (path / "summary.json").write_text(json.dumps({"status": "finished", "final_loss": 0.5, "baseline": 1.0,
                                                   "steps": 2, "seq_len": 5, **summary}))
    (path / "metrics.jsonl").write_text(json.dumps({"step": 2, "eval/loss": 0.5, "eval/accuracy": 0.5}) + "\n")
    if probe is not None:
        np.savez(path / "probe.npz", **probe)
    return path


def test_claims_with_unusable_root_or_out_or_a_damaged_probe_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for argv, words in ((["--root", str(tmp_path / "afile")], ["--root=", "is a file"]),
                        (["--root", str(tmp_path / "r"), "--out", str(tmp_path / "afile" / "x")], ["--out=", "is a file"]),
                        (["--root", "/proc/claims"], ["--root=", "system directory"])):
        code = claims.main(["decay", *argv])
        assert_one_line(code, capsys.readouterr().err, *words)
    # a sweep whose probe.npz is of another layout: read (and said so in the figure's numbers), no traceback
    for preset in ("claim_decay_depth", "claim_decay_time"):
        _run_dir(tmp_path / "root" / preset / "0", probe={"steps": np.zeros((2, 2)), "mean_h_l0": np.ones(3)})
    assert claims.main(["decay", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "figs")]) == 0
    assert "n/a" in capsys.readouterr().out


def test_the_report_reads_damaged_run_directories_and_flags_what_is_not_a_result(tmp_path, capsys):
    good = {"steps": np.array([0, 2]), "lags": np.arange(3), "task_lag": np.array(2), "curves": np.array(["h_l0"]),
            "mean_h_l0": np.ones((2, 3)), **{f"{k}_h_l0": np.ones(2) for k in ("gain", "half_life", "horizon",
                                                                                   "attenuation_decades")}}
    runs = tmp_path / "sweep"
    _run_dir(runs / "0", probe=good)
    _run_dir(runs / "1", final_loss=float("nan"))
    _run_dir(runs / "2", probe={**good, "mean_h_l0": np.full((2, 3), np.nan)}, seq_len={"a": 1})
    _run_dir(runs / "3", probe={**good, "mean_h_l0": np.ones((5, 3))}, final_loss=10**400)
    _run_dir(runs / "4", probe={**good, "curves": np.array([1, 2])}, status=7)
    (runs / "4" / "config.yaml").write_text(yaml.safe_dump({"seed": [1], "choices": "rnn"}))
    (runs / "5").mkdir()
    (runs / "5" / "summary.json").write_text(json.dumps({"status": "finished", "name": "<b>x</b>"}))
    (runs / "1" / "metrics.jsonl").write_text('{"step": 2, "eval/loss": NaN}\n')
    assert report_main([str(runs), "-o", str(tmp_path / "rep"), "--title", "a <i>title</i>"]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    for flag in ("final_loss is nan", "a NaN evaluation", "every probe curve is NaN", "seq_len of the wrong type",
                 "probe.npz of another layout (mean_h_l0", "final_loss of the wrong type or beyond float range",
                 "probe.npz of another layout (curves", "status of the wrong type", "seed, choices of the wrong type",
                 "metrics.jsonl has no evaluation rows"):
        assert flag in md, flag
    assert "<i>" not in md and "&lt;i&gt;title&lt;/i&gt;" in md
    # a title too long for a figure: one line, before anything is written
    assert report_main([str(runs), "-o", str(tmp_path / "rep2"), "--title", "t" * 201]) == 2
    assert_one_line(2, capsys.readouterr().err, "--title", "at most 200")
    assert not (tmp_path / "rep2").exists()


def test_a_rerun_removes_the_temporary_files_a_kill_left(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(Path(__file__).parents[1])}
    run = [sys.executable, "-m", "seqlab", *TINY, "hydra.run.dir=run"]
    assert subprocess.run([*run, "steps=2"], cwd=tmp_path, env=env, capture_output=True).returncode == 0
    left = [tmp_path / "run" / ".checkpoint.pt.k1ll3d.tmp", tmp_path / "run" / ".summary.json.x7y8z9ab.tmp"]
    for p in left:
        p.write_bytes(b"half")
    r = subprocess.run([*run, "steps=3"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not any(p.exists() for p in left)


def test_a_second_signal_during_shutdown_is_one_line_never_failed(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(Path(__file__).parents[1])}
    for first, second in ((signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)):
        d = tmp_path / f"run{int(first)}"
        p = subprocess.Popen([sys.executable, "-m", "seqlab", *[o for o in TINY if not o.startswith("probe.")], "steps=100000", "checkpoint_every=50",
                              "eval_every=1000", "probe=none", f"hydra.run.dir={d}"], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not (d / "checkpoint.pt").exists():  # training has started
            assert p.poll() is None, p.communicate()
            time.sleep(0.2)
        p.send_signal(first)
        time.sleep(0.005)
        p.send_signal(second)
        _, err = p.communicate(timeout=120)
        assert p.returncode in (128 + int(first), 130), (p.returncode, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        status = json.loads((d / "summary.json").read_text())["status"]
        assert status in ("preempted", "interrupted"), status


def test_signals_after_the_final_line_land_in_no_shutdown_traceback(tmp_path):
    """Ctrl-C pressed again while the interpreter shuts down (torch's atexit finalizers run after seqlab's
    line): the process is leaving, so the signal is ignored, never a 'KeyboardInterrupt' traceback. The
    second signals are sent right after the line is read, which lands them in the shutdown every time."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(Path(__file__).parents[1])}
    for first in (signal.SIGINT, signal.SIGTERM):
        d = tmp_path / f"run{int(first)}"
        p = subprocess.Popen([sys.executable, "-m", "seqlab", *[o for o in TINY if not o.startswith("probe.")], "steps=100000",
                              "checkpoint_every=50", "eval_every=1000", "probe=none", f"hydra.run.dir={d}"], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not (d / "checkpoint.pt").exists():
            assert p.poll() is None, p.communicate()
            time.sleep(0.2)
        p.send_signal(first)
        line = p.stderr.readline()
        for _ in range(50):  # until it is gone
            if p.poll() is not None:
                break
            p.send_signal(signal.SIGINT)
            time.sleep(0.002)
        err = line + p.stderr.read()
        p.wait(timeout=120)
        assert p.returncode == 128 + int(first), (p.returncode, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_logging_handler_that_cannot_write_prints_no_traceback(capfd):
    import logging

    class Full(logging.Handler):
        def emit(self, record):
            try:
                raise OSError(28, "No space left on device")
            except OSError:
                self.handleError(record)

    before = logging.raiseExceptions
    try:
        entry.quiet_logging_errors()
        log = logging.getLogger("seqlab-test-full-disk")
        log.addHandler(Full())
        for _ in range(60):
            log.warning("a record")
        assert "Logging error" not in capfd.readouterr().err
    finally:
        logging.raiseExceptions = before


def test_a_probe_lag_beyond_the_curve_is_there_as_nan_not_dropped():
    from seqlab.probe.fit import fit_curve

    fit = fit_curve(np.array([1.0, 0.5, 0.25]), lags=(1, 10))
    assert fit["g_lag1"] == 0.5 and math.isnan(fit["g_lag10"])
