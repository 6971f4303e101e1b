"""``python -m seqlab.probe checkpoint=PATH`` probes a run's checkpoint with the config it was trained
with: no retyping of task/model/T, a contradicting override is refused in one line, W&B as in a run."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.config import build_model, build_probe, build_task
from seqlab.probe import probe
from seqlab.probe.__main__ import check_standalone, load_checkpoint
from seqlab.train import RunInfo, train

TRAINED = ("task=copy", "model=lstm", "seq_len=4", "model.hidden_size=6", "steps=2", "eval_size=8",
           "batch_size=4", "probe=none", "logger=none", "progress=false", "threads=1")
PROBE = ("probe.batch_size=5", "probe.lyapunov_k=2", "probe.lyapunov_steps=0", "threads=1")


def compose_cfg(*overrides, name="config"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    choices = {"task": "copy", "model": "lstm", "optim": "adam", "probe": "none", "logger": "none"}  # as Hydra gives
    train(compose_cfg(*TRAINED), RunInfo(run_dir=run_dir, name="trained", choices=choices))
    return run_dir / "checkpoint.pt"


def test_probe_of_a_checkpoint_uses_its_config_and_logs_to_wandb(checkpoint, tmp_path):
    from wandb_records import wandb_records

    out = tmp_path / "probe"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    r = subprocess.run([sys.executable, "-m", "seqlab.probe", f"checkpoint={checkpoint}", *PROBE, "logger=wandb",
                        f"hydra.run.dir={out}"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["task"] == "copy" and s["model"] == "lstm" and s["step"] == 2  # not the defaults adding/rnn
    # the numbers are the library's probe of the checkpoint's model under the stored config
    cfg = compose_cfg("task=copy", "model=lstm", "seq_len=4", "model.hidden_size=6", *PROBE, name="probe_only")
    task = build_task(cfg)
    model = build_model(cfg, task)
    load_checkpoint(model, str(checkpoint))
    settings = build_probe(cfg)
    expected = probe(model, task, settings.make_batch(task), settings).summary()
    assert s["probe"]["c_l0"]["gain"] == pytest.approx(expected["c_l0"]["gain"], rel=1e-6)
    probed = (out / "config.yaml").read_text()
    assert "seq_len: 4" in probed and "hidden_size: 6" in probed
    (wb,) = (out / "wandb").glob("offline-run-*")
    records = wandb_records(wb)
    run = next(x["run"] for x in records if x["type"] == "run")
    assert run["display_name"] == "probe trained step 2" and run["job_type"] == "probe"  # the run it probes
    rows = [x["history"]["item"] for x in records if x["type"] == "history"]
    gains = [row["probe_summary/c_l0/gain"] for row in rows if "probe_summary/c_l0/gain" in row]
    assert gains == [pytest.approx(s["probe"]["c_l0"]["gain"])]
    with np.load(out / "probe.npz") as npz:
        lags = npz["lags"].tolist()
    # the run ended at step 2: its last checkpoint overlays the run's own probe/final/* curves
    assert [row["probe/lag"] for row in rows if "probe/final/c_l0" in row] == lags and len(lags) > 4
    assert [x["exit"].get("exit_code", 0) for x in records if x["type"] == "exit"] == [0]


@pytest.mark.parametrize("override, message", [
    ("seq_len=5", "seq_len=5: the checkpoint {} was trained with seq_len=4"),
    ("model=gru", "model=gru: the checkpoint {} was trained with model=lstm"),
    ("model.hidden_size=7", "model.hidden_size=7: the checkpoint {} was trained with model.hidden_size=6"),
])
def test_an_override_that_contradicts_the_checkpoint_is_refused(checkpoint, override, message):
    cfg = compose_cfg(f"checkpoint={checkpoint}", override, name="probe_only")
    with pytest.raises(ConfigError) as e:
        check_standalone(cfg, [f"checkpoint={checkpoint}", override])
    assert str(e.value).startswith(message.format(checkpoint)) and "\n" not in str(e.value)
    # the same values retyped, and the probe's own knobs, are fine
    same = [f"checkpoint={checkpoint}", "task=copy", "model=lstm", "seq_len=4", "probe.batch_size=3", "threads=1"]
    check_standalone(compose_cfg(*same, name="probe_only"), same)


def test_cli_refusal_is_one_line_and_writes_nothing(checkpoint, tmp_path):
    out = tmp_path / "never"
    r = subprocess.run([sys.executable, "-m", "seqlab.probe", f"checkpoint={checkpoint}", "seq_len=9",
                        f"hydra.run.dir={out}"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "seq_len=9" in r.stderr
    assert not out.exists()


def test_a_checkpoint_without_recorded_choices_compares_the_classes(checkpoint, tmp_path):
    saved = torch.load(checkpoint, weights_only=False)
    del saved["config"]["choices"]
    path = tmp_path / "older.pt"
    torch.save(saved, path)
    check_standalone(compose_cfg(f"checkpoint={path}", "model=lstm", name="probe_only"), ["model=lstm"])
    with pytest.raises(ConfigError, match="model=gru: the checkpoint .* was trained with another model"):
        check_standalone(compose_cfg(f"checkpoint={path}", "model=gru", name="probe_only"), ["model=gru"])


def test_a_bare_state_dict_still_takes_the_command_line(tmp_path):
    cfg = compose_cfg("task=adding", "model=gru", "seq_len=5", "model.hidden_size=4", name="probe_only")
    model = build_model(cfg, build_task(cfg))
    path = tmp_path / "bare.pt"
    torch.save({"model": model.state_dict()}, path)
    check_standalone(compose_cfg("task=adding", "model=gru", "seq_len=5", "model.hidden_size=4",
                                 f"checkpoint={path}", name="probe_only"), ["model=gru"])
    with pytest.raises(ConfigError, match="does not fit"):
        check_standalone(compose_cfg(f"checkpoint={path}", name="probe_only"), [])
