"""Sweeps as a user runs them: the basic, joblib (parallel) and submitit launchers, a job that
fails in the middle of a sweep, W&B grouping, Optuna, and the preflight check of each.

The failing job is real, not injected: SGD with lr=1e30 makes the loss infinite at step 2,
and the run ends as "diverged" (on_nonfinite=stop), a failed job for Hydra.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seqlab.tracking import wandb_group
from wandb_records import wandb_exit_code, wandb_records

FAST = ["steps=6", "eval_every=3", "eval_size=16", "batch_size=8", "log_every=3", "progress=false",
        "model.hidden_size=8", "probe=none"]
EXPLODING_AND_FINE = ["model=rnn", "optim=sgd", "optim.lr=1e30,0.01"]  # job 0 diverges, job 1 trains


def seqlab(tmp_path, *args, timeout=300):
    env = {**os.environ, "WANDB_SILENT": "true"}
    env.pop("WANDB_MODE", None)
    return subprocess.run([sys.executable, "-m", "seqlab", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def job_dirs(tmp_path) -> list[Path]:
    """The job directories of the one sweep under tmp_path/multirun, by job number."""
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    return sorted((d for d in sweep.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


def status(run: Path) -> str:
    path = run / "summary.json"
    return json.loads(path.read_text())["status"] if path.exists() else "unfinished"


def assert_failed_job_did_not_stop_the_sweep(r, runs):
    assert r.returncode == 1, r.stderr  # Hydra re-raises the failure once the sweep has run
    assert "Error executing job with overrides" in r.stderr and "optim.lr=1e+30" in r.stderr
    assert "Traceback" not in r.stderr and "HYDRA_FULL_ERROR" not in r.stderr  # one line per failure, no stack
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("seqlab: job 0 (") and "diverged" in ln]
    assert "optim.lr=1e+30" in line and "non-finite loss at step 2" in line and f"results in {runs[0]}" in line
    assert "seqlab: error: job 0 diverged" in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("2 jobs: 1 finished, 1 diverged (job 0)")
    assert [status(d) for d in runs] == ["diverged", "finished"]
    failed = json.loads((runs[0] / "summary.json").read_text())
    assert "non-finite loss" in failed["error"] and failed["diverged_step"] == 2


def test_basic_launcher_failed_job_and_wandb_groups(tmp_path):
    """Jobs run one after another; the diverged one is marked failed in W&B; seeds share a setting."""
    r = seqlab(tmp_path, "-m", *EXPLODING_AND_FINE, "seed=0,1", *FAST)
    runs = job_dirs(tmp_path)
    assert len(runs) == 4  # lr=1e30 x seed 0,1 then lr=0.01 x seed 0,1
    assert r.returncode == 1 and [status(d) for d in runs] == ["diverged", "diverged", "finished", "finished"]
    sweep = runs[0].parent
    records = {}
    for d in runs:
        (wb,) = d.glob("wandb/offline-run-*")
        records[d.name] = [x["run"] for x in wandb_records(wb) if x["type"] == "run"][0]
        assert wandb_exit_code(wb) == (1 if status(d) == "diverged" else 0)
    configs = {name: rec["config"]["update"] for name, rec in records.items()}
    value = lambda name, key: configs[name][key]  # noqa: E731
    # every swept value is config; runs that differ only in seed share `setting`
    assert [value(n, "seed") for n in "0123"] == [0, 1, 0, 1]
    assert [value(n, "lr") for n in "0123"] == [1e30, 1e30, 0.01, 0.01]
    settings = [value(n, "setting") for n in "0123"]
    assert settings[0] == settings[1] != settings[2] == settings[3]
    assert "seed" not in settings[0] and "optim.lr=0.01" in settings[2]
    # W&B's default grouping averages the seeds of one setting; the sweep stays a tag and config
    assert [records[n]["run_group"] for n in "0123"] == [wandb_group(s) for s in settings]
    sweep_id = f"sweep-{sweep.parent.name}-{sweep.name}"
    assert all(sweep_id in records[n]["tags"] and value(n, "sweep") == sweep_id for n in "0123")
    # the offline report reads the same sweep: two settings of two seeds, the diverged ones marked
    from seqlab import report

    assert report.main([str(sweep)]) == 0
    data = json.loads((sweep / "report" / "report.json").read_text())
    assert [(s["label"], s["runs"], s["finished"]) for s in data["settings"]] == [
        ("lr=0.01", 2, 2), ("lr=1e+30", 2, 0)]
    assert "| lr=1e+30 | 200 | 0/2 (2 diverged) |" in (sweep / "report" / "report.md").read_text()


def test_joblib_launcher_runs_jobs_in_parallel_and_survives_a_failure(tmp_path):
    r = seqlab(tmp_path, "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", *EXPLODING_AND_FINE,
               "logger=none", *FAST)
    assert "Joblib.Parallel(n_jobs=2" in r.stderr + r.stdout
    assert_failed_job_did_not_stop_the_sweep(r, job_dirs(tmp_path))


def test_joblib_workers_get_one_share_of_the_cores_each():
    """What hydra/launcher=parallel relies on: loky gives each of n_jobs workers cpu_count // n_jobs
    threads (OMP_NUM_THREADS, read by torch), so jobs do not oversubscribe the cores."""
    from joblib import Parallel, cpu_count, delayed

    def threads(_):
        import torch

        return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")

    n_jobs = 2
    got = Parallel(n_jobs=n_jobs, backend="loky")(delayed(threads)(i) for i in range(n_jobs))
    share = max(cpu_count() // n_jobs, 1)
    assert got == [(share, str(share))] * n_jobs


def test_submitit_local_sweep_survives_a_failure(tmp_path):
    """The cluster engine on this machine: each job a submitit subprocess, results pickled back."""
    r = seqlab(tmp_path, "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
               *EXPLODING_AND_FINE, "logger=none", *FAST)
    runs = job_dirs(tmp_path)
    assert_failed_job_did_not_stop_the_sweep(r, runs)
    logs = list((runs[0].parent / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2 and any("final eval loss" in p.read_text() for p in logs)
    # not silent while it runs: where the logs are, then a line per job as it ends, naming its log
    assert "their output goes to" in r.stderr and "finished: final eval loss" in r.stderr
    assert "_0_log.err" in next(ln for ln in r.stderr.splitlines() if ln.startswith("seqlab: job 0 ("))
    assert not (runs[0].parent / ".submitit" / "%j").exists()  # no stray directory left behind


def test_slurm_launcher_config_renders_an_sbatch_script(tmp_path, monkeypatch):
    """hydra/launcher=slurm composes, and submitit turns its knobs into sbatch flags.

    Rendering needs `srun` on PATH (submitit checks for it); a stub stands in: nothing is submitted.
    """
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    from seqlab.__main__ import CONF_DIR

    stub = tmp_path / "bin" / "srun"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                           "hydra.launcher.gpus_per_node=1"], return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert params.pop("_target_").endswith("SlurmLauncher")
    params.pop("name")
    folder = params.pop("submitit_folder")
    assert folder == "${hydra.sweep.dir}/.submitit/%j"
    # the same split as hydra_submitit_launcher's launch(): shared keys as they are, others slurm_*
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "%j",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m seqlab", "uid")
    for flag in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=2", "--time=120", "--mem=8GB",
                 "--signal=USR2@120"):
        assert f"#SBATCH {flag}" in script, script


@pytest.mark.parametrize("argv", [
    ["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "model=rnn,gru", "seed=0,1,2"],
    ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"],
    ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "model=glob(*)"],
    ["-m", "seed=range(0,3)", "model=glob(*,exclude=[exprnn,lru])"],
    ["-m", "hydra/sweeper=optuna", "optim.lr=interval(1e-4, 1e-2)", "optim=choice(adam,rmsprop)"],
    ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3"],
    ["-m", "+hparams_search=lr", "model=lstm", "seq_len=100"],
    ["-m", "+hparams_search=lr", "optim.lr=tag(log, interval(1e-5, 1e-2))"],
    ["hydra.job.chdir=true"],
])
def test_preflight_accepts_launcher_and_sweeper_overrides(argv, tmp_path, monkeypatch):
    from seqlab.__main__ import preflight

    if "hydra/launcher=slurm" in argv:  # a cluster: submitit needs srun on PATH (a stub; nothing is submitted)
        stub = tmp_path / "srun"
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")

    if any("optuna" in a or "hparams_search" in a for a in argv):
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    preflight(argv)  # returns; a rejection would be SystemExit(2)


@pytest.mark.parametrize("argv, message", [
    (["-m", "hydra/launcher=nope"], "hydra/launcher=nope: unknown hydra/launcher; allowed: basic, batched, joblib, parallel"),
        (["-m", "hydra/launcher=paralel"], "unknown hydra/launcher (did you mean parallel?)"),
    (["-m", "hydra/sweeper=optuna", "optim.lr=interval(-1, 1e-2)"], "optim.lr=-1.0: must be a finite number > 0"),
    (["-m", "model=glob(*)", "seq_len=1"], "seq_len=1"),
    (["-m", "+hparams_search=nope"], "hparams_search=nope: unknown hparams_search; allowed: lr"),
    (["-m", "+experiment=nope"], "experiment=nope: unknown experiment"),
    (["-m", "hydra/launcher=slurm", "model=rnn,gru"], "hydra/launcher=slurm: SLURM is not available on this machine"),
])
def test_preflight_rejects_bad_sweeps_in_one_line(argv, message, capsys, monkeypatch):
    from seqlab.__main__ import preflight

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no srun here, whatever the machine has

    with pytest.raises(SystemExit) as e:
        preflight(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_preflight_checks_the_sweep_an_experiment_declares(tmp_path, monkeypatch, capsys):
    """hydra.sweeper.params in a config (presets) are swept too, so they are checked too."""
    import shutil

    import seqlab.preflight as entry
    from seqlab.__main__ import CONF_DIR

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "experiment" / "bad.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      seq_len: 50,1\n")
    monkeypatch.setattr(entry._paths, "CONF_DIR", conf)
    with pytest.raises(SystemExit):
        entry.preflight(["-m", "+experiment=bad"])
    assert "seq_len=1: must be an integer >= 2" in capsys.readouterr().err
    entry.preflight(["-m", "+experiment=bad", "seq_len=60"])  # the command line wins, as in the sweep


def test_optuna_search_minimizes_the_returned_final_loss_and_survives_a_diverged_trial(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    r = seqlab(tmp_path, "-m", "+hparams_search=lr", "hydra.sweeper.n_trials=3", "model=rnn", "seq_len=10",
               "optim=sgd", "optim.lr=choice(1e30, 0.01)", "logger=none", *FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = job_dirs(tmp_path)
    summaries = [json.loads((d / "summary.json").read_text()) for d in runs]
    assert sorted(s["status"] for s in summaries) == ["diverged", "finished", "finished"]  # sampler seed 0
    result = yaml.safe_load((runs[0].parent / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(min(s["final_loss"] for s in summaries if s["status"] == "finished"))
    assert result["best_params"] == {"optim.lr": 0.01}


EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_preset_is_one_valid_sweep_that_cites_its_source(name):
    """`python -m seqlab -m +experiment=NAME` passes preflight for every job it declares."""
    from seqlab.__main__ import CONF_DIR, preflight

    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert any(str(year) in text for year in range(1990, 2030)), "cite the paper (authors, year)"
    assert f"python -m seqlab -m +experiment={name}" in text and "python -m seqlab.report" in text
    params = yaml.safe_load(text)["hydra"]["sweeper"]["params"]
    assert params and f"multirun/{name}/" in yaml.safe_load(text)["hydra"]["sweep"]["dir"]
    preflight(["-m", f"+experiment={name}"])


def test_preflight_composes_once_per_structure_and_each_job_equals_its_own_compose():
    """The sweep check composes once per config-group choice and sets plain values on a copy: every
    job's config must equal what Hydra composes for that job alone, and a bad value is still found."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from seqlab.__main__ import CONF_DIR
    from seqlab.preflight import Composer, _axes, combinations, preflight

    argv = ["model=rnn,lstm", "seed=0,1", "optim.lr=0.1,0.01", "seq_len=10,20", "model.hidden_size=8"]
    axes = _axes(OverridesParser.create().parse_overrides(argv))
    calls = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        def counted(**kw):
            calls.append(kw["overrides"])
            return compose(**kw)

        composer = Composer(counted, "config", True, axes)
        combos = combinations(axes)
        assert len(combos) == 16
        for combo in combos:
            fast = OmegaConf.to_container(composer(combo), resolve=False)
            full = OmegaConf.to_container(compose(config_name="config", overrides=list(combo),
                                                  return_hydra_config=True), resolve=False)
            fast.pop("hydra"), full.pop("hydra")
            assert fast == full, combo
    assert len(calls) == 2  # rnn and lstm
    with pytest.raises(SystemExit):
        preflight(["-m", "model=rnn,lstm", "seed=0,1", "seq_len=20,1"])
