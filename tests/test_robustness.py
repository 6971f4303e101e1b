"""Runs that survive: W&B failures never stop training; (more: checkpoints, signals, divergence)."""
import json
import math
import os
import subprocess
import sys

import pytest

from seqlab.tracking import SeqlabWarning, WandbTracker
from wandb_records import wandb_exit_code, wandb_records

FAST = ["steps=6", "eval_every=3", "eval_size=16", "batch_size=8", "log_every=2", "progress=false", "probe.lyapunov_steps=0",
        "probe.plots=false", "seq_len=10", "model.hidden_size=8"]
# The probe runs in every run here, cheaply: no figures (tests/test_probe_plots.py and test_probe_run.py draw them)
# and the Lyapunov spectrum along the probe batch (lyapunov_steps=0), not 3500 extra steps per probe.
CHEAP_PROBE = ["probe.lyapunov_steps=0", "probe.plots=false"]


def no_wandb_account(tmp_path):
    """An environment with no W&B credentials at all (and no network is needed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path / "home"), WANDB_SILENT="true", WANDB_CONFIG_DIR=str(tmp_path / "wbcfg"))
    return env


def test_online_mode_without_account_falls_back_to_offline_and_trains(tmp_path):
    r = subprocess.run([sys.executable, "-m", "seqlab", "logger.mode=online", "hydra.run.dir=run", *FAST],
                       cwd=tmp_path, env=no_wandb_account(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "seqlab: warning: W&B online start failed" in r.stderr and "online start failed" not in r.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished"
    (wb,) = (tmp_path / "run" / "wandb").glob("offline-run-*")  # can be synced later
    assert wandb_exit_code(wb) == 0


def test_wandb_that_goes_away_mid_run_does_not_raise(tmp_path):
    t = WandbTracker(run_dir=tmp_path, config={}, name="t", job_type="test", mode="offline")
    assert t.run is not None

    def gone(*a, **k):
        raise ConnectionError("W&B went away")

    t.run.log = gone
    with pytest.warns(SeqlabWarning) as caught:
        t.log({"step": 1, "train/loss": 0.5})
        t.log({"step": 2, "train/loss": 0.4})  # warned once, then W&B is off
        t.summary({"x": 1})
        t.finish(exit_code=0)
    assert t.run is None
    assert sum("W&B log failed" in str(w.message) for w in caught) == 1


def test_wandb_that_cannot_start_at_all_is_skipped(tmp_path, monkeypatch):
    import wandb

    def broken(*a, **k):
        raise RuntimeError("no service")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(SeqlabWarning, match="could not start"):
        t = WandbTracker(run_dir=tmp_path, config={}, name="t", job_type="test", mode="offline")
    t.log({"step": 0})
    t.finish()
    assert t.run is None


# --- checkpoints, resume, signals ----------------------------------------------------------

import signal
import time
from pathlib import Path

# long enough to be stopped mid-run (at step 200 or 300, with 500+ steps to go), short enough to rerun
LONG = ["task=adding", "model=gru", "seq_len=12", "model.hidden_size=8", "batch_size=8", "eval_size=32",
        "steps=800", "eval_every=100", "log_every=10", "checkpoint_every=50", *CHEAP_PROBE, "progress=false",
        "threads=1"]


def start(tmp_path, run_dir, *args, env=None):
    e = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline", **(env or {})}
    where = [f"hydra.run.dir={run_dir}"] if run_dir else []
    return subprocess.Popen([sys.executable, "-m", "seqlab", *where, *args], cwd=tmp_path,
                            env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines() if r.strip()]


def wait_for_step(run_dir: Path, step: int, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            if rows(run_dir) and rows(run_dir)[-1]["step"] >= step:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no eval at step {step}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    p = start(tmp, tmp / "ref", *LONG, "logger=none")
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return rows(tmp / "ref")


def test_sigkill_then_rerun_resumes_to_identical_metrics(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    p = start(tmp_path, run_dir, *LONG, "logger=none")
    wait_for_step(run_dir, 300, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (run_dir / "summary.json").exists()  # it really died mid-run
    assert (run_dir / "checkpoint.pt").exists()
    p = start(tmp_path, run_dir, *LONG, "logger=none")  # the same command, the same directory
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and 250 <= summary["resumed_from_step"] < 800  # checkpoints every 50
    assert rows(run_dir) == uninterrupted  # every eval row, train loss and grad norm included


def test_sigterm_checkpoints_marks_preempted_and_resume_equals_uninterrupted(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    p = start(tmp_path, run_dir, *LONG)  # with W&B (offline)
    wait_for_step(run_dir, 200, p)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err
    first_summary = json.loads((run_dir / "summary.json").read_text())
    assert first_summary["status"] == "preempted" and first_summary["stopped_at_step"] >= 200
    assert (run_dir / "checkpoint.pt").exists()
    (first,) = (run_dir / "wandb").glob("offline-run-*")
    assert wandb_exit_code(first) == 128 + signal.SIGTERM  # finished, not left dangling

    # the message ends with the exact command that resumes: the same arguments and resume=DIR
    assert len(err.strip().splitlines()) == 1 and "Resume with: python -m seqlab " in err, err
    command = err.strip().split("Resume with: ")[1].split()
    assert command[:3] == ["python", "-m", "seqlab"] and "resume=run" in command  # relative to the cwd
    p = subprocess.Popen([sys.executable, *command[1:]], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "WANDB_SILENT": "true",
                                                                 "WANDB_MODE": "offline"})
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert not (tmp_path / "outputs").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["segments"] == 2
    assert rows(run_dir) == uninterrupted
    # one summary line, last, consistent across segments: wall time and training time cover both
    last = out.strip().splitlines()[-1]
    assert last.startswith("adding-gru-T12 ") and "seed=0" in last and "2 segments" in last
    assert summary["wall_time_s"] > first_summary["wall_time_s"]
    assert summary["steps_per_s"] == pytest.approx(800 / summary["train_time_s"])

    # one W&B run: the same id and name, _step continuing exactly where the first segment ended
    first_seg, second_seg = sorted((run_dir / "wandb").glob("offline-run-*"))
    recs = [wandb_records(d) for d in (first_seg, second_seg)]
    runs = [[r["run"] for r in rec if r["type"] == "run"][0] for rec in recs]
    assert runs[0]["run_id"] == runs[1]["run_id"] and runs[0]["display_name"] == runs[1]["display_name"]
    assert runs[0]["run_group"] == runs[1]["run_group"]
    steps = [[r["history"]["step"]["num"] for r in rec if r["type"] == "history"] for rec in recs]
    assert steps[0] == list(range(len(steps[0])))
    assert steps[1] == list(range(len(steps[0]), len(steps[0]) + len(steps[1])))
    train_steps = [[r["history"]["item"].get("step") for r in rec if r["type"] == "history"] for rec in recs]
    seen = [s for s in train_steps[0] if s is not None]
    assert min(s for s in train_steps[1] if s is not None) > max(seen)  # nothing logged twice
    assert wandb_exit_code(second_seg) == 0


def test_resume_refuses_a_different_experiment(tmp_path):
    run_dir = tmp_path / "run"
    p = start(tmp_path, run_dir, *LONG, "steps=4", "logger=none")
    assert p.wait(timeout=300) == 0
    r = subprocess.run([sys.executable, "-m", "seqlab", f"resume={run_dir}", *LONG, "steps=4",
                        "model.hidden_size=16", "logger=none"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and "model=" in r.stderr and "checkpoint" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --- non-finite loss or gradient -------------------------------------------------------------

EXPLODE = ["task=adding", "model=rnn", "model.layer.activation=identity", "model.layer.init=orthogonal",
           "model.layer.recurrent_gain=1.0", "seq_len=30", "model.hidden_size=16", "optim=sgd", "optim.lr=50",
           "batch_size=16", "eval_size=16", "eval_every=1", "log_every=1", *CHEAP_PROBE, "progress=false", "logger=none"]


def run_cli(tmp_path, run_dir, *args):
    return subprocess.run([sys.executable, "-m", "seqlab", f"hydra.run.dir={run_dir}", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_exploding_run_is_stopped_at_the_first_nonfinite_step(tmp_path):
    r = run_cli(tmp_path, tmp_path / "a", *EXPLODE, "steps=50")
    assert r.returncode == 3, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "diverged" in r.stderr
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    k = s["diverged_step"]
    # caught at the first non-finite value: here the evaluation right after the update that blew up
    assert s["status"] == "diverged" and 0 < k < 50 and math.isfinite(s["last_finite_grad_norm"])
    assert "final_loss" not in s  # nothing that looks like a result
    assert all(math.isfinite(v) for row in rows(tmp_path / "a") for v in row.values() if isinstance(v, float))
    # the same run one step shorter never meets a non-finite value: k really is the first one
    r = run_cli(tmp_path, tmp_path / "b", *EXPLODE, f"steps={k - 1}")
    assert r.returncode == 0, r.stderr


def test_skip_policy_does_not_hide_an_exploded_model(tmp_path):
    """Skipping updates cannot make a model whose evaluation is non-finite look finished
    (the bounded skip rate itself: tests/test_lifecycle.py)."""
    r = run_cli(tmp_path, tmp_path / "a", *EXPLODE, "steps=30", "on_nonfinite=skip")
    assert r.returncode == 3, r.stderr
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["status"] == "diverged" and "final_loss" not in s


def test_submitit_job_preempted_by_usr2_is_checkpointed_requeued_and_resumed(tmp_path):
    """submitit's preemption protocol, on this machine: SIGUSR2 to the job (what SLURM sends before
    preempting, and what submitit_local sends before its timeout) -> seqlab writes a checkpoint at the
    next step boundary and hands the signal to submitit, which requeues the job; the requeued job
    resumes from the checkpoint in the same job directory and finishes."""
    sweep = tmp_path / "sweep"
    p = subprocess.Popen([sys.executable, "-m", "seqlab", "-m", "hydra/launcher=submitit_local",
                          "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}", "logger=none",
                          "probe=none", *[o for o in LONG if o not in CHEAP_PROBE]], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "WANDB_SILENT": "true"})
    job_dir = sweep / "0"
    end = time.time() + 180
    while not ((job_dir / "metrics.jsonl").exists() and rows(job_dir) and rows(job_dir)[-1]["step"] >= 200):
        assert p.poll() is None and time.time() < end, p.communicate()
        time.sleep(0.1)
    (pid,) = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _is_submitit_task(d, sweep)]
    os.kill(pid, signal.SIGUSR2)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    summary = json.loads((job_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and 200 <= summary["resumed_from_step"] < 800
    log = "".join(f.read_text() for f in sweep.rglob("*_log.*"))
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log


def _is_submitit_task(proc_dir: Path, sweep: Path) -> bool:
    try:
        cmd = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "submitit.core._submit" in cmd and str(sweep) in cmd
