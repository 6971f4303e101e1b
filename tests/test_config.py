"""Every option of every config group composes and instantiates; the top-level schema rejects bad values."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.config import build_model, build_optimizer, build_task, validate

GROUPS = sorted(p.name for p in Path(CONF_DIR).iterdir() if p.is_dir() and not p.name.startswith("_"))
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((Path(CONF_DIR) / g).glob("*.yaml"))]
# groups in config.yaml's defaults list are overridden as group=x, the others added as +group=x
IN_DEFAULTS = {next(iter(d)) for d in OmegaConf.load(Path(CONF_DIR) / "config.yaml").defaults if not isinstance(d, str)}


def make_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_the_groups_the_design_names_exist():
    assert {"task", "model", "optim", "probe", "logger"} <= set(GROUPS)
    assert {("task", "adding"), ("task", "copy"), ("task", "delayed_recall"), ("model", "rnn"),
            ("model", "lstm"), ("model", "gru"), ("optim", "adam"), ("optim", "rmsprop"), ("optim", "sgd"),
            ("logger", "wandb"), ("logger", "none")} <= set(OPTIONS)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(group, option, tmp_path):
    override = f"{group}={option}" if group in IN_DEFAULTS else f"+{group}={option}"
    cfg = make_cfg(override, "seq_len=20", *(["logger.mode=disabled"] if (group, option) == ("logger", "wandb") else []))
    validate(cfg)
    task = build_task(cfg)
    model = build_model(cfg, task)
    build_optimizer(cfg, model)
    x = task.make_batch(2, torch.Generator().manual_seed(0)).inputs
    assert model(x).shape == (2, task.total_len, task.output_size)
    if group == "logger":
        tracker = instantiate(cfg.logger)(run_dir=tmp_path, config={}, name="t", job_type="test")
        tracker.log({"step": 0})
        tracker.finish()


@pytest.mark.parametrize("override, key", [
    ("seq_len=1", "seq_len"), ("seq_len=abc", "seq_len"), ("seq_len=2.5", "seq_len"),
    ("steps=-1", "steps"), ("batch_size=0", "batch_size"), ("eval_every=0", "eval_every"),
    ("grad_clip=-1", "grad_clip"), ("grad_clip=0", "grad_clip"), ("device=tpu", "device"),
    ("threads=0", "threads"), ("progress=maybe", "progress"), ("seed=-3", "seed"),
    ("optim.lr=-0.1", "optim.lr"), ("optim.lr=0", "optim.lr"), ("optim.weight_decay=-1", "optim.weight_decay"),
    ("model.hidden_size=0", "model.hidden_size"), ("model.num_layers=0", "model.num_layers"),
    ("model.layer.activation=swish", "model.layer.activation"),
    ("model.layer.init=magic", "model.layer.init"), ("model.layer.recurrent_gain=big", "model.layer.recurrent_gain"),
    ("model.hidden_size=1.5", "model.hidden_size"), ("batch_size=abc", "batch_size"), ("eval_size=0", "eval_size"),
    ("log_every=0", "log_every"), ("eval_seed=-1", "eval_seed"), ("steps=1.5", "steps"), ("device=cuda:7", "device"),
    ("threads=abc", "threads"), ("flush_denormal=2", "flush_denormal"), ("on_nonfinite=explode", "on_nonfinite"),
    ("checkpoint_every=0", "checkpoint_every"), ("resume=/nonexistent/run", "resume"), ("seq_len=true", "seq_len"),
    ("task=delayed_recall task.n_symbols=1", "task.n_symbols"),
    ("task=delayed_recall task.distractors=noise", "task.distractors"),
    ("optim=sgd optim.momentum=1.5", "optim.momentum"), ("optim=rmsprop optim.lr=abc", "optim.lr"),
])
def test_bad_values_give_one_line_naming_the_key(override, key):
    cfg = make_cfg(*override.split(), "logger=none")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert msg.startswith(f"{key}=") and "\n" not in msg and ("must" in msg or "not" in msg)


def test_defaults_are_valid():
    cfg = make_cfg()
    validate(cfg)
    assert cfg.seq_len == 200 and cfg.task.seq_len == 200 and cfg.grad_clip is None
