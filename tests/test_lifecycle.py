"""A run's life: killed at any moment and rerun, rerun when finished, damaged or malicious files left
in its directory, two processes into one directory, resume=last, divergence that hides behind skips
or a non-finite evaluation. Tiny runs (T 10, hidden 8, a few steps), in-process where the behaviour
is the library's and through the CLI where it is the one line a user sees."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import seqlab.train as T
from seqlab import checkpoint
from seqlab.__main__ import CONF_DIR
from seqlab.rundir import RunDirError, RunLock, resume_command, unique_tmp
from seqlab.train import Diverged, RunInfo, train
from seqlab.tracking import results_only

from cli_checks import concurrently

TINY = ["task=adding", "seq_len=10", "model.hidden_size=8", "batch_size=8", "eval_size=16", "log_every=1",
        "eval_every=2", "checkpoint_every=2", "probe.every=2", "probe.batch_size=4", "probe.lyapunov_k=2",
        "probe.lyapunov_steps=0", "probe.plots=false", "progress=false", "logger=none", "threads=1"]
TIMING = ("wall_time_s", "train_time_s", "steps_per_s", "probe_time_s", "resumed_from_step", "segments",
          "already_finished")


def tiny(*overrides) -> list[str]:
    """TINY and ``overrides``, without the probe's knobs when the probe is off."""
    return [o for o in TINY if "probe=none" not in overrides or not o.startswith("probe.")] + list(overrides)


def make_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=tiny(*overrides))


def run(run_dir: Path, *overrides) -> dict:
    return train(make_cfg(*overrides), RunInfo(run_dir=run_dir, name="t", choices={"model": "rnn"}))


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]


def results(summary: dict) -> dict:
    """The summary without timings, as summary.json holds it (NaN, e.g. a probe lag beyond T, as "nan")."""
    from seqlab.files import jsonable

    return jsonable({k: v for k, v in summary.items() if k not in TIMING})


def cli(cwd: Path, *args, env=None):
    e = {**os.environ, "WANDB_SILENT": "true", "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run([sys.executable, "-m", "seqlab", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=300)


def one_line_error(r, *words):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("seqlab: error: ") and all(w in r.stderr for w in words), r.stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 6-step run: its summary and metrics rows."""
    d = tmp_path_factory.mktemp("ref") / "run"
    summary = run(d, "steps=6")
    return results(summary), rows(d), (d / "probe.npz").read_bytes()


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (the summary is not written either)."""


KILL_POINTS = {  # where the process dies: (module, attribute, on its n-th call)
    "right after the checkpoint at step 4": ("seqlab.checkpoint", "save", 2),
    "inside the probe at step 4 (its eval row written, last checkpoint at 2)": ("seqlab.train", "probe", 3),
    "inside the eval at step 6": ("seqlab.train", "evaluate", 4),
    "after the last checkpoint, before summary.json": ("seqlab.tracking", "RunRecorder.summary", 1),
}


@pytest.mark.parametrize("where", KILL_POINTS)
def test_a_kill_at_any_moment_then_rerun_gives_the_uninterrupted_summary(tmp_path, monkeypatch, reference, where):
    import importlib

    from seqlab.tracking import RunRecorder

    module, attr, nth = KILL_POINTS[where]
    owner = importlib.import_module(module)
    if "." in attr:
        owner, attr = RunRecorder, attr.split(".")[1]
    real, real_summary, calls = getattr(owner, attr), RunRecorder.summary, []

    def killing(*a, **k):
        calls.append(1)
        if len(calls) == nth:
            if attr == "save":
                real(*a, **k)  # the checkpoint is written, then the process dies
            raise Killed
        return real(*a, **k)

    def no_summary_after_a_kill(self, data):
        if len(calls) >= nth:
            raise Killed
        real_summary(self, data)

    monkeypatch.setattr(RunRecorder, "summary", no_summary_after_a_kill)
    monkeypatch.setattr(owner, attr, killing)
    with pytest.raises(Killed):
        run(tmp_path / "run", "steps=6")
    monkeypatch.undo()
    assert not (tmp_path / "run" / "summary.json").exists()
    summary = run(tmp_path / "run", "steps=6")
    ref_summary, ref_rows, _ = reference
    assert results(summary) == ref_summary
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["probe"]["step"] == 6
    assert rows(tmp_path / "run") == ref_rows


def test_rerun_of_a_finished_run_leaves_its_results_as_they_are(tmp_path, reference):
    d = tmp_path / "run"
    first = run(d, "steps=6")
    files = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".seqlab.lock"}
    again = run(d, "steps=6")
    assert again["already_finished"] and results(again) == results(first) == reference[0]
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".seqlab.lock"} == files
    assert isinstance(first["probe"], dict) and first["wall_time_s"] > 0.01


