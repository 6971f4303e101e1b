"""The lr x seed protocol (seqlab.protocol, conf/protocol/lr_seeds.yaml): which jobs one switch expands
into, the early-stopping rule at rungs of the budget, and a stopped run flowing to the report as
"stopped" (an outcome, not a failure)."""
import json
import os
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqlab._paths import CONF_DIR
from seqlab.protocol import EarlyStop, expand, lr_grid


def sweep_params(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+protocol=lr_seeds", *overrides], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True), cfg


def test_lr_grid_is_five_points_over_two_decades_centred_on_the_default():
    assert lr_grid(1e-3) == [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]
    assert lr_grid(3e-3, n=3) == [3e-4, 3e-3, 3e-2]
    assert lr_grid(0.02, n=1) == [0.02]
    assert lr_grid(1e-2, n=2, decades=1) == [3.16e-3, 3.16e-2]


@pytest.mark.parametrize("bad, message", [
    (dict(center=0), "protocol.lr_center=0.0: must be a finite learning rate > 0"),
    (dict(center=1e-3, n=0), "protocol.n_lr=0: must be an integer >= 1"),
    (dict(center=1e-3, decades=-1), "protocol.decades=-1.0: must be a finite number >= 0")])
def test_lr_grid_refuses_bad_knobs_naming_them(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        lr_grid(**bad)


def test_the_switch_expands_into_the_optimizers_grid_times_seeds():
    """Adam's lr 1e-3 -> 1e-4..1e-2, SGD's 1e-2 -> 1e-3..1e-1; the seeds 0..N-1 or a list; 15 jobs."""
    params, cfg = sweep_params()
    assert params == {"optim.lr": "0.0001,0.000316,0.001,0.00316,0.01", "seed": "0,1,2"}
    assert "rungs" not in cfg.early_stop  # every grid point runs its whole budget unless early_stop=rungs
    params, _ = sweep_params("optim=sgd", "protocol.n_lr=3", "protocol.seeds=[4,7]")
    assert params == {"optim.lr": "0.001,0.01,0.1", "seed": "4,7"}
    params, _ = sweep_params("protocol.lr_center=0.02", "protocol.n_lr=1")
    assert params["optim.lr"] == "0.02"
    assert expand(1e-3, n=2, decades=2, seeds=2) == [(1e-4, 0), (1e-4, 1), (1e-2, 0), (1e-2, 1)]


def test_the_switch_adds_to_an_experiments_own_sweep():
    params, cfg = sweep_params("+experiment=long_memory", "protocol.n_lr=3", "protocol.seeds=2")
    assert params["optim.lr"] == "0.0001,0.001,0.01" and params["seed"] == "0,1"
    assert params["task"] == "adding,copy,delayed_recall" and "cornn" in params["remedy"]


@pytest.mark.parametrize("override, message", [
    ("protocol.n_lr=0", "protocol.n_lr=0: must be an integer >= 1"),
    ("protocol.seeds=-1", "protocol.seeds=-1: must be a count >= 1 or a list of seeds"),
    ("early_stop.margin=2", "early_stop.margin=2: must be a finite number in [0, 1)")])
def test_bad_protocol_knobs_end_in_one_line(override, message, capsys):
    from seqlab.preflight import preflight

    with pytest.raises(SystemExit) as e:
        preflight(["-m", "+protocol=lr_seeds", "early_stop=rungs", override])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"seqlab: error: {message}", err


def test_a_rung_is_checked_at_the_first_evaluation_at_or_after_it():
    rule = EarlyStop(rungs=(0.5, 0.25), margin=0.05)
    assert rule.rungs == (0.25, 0.5)
    # 2000 steps, evaluations every 100: rungs at steps 500 and 1000 exactly
    assert [s for s in range(0, 2001, 100) if rule.rung_at(s, 2000, 100)] == [500, 1000]
    # 1000 steps, evaluations every 300: 250 -> the evaluation at 300, 500 -> at 600
    assert [s for s in range(0, 1001, 300) if rule.rung_at(s, 1000, 300)] == [300, 600]
    assert rule.rung_at(1000, 1000, 1000) is None  # the end of the budget is no rung


def test_the_stopping_rule_stops_only_runs_that_have_not_beaten_the_baseline_by_the_margin():
    rule = EarlyStop(rungs=(0.25, 0.5), margin=0.05)
    assert rule.stop_step([(0, 1.0), (300, 0.97), (600, 0.5)], 1000, 300) == 300    # hopeless at rung 1
    assert rule.stop_step([(0, 1.0), (300, 0.90), (600, 0.99)], 1000, 300) == 600   # back to baseline at rung 2
    assert rule.stop_step([(0, 1.0), (300, 0.95), (600, 0.2)], 1000, 300) is None   # 0.95 is not above 1 - 0.05
    assert rule.stop_step([(0, 9.0), (100, 9.0), (900, 9.0)], 1000, 100) is None    # no evaluation at a rung
    assert EarlyStop(rungs=(0.5,), margin=0.0).check(500, 1000, 100, 1.01).startswith("stopped at step 500")
    with pytest.raises(ValueError, match="each rung is a fraction of steps in"):
        EarlyStop(rungs=(1.0,))


@pytest.mark.slow
def test_a_stopped_grid_point_is_reported_as_stopped_not_failed(tmp_path):
    """A real sweep (joblib launcher, one worker): 2 lr x 2 seeds, every job stopped at its rung (a margin
    no run can meet), exit 0; the report counts them as stopped outcomes; a rerun leaves them as they are."""
    env = {**os.environ, "WANDB_SILENT": "true"}
    args = ["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=1", "+protocol=lr_seeds", "protocol.n_lr=2",
            "protocol.seeds=2", "early_stop=rungs", "early_stop.rungs=[0.5]", "early_stop.margin=0.999", "steps=8", "eval_every=2",
            "eval_size=16", "batch_size=8", "log_every=2", "seq_len=10", "model.hidden_size=8", "probe=none",
            "logger=none", "progress=false"]
    r = subprocess.run([sys.executable, "-m", "seqlab", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    jobs = sorted((d for d in sweep.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))
    got = [(yaml.safe_load((d / "config.yaml").read_text())["optim"]["lr"],
            yaml.safe_load((d / "config.yaml").read_text())["seed"]) for d in jobs]
    assert got == [(1e-4, 0), (1e-4, 1), (1e-2, 0), (1e-2, 1)]
    for d in jobs:
        s = json.loads((d / "summary.json").read_text())
        assert s["status"] == "stopped" and s["stopped_at_step"] == 4 and not s["solved"]
        assert s["final_loss"] > 0 and "early_stop.margin=0.999" in s["stop_reason"]
    assert "4 jobs: 4 stopped" in r.stderr and "job 0" not in r.stderr.split("4 jobs:")[1]
    again = subprocess.run([sys.executable, "-m", "seqlab", *[a for a in args if a != "-m"], f"resume={jobs[0]}",
                            "optim.lr=0.0001", "seed=0"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert "already stopped early at step 4" in again.stdout, again.stdout + again.stderr
    from seqlab import report  # its main in-process (python -m seqlab.report runs in test_verdicts, test_trust)

    assert report.main([str(sweep)]) == 0
    report = json.loads((sweep / "report" / "report.json").read_text())
    assert [r["status"] for r in report["runs"]] == ["stopped"] * 4
    md = (sweep / "report" / "report.md").read_text()
    assert "| stopped |" in md and "FAILED" not in md and "STOPPED" not in md
