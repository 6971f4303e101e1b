"""The command line as a user meets it: the design-card command, multirun, W&B offline, bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wandb_records import wandb_exit_code, wandb_records

FAST = ["steps=6", "eval_every=3", "eval_size=32", "batch_size=8", "log_every=2", "progress=false",
        "probe.lyapunov_steps=0"]  # the Lyapunov spectrum over the task's own window, not 3500 steps
# The design-card test draws the probe's figures (and logs them to W&B); the others probe without them
# (2-7 s of matplotlib a run that no assertion here reads).
NO_FIGURES = [*FAST, "probe.plots=false"]


def seqlab(tmp_path, *args, env=None):
    """Run `python -m seqlab` from an unrelated directory, as a user would."""
    e = {**os.environ, "WANDB_SILENT": "true"}
    e.pop("WANDB_MODE", None)  # test the lab's own default (offline), not the caller's
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "seqlab", *args], cwd=tmp_path, env=e,
                          capture_output=True, text=True, timeout=300)


def only_run_dir(root: Path) -> Path:
    (summary,) = root.rglob("summary.json")
    return summary.parent


def test_design_card_command_trains_evaluates_and_logs(tmp_path):
    r = seqlab(tmp_path, "task=adding", "model=rnn", "seq_len=200", *FAST)
    assert r.returncode == 0, r.stderr
    assert "final eval loss" in r.stdout and "baseline 0.1667" in r.stdout
    run = only_run_dir(tmp_path / "outputs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["task"] == "adding" and summary["model"] == "rnn"
    assert summary["baseline"] == pytest.approx(1 / 6) and summary["steps"] == 6
    assert {"final_loss", "solved", "solved_step", "wall_time_s", "steps_per_s"} <= set(summary)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 3, 6]
    assert rows[-1]["eval/loss"] == pytest.approx(summary["final_loss"])
    assert "seq_len: 200" in (run / "config.yaml").read_text()
    # W&B is on by default, offline, inside the run directory, and the run was finished
    (wb,) = (run / "wandb").glob("offline-run-*")
    assert list(wb.glob("run-*.wandb"))
    records = wandb_records(wb)
    assert wandb_exit_code(wb) == 0
    (run_rec,) = [r["run"] for r in records if r["type"] == "run"]
    assert run_rec["job_type"] == "adding" and run_rec["display_name"].startswith("adding-rnn-T200")
    config = run_rec["config"]["update"]
    assert (config["cell"], config["task"], config["T"]) == ("rnn", "adding", 200) and "choices" not in config
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    assert {"train/loss", "train/grad_norm"} <= set().union(*history)
    assert not {"train/steps_per_s", "train/skipped_updates"} & set().union(*history)  # bookkeeping: summary
    assert {"eval/loss", "eval/accuracy", "eval/loss_over_baseline"} <= set().union(*history)


def test_wandb_run_is_finished_with_its_exit_code(tmp_path):
    r = seqlab(tmp_path, "task=copy", "model=gru", "seq_len=5", *NO_FIGURES)
    assert r.returncode == 0, r.stderr
    (wb,) = only_run_dir(tmp_path / "outputs").glob("wandb/offline-run-*")
    assert wandb_exit_code(wb) == 0


def test_multirun_gives_one_run_dir_and_one_wandb_run_per_job(tmp_path):
    r = seqlab(tmp_path, "-m", "model=rnn,lstm", "seq_len=10", *NO_FIGURES)
    assert r.returncode == 0, r.stderr
    summaries = sorted((tmp_path / "multirun").rglob("summary.json"))
    assert len(summaries) == 2
    models = {json.loads(s.read_text())["model"] for s in summaries}
    assert models == {"rnn", "lstm"}
    runs = [next(s.parent.glob("wandb/offline-run-*")) for s in summaries]
    assert len({r.name for r in runs}) == 2 and all(wandb_exit_code(r) == 0 for r in runs)


def test_logger_none_writes_no_wandb_but_keeps_results(tmp_path):
    r = seqlab(tmp_path, "logger=none", "task=delayed_recall", "model=lstm", "seq_len=8", *NO_FIGURES)
    assert r.returncode == 0, r.stderr
    run = only_run_dir(tmp_path / "outputs")
    assert not (run / "wandb").exists() and (run / "metrics.jsonl").read_text().count("\n") == 3


BAD_INPUT = [
    (["task=nope"], "task=nope"),
    (["model=transformer"], "model=transformer"),
    (["-m", "model=rnn,nope"], "model=nope"),
    (["seq_len=1"], "seq_len=1"),
    (["seq_len=abc"], "seq_len='abc'"),
    (["optim.lr=-0.1"], "optim.lr=-0.1"),
    (["task.delay=5"], "task.delay"),
    (["task=adding", "+task.n_symbols=4"], "n_symbols"),
    (["+stpes=100"], "stpes=100: not a seqlab setting (did you mean steps?)"),
    (["seq_len=100000000"], "seq_len=100000000: this run needs at least"),
    (["threads=100000"], "threads=100000"),
    (["~task"], "~task"),
    (["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0"),
    (["-m", "seq_len=10,1", "seed=range(0,256)"], "seq_len=1"),
]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """Every command of BAD_INPUT, each a process of its own in a directory of its own, as many at a time
    as there are cores (they are independent; each case's assertions are its own test below)."""
    from concurrent.futures import ThreadPoolExecutor

    dirs = [tmp_path_factory.mktemp("bad") for _ in BAD_INPUT]
    with ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1)) as pool:
        runs = list(pool.map(lambda case: seqlab(case[0], *case[1][0], "logger=none"), zip(dirs, BAD_INPUT)))
    return list(zip(runs, dirs))


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[f"args{i}-{key}" for i, (_, key) in enumerate(BAD_INPUT)])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(bad_input_runs, case):
    key = BAD_INPUT[case][1]
    r, tmp_path = bad_input_runs[case]
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqlab: error: ") and key in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