def test_resume_further_and_refuse_fewer_steps(tmp_path, reference):
    d = tmp_path / "run"
    run(d, "steps=4")
    longer = run(d, "steps=6")  # a finished run trains further when asked
    assert longer["resumed_from_step"] == 4 and results(longer) == reference[0]
    assert longer["segments"] == 2 and longer["steps_per_s"] == pytest.approx(6 / longer["train_time_s"])
    with pytest.raises(T.ConfigError, match=r"^steps=4: the checkpoint in .* is at step 6"):
        run(d, "steps=4")


# --- damaged, missing and malicious files ---------------------------------------------------------

def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


DAMAGE = {
    "checkpoint.pt truncated": ("checkpoint.pt", _truncate),
    "checkpoint.pt empty": ("checkpoint.pt", lambda p: p.write_bytes(b"")),
    "checkpoint.pt garbage": ("checkpoint.pt", lambda p: p.write_bytes(os.urandom(500))),
    "checkpoint.pt of another structure": ("checkpoint.pt", lambda p: torch.save({"model": 1}, p)),
    "checkpoint.pt a list": ("checkpoint.pt", lambda p: torch.save([1, 2], p)),
    "probe.npz truncated": ("probe.npz", _truncate),
    "probe.npz empty": ("probe.npz", lambda p: p.write_bytes(b"")),
    "probe.npz garbage": ("probe.npz", lambda p: p.write_bytes(os.urandom(300))),
    "probe.npz deleted": ("probe.npz", lambda p: p.unlink()),
    "metrics.jsonl garbage": ("metrics.jsonl", lambda p: p.write_text("{not json\n")),
    "metrics.jsonl binary": ("metrics.jsonl", lambda p: p.write_bytes(b"\xff\xfe\x00\x01" * 20)),
    "metrics.jsonl a JSON list": ("metrics.jsonl", lambda p: p.write_text("[1, 2]\n")),
    "metrics.jsonl deleted": ("metrics.jsonl", lambda p: p.unlink()),
    "probe.npz all NaN": ("probe.npz", lambda p: _nan_probe(p)),
    "metrics.jsonl empty": ("metrics.jsonl", lambda p: p.write_text("")),
    "metrics.jsonl early rows gone": ("metrics.jsonl", lambda p: p.write_text(p.read_text().split("\n", 1)[1])),
}


def _nan_probe(path):
    import numpy as np

    with np.load(path) as z:
        arrays = {k: (np.full(z[k].shape, np.nan) if k.startswith("mean_") else z[k]) for k in z.files}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("what", DAMAGE)
