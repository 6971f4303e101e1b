"""Who may write into a run directory (issue 22): the run that holds its lock, and only into a
directory that is its own. The probe CLI never writes over a training run's results nor into a
locked directory; two runs started together into one directory leave the winner's files as the
winner wrote them (the lock is taken before anything is written, .hydra/ included); a sweep given
``resume=`` by ``hydra.mode=MULTIRUN`` is refused like one given ``-m``."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from cli_checks import concurrently, one_line

TINY = ["task=adding", "seq_len=5", "model.hidden_size=4", "batch_size=4", "eval_size=8", "log_every=1",
        "eval_every=1", "checkpoint_every=1", "probe.every=1", "probe.batch_size=2", "probe.lyapunov_k=1",
        "probe.lyapunov_steps=0", "probe.plots=false", "progress=false", "logger=none", "threads=1"]


def _env():
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(Path(__file__).parents[1])}


def cli(module, cwd, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=300)


def digest(d: Path) -> dict:
    return {str(p.relative_to(d)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and p.name != ".seqlab.lock"}


def test_the_probe_cli_never_writes_over_a_training_run_nor_into_a_locked_directory(tmp_path):
    r = cli("seqlab", tmp_path, *TINY, "steps=2", "hydra.run.dir=run")
    assert r.returncode == 0, r.stderr
    before = digest(tmp_path / "run")
    r = cli("seqlab.probe", tmp_path, "checkpoint=run/checkpoint.pt", "hydra.run.dir=run", "logger=none")
    one_line(r, "hydra.run.dir=run", "another run's results", "never writes over them")
    assert digest(tmp_path / "run") == before
    # beside it, into a fresh directory, the same probe works
    r = cli("seqlab.probe", tmp_path, "checkpoint=run/checkpoint.pt", "hydra.run.dir=run/probe_1", "logger=none")
    assert r.returncode == 0, r.stderr
    assert digest(tmp_path / "run") == {**before, **{k: v for k, v in digest(tmp_path / "run").items()
                                                     if k.startswith("probe_1/")}}
    # a directory whose lock a live run holds: refused, nothing written
    (tmp_path / "busy").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from seqlab.rundir import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)",
                               str(tmp_path / "busy")], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = cli("seqlab.probe", tmp_path, "task=adding", "seq_len=5", "hydra.run.dir=busy", "logger=none")
        one_line(r, "in use by pid")
        assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == [".seqlab.lock"]
    finally:
        holder.kill()
        holder.wait()


def test_two_runs_started_together_into_one_directory_leave_the_winners_files(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "seqlab", *TINY, "steps=30", f"seed={seed}", "hydra.run.dir=run"],
                              cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    winner = (1, 2)[[rc for rc, _ in results].index(0)]
    loser_err = next(err for rc, err in results if rc == 2)
    assert len(loser_err.strip().splitlines()) == 1 and "Traceback" not in loser_err
    run = tmp_path / "run"
    assert f"seed={winner}" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["seed"] == winner
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == winner
    assert json.loads((run / "summary.json").read_text())["seed"] == winner


def test_a_sweep_by_hydra_mode_multirun_refuses_resume_like_dash_m(tmp_path):
    r = cli("seqlab", tmp_path, *TINY, "hydra.mode=MULTIRUN", "resume=somewhere")
    one_line(r, "resume=somewhere", "not in a sweep")
    assert not (tmp_path / "multirun").exists()


def test_an_empty_run_directory_is_refused_not_the_working_directory(tmp_path):
    modules = ("seqlab", "seqlab.probe")
    for r in concurrently(*[lambda m=m: cli(m, tmp_path, *TINY, "hydra.run.dir=") for m in modules]):
        one_line(r, "hydra.run.dir=''", "working directory")
    assert list(tmp_path.iterdir()) == []