def test_help_and_cfg_job(tmp_path):
    from cli_checks import concurrently

    help_, cfg = concurrently(lambda: seqlab(tmp_path, "--help"), lambda: seqlab(tmp_path, "--cfg", "job", "model=lstm"))
    assert help_.returncode == 0 and "task: adding, copy, delayed_recall" in help_.stdout
    assert cfg.returncode == 0 and "LSTMLayer" in cfg.stdout and not (tmp_path / "outputs").exists()


def test_plain_wheel_install_runs_from_another_directory(tmp_path):
    """`pip install .` (not editable): the configs ship inside the wheel as seqlab/conf.

    The wheel goes into a folder of its own (``pip install --target``) and this same interpreter runs it
    with only that folder on PYTHONPATH, from another directory: the dependencies are this environment's
    whatever it is (a venv, a fresh venv, a bare system Python). A nested ``venv --system-site-packages``
    saw only the base interpreter's packages, not an outer venv's, and failed in a fresh venv."""
    repo = Path(__file__).resolve().parents[1]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(repo)],
                   check=True, capture_output=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(target)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = subprocess.run([sys.executable, "-c", "import seqlab.__main__ as m; print(m.CONF_DIR)"], cwd=work, env=env,
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == str(target / "seqlab" / "conf")  # the wheel's copy, not this checkout's conf/
    r = subprocess.run([sys.executable, "-m", "seqlab", "logger=none", "seq_len=20", *NO_FIGURES], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(only_run_dir(work / "outputs").joinpath("summary.json").read_text())["status"] == "finished"


def test_tab_completion_for_the_module_and_the_command(tmp_path):
    """`eval "$(python -m seqlab -sc install=bash)"` completes `python -m seqlab ...` and `seqlab ...`
    (Hydra's own script completed neither); other python command lines are left to file names."""
    wrapper = tmp_path / "bin" / "seqlab"  # the console script, as pip installs it
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m seqlab "$@"\n')
    wrapper.chmod(0o755)
    script = """
eval "$(%s -m seqlab -sc install=bash)"
COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -a COMP_WORDS <<< "$COMP_LINE"; COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_seqlab_completion
echo "${COMPREPLY[@]}"
""" % sys.executable
    env = {**os.environ, "PATH": f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}"}

    def complete(line):
        r = subprocess.run(["bash", "-c", script, "bash", line], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete(f"{sys.executable} -m seqlab model=l") == ["model=lru", "model=lstm"]
    assert {"task=copy", "task=adding"} <= set(complete("seqlab task="))
    assert complete(f"{sys.executable} other.py model=l") == []
    assert not (tmp_path / "outputs").exists()