def test_a_damaged_file_is_one_line_naming_it_never_a_silent_restart(tmp_path, what):
    d = tmp_path / "run"
    run(d, "steps=4")
    name, damage = DAMAGE[what]
    damage(d / name)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    with pytest.raises(RunDirError) as err:
        run(d, "steps=6")
    message = str(err.value)
    assert name in message and "\n" not in message and ("delete" in message.lower() or "restore" in message)
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    assert after.keys() - {".seqlab.lock"} == before.keys() - {".seqlab.lock"}  # nothing restarted or rewritten
    assert all(after[k] == before[k] for k in before if k != ".seqlab.lock")


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_and_runs_nothing(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format_version": 1, "config": {}, "model": {}, "loop": Evil()}, d / "checkpoint.pt")
    r = cli(tmp_path, f"hydra.run.dir={d}", *TINY, "steps=2")
    one_line_error(r, "checkpoint.pt", "pickled", "nothing in it was run")
    r = subprocess.run([sys.executable, "-m", "seqlab.probe", f"checkpoint={d / 'checkpoint.pt'}", *TINY[:3]],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not marker.exists()


def test_temporary_files_are_unique_and_never_left_behind(tmp_path):
    target = tmp_path / "checkpoint.pt"
    names = {unique_tmp(target).name for _ in range(5)}
    assert len(names) == 5 and all(n.startswith(".checkpoint.pt.") for n in names)
    for p in tmp_path.iterdir():
        p.unlink()
    with pytest.raises((TypeError, AttributeError)):
        checkpoint.save(target, {"x": lambda: 0})  # cannot be pickled: the write fails
    assert list(tmp_path.iterdir()) == []


# --- two runs, one directory ----------------------------------------------------------------------

def test_a_second_run_into_a_locked_directory_is_refused_naming_the_holder(tmp_path):
    d = tmp_path / "run"
    with RunLock(d):
        with pytest.raises(RunDirError, match=rf"in use by pid {os.getpid()}"):
            run(d, "steps=2")
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a stand-in pid
    try:
        (d / ".seqlab.lock").write_text(f"{holder.pid}\n")
        lock = subprocess.Popen([sys.executable, "-c", f"import fcntl,os,time; fd=os.open({str(d / '.seqlab.lock')!r},"
                                 f"os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX); print(1, flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE, text=True)
        lock.stdout.readline()
        r = cli(tmp_path, f"hydra.run.dir={d}", *TINY, "steps=2")
        one_line_error(r, "in use by pid", str(holder.pid))
        assert not (d / ".hydra").exists() and not (d / "metrics.jsonl").exists()
        lock.kill()
    finally:
        holder.kill()


# --- resume from the command line -----------------------------------------------------------------

def test_resume_last_and_the_refused_combinations(tmp_path):
    r = cli(tmp_path, *tiny("steps=2", "probe=none"))
    assert r.returncode == 0, r.stderr
    (first,) = (tmp_path / "outputs").glob("*/*")
    assert r.stdout.strip().splitlines()[-1].startswith("adding-rnn-T10 ")  # the summary line is last
    r = cli(tmp_path, *tiny("steps=4", "probe=none", "resume=last"))  # finds it, trains further
    assert r.returncode == 0, r.stderr
    assert json.loads((first / "summary.json").read_text())["resumed_from_step"] == 2
    assert len(list((tmp_path / "outputs").glob("*/*"))) == 1
    one_line_error(cli(tmp_path, *tiny("steps=4", "probe=none", "seed=1", "resume=last")), "resume=last", "none of")
    one_line_error(cli(tmp_path, *tiny("steps=4", "probe=none", f"resume={first}", "hydra.run.dir=other")),
                   "hydra.run.dir=other", f"resume={first}")
    assert not (tmp_path / "other").exists()
    one_line_error(cli(tmp_path, *tiny("steps=2", "probe=none", f"resume={first}")), "steps=2", "at step 4")
    one_line_error(cli(tmp_path, "-m", *TINY, "seed=0,1", f"resume={first}"), "resume=", "hydra.sweep.dir")


def test_resume_last_prefers_the_newest_run_with_steps_to_go(tmp_path):
    """A stopped run and a newer finished one of the same experiment: resume=last continues the stopped
    one (it used to pick the finished one and say 'already finished'); asked for more steps than the
    finished one made, it is that one; with every run finished and nothing more asked, the newest."""
    from seqlab.rundir import find_last

    for name in ("12-00-00", "12-00-01"):  # two runs of one experiment, in-process (find_last is what is tested)
        assert run(tmp_path / "outputs" / "2026-01-01" / name, "steps=2", "probe=none")["status"] == "finished"
    older, newer = sorted((tmp_path / "outputs").glob("*/*"), key=lambda d: (d / "checkpoint.pt").stat().st_mtime)
    os.utime(older / "checkpoint.pt", (1, 1))  # make the order unambiguous
    overrides = tiny("steps=2", "probe=none")
    assert find_last(overrides, root=tmp_path / "outputs") == newer  # both finished: the newest
    summary = json.loads((older / "summary.json").read_text())
    (older / "summary.json").write_text(json.dumps({**summary, "status": "preempted"}))
    assert find_last(overrides, root=tmp_path / "outputs") == older  # the stopped one
    assert find_last(tiny("steps=3", "probe=none"), root=tmp_path / "outputs") == newer  # more steps: the newest


def test_resume_command_is_the_same_arguments_with_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["/x/seqlab/__main__.py"])
    cmd = resume_command(["model=gru", "hydra.run.dir=a b", "optim.lr=0.1"], tmp_path / "a b")
    assert cmd == "python -m seqlab model=gru optim.lr=0.1 'resume=a b'"
    cmd = resume_command(["-m", "seed=0,1", "hydra.sweep.dir=s"], tmp_path / "s" / "0", tmp_path / "s")
    assert cmd == "python -m seqlab -m seed=0,1 hydra.sweep.dir=s"


def test_unusable_run_directories_are_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    in_a_file, in_proc = concurrently(lambda: cli(tmp_path, *TINY, "hydra.run.dir=afile/run"),
                                      lambda: cli(tmp_path, *TINY, "hydra.run.dir=/proc/seqlab"))
    one_line_error(in_a_file, "is a file")
    one_line_error(in_proc, "system directory")


# --- divergence that looks like a result ----------------------------------------------------------

def test_a_nonfinite_evaluation_is_divergence(tmp_path):
    with pytest.raises(Diverged, match="non-finite evaluation"):
        run(tmp_path / "run", "steps=0", "model.layer.activation=identity", "model.layer.init=orthogonal",
            "model.layer.recurrent_gain=10", "seq_len=60", "probe=none")
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "diverged" and s["diverged_step"] == 0 and "final_loss" not in s


@pytest.mark.parametrize("bad, status", [(3, "finished"), (12, "diverged")])
def test_skip_counts_a_few_bad_updates_and_gives_up_past_skip_limit(tmp_path, monkeypatch, bad, status):
    real, calls = torch.nn.utils.clip_grad_norm_, []

    def sometimes_inf(params, max_norm, *a, **k):  # the first `bad` of every 2 updates are non-finite
        calls.append(1)
        norm = real(params, max_norm, *a, **k)
        return torch.tensor(math.inf) if len(calls) % 2 == 0 and len(calls) <= 2 * bad else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", sometimes_inf)
    overrides = ("steps=30", "on_nonfinite=skip", "probe=none", "eval_every=10")
    if status == "finished":
        s = run(tmp_path / "run", *overrides)
        assert s["skipped_updates"] == bad and math.isfinite(s["final_loss"])
    else:
        with pytest.raises(Diverged, match="skip_limit"):
            run(tmp_path / "run", *overrides)
        s = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert s["status"] == "diverged" and s["diverged_step"] == 20  # the 10th skip, > 10% of 20 updates
        assert s["skipped_updates"] == 10  # a diverged run says how many updates it skipped, too


def test_wandb_summary_has_results_not_config(tmp_path):
    config = {"seed": 0, "steps": 6, "optim": {"lr": 1}, "choices": {"model": "rnn", "task": "adding"}}
    summary = {"status": "finished", "final_loss": 0.1, "steps": 6, "seed": 0, "model": "rnn", "task": "adding",
               "probe": {"h_l0": {"gain": 1.0}}, "solved_step": None, "wall_time_s": 1.0}
    assert results_only(summary, config) == {"status": "finished", "final_loss": 0.1, "wall_time_s": 1.0}


def test_a_resumed_wandb_run_skips_what_a_killed_segment_already_sent(tmp_path):
    """A segment killed after its checkpoint (W&B counter 3) had sent training steps 4 and 5 and a
    probe row; the resumed segment computes them again, identically, and must not send them twice."""
    from seqlab.tracking import WandbTracker
    from wandb_records import wandb_records

    a = WandbTracker(run_dir=tmp_path, config={}, name="t", job_type="test", mode="offline")
    for s in range(1, 6):
        a.log({"step": s, "train/loss": 1.0 / s})
    a.log({"probe/lag": 0, "probe/final/h_l0": 1.0})
    run_id = a.run_id
    a.finish(exit_code=137)
    b = WandbTracker(run_dir=tmp_path, config={}, name="t", job_type="test", mode="offline", resume_id=run_id,
                     start_step=3)
    for s in range(4, 8):
        b.log({"step": s, "train/loss": 1.0 / s})
        if s == 5:
            b.log({"probe/lag": 0, "probe/final/h_l0": 1.0})
    b.finish()
    _, second = sorted(tmp_path.glob("wandb/offline-run-*"))
    history = [r["history"] for r in wandb_records(second) if r["type"] == "history"]
    assert [(h["step"]["num"], h["item"]["step"]) for h in history] == [(6, 6), (7, 7)]


def test_an_unwritable_home_moves_wandbs_own_directories_into_the_run(tmp_path, monkeypatch, capfd):
    from seqlab.tracking import WandbTracker

    home = tmp_path / "home"
    home.write_text("a file where a directory should be")  # nothing can be created under it
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, "")  # unset for the tracker; restored after the test
    t = WandbTracker(run_dir=tmp_path / "run", config={}, name="t", job_type="test", mode="offline")
    t.log({"step": 1, "train/loss": 1.0})
    t.finish()
    assert t.step == 1 and os.environ["WANDB_CONFIG_DIR"].startswith(str(tmp_path / "run" / "wandb"))
    out, err = capfd.readouterr()
    assert "ERROR" not in out + err and list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_a_long_setting_keeps_a_distinct_wandb_group():
    from seqlab.tracking import GROUP_MAX, wandb_group

    a, b = "x" * 200, "x" * 199 + "y"
    assert len(wandb_group(a)) == GROUP_MAX and wandb_group(a) != wandb_group(b) and wandb_group("short") == "short"


def test_progress_into_a_file_is_plain_lines_not_a_redrawn_bar(monkeypatch):
    import io

    import seqlab.progress as P

    monkeypatch.setattr(P, "FILE_INTERVAL_S", 0.0)
    out = io.StringIO()  # not a terminal, like a sweep's log or nohup.out
    bar = P.Progress(total=4, initial=0, desc="adding-rnn-T10 seed=0", enabled=True, stream=out)
    for step in range(1, 5):
        bar.update(step, loss=0.5 if step == 2 else None)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 4
    assert lines[-1].startswith("adding-rnn-T10 seed=0: step 4/4 (100%)") and "train loss 0.5" in lines[-1]


WRONG_STRUCTURE = {"model a list": {"model": [1, 2]},
                   "config of another structure": {"model": {}, "config": {"task": 5, "model": "x"}},
                   "foreign state_dict": {"model": {"cell.weight": torch.zeros(2)}}}


@pytest.fixture(scope="module")
def wrong_structure_probes(tmp_path_factory):
    """The probe CLI on each checkpoint of WRONG_STRUCTURE, each in a directory of its own, as many
    processes at a time as there are cores (independent; each case is its own test below)."""
    from concurrent.futures import ThreadPoolExecutor

    def probe_cli(what):
        d = tmp_path_factory.mktemp("wrong")
        torch.save(WRONG_STRUCTURE[what], d / "c.pt")
        return d, subprocess.run([sys.executable, "-m", "seqlab.probe", f"checkpoint={d / 'c.pt'}", "seq_len=10"],
                                 cwd=d, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1)) as pool:
        return dict(zip(WRONG_STRUCTURE, pool.map(probe_cli, WRONG_STRUCTURE)))


@pytest.mark.parametrize("what", WRONG_STRUCTURE)
def test_the_probe_cli_refuses_a_checkpoint_of_the_wrong_structure_with_one_line(wrong_structure_probes, what):
    _, r = wrong_structure_probes[what]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "c.pt" in r.stderr  # names the file
