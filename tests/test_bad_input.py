"""Bad input, as a user types it: every command line below must end in one line
``seqlab: error: KEY=VALUE: what is allowed``, exit code 2, no traceback, and nothing written.

The table runs the in-process preflight (what ``python -m seqlab`` runs before Hydra creates
anything); a few end-to-end cases in tests/test_cli.py run the real command. The rules come from
one table, ``seqlab.config.KNOBS``; the last tests hold every knob of every config option to it.
"""
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqlab.checks import INT64_MAX, is_number
from seqlab.config import CONF_DIR, KNOBS, _annotation_rule, knob_leaves
from seqlab.preflight import preflight

BIG = 10**9

# (command line, what the one line must contain: the key and the value as typed or as parsed)
BAD = [
    # values that torch or the optimizer rejected, or took, after the old checks
    ("optim=rmsprop optim.alpha=nan", "optim.alpha=nan"),
    ("optim=rmsprop optim.alpha=2", "optim.alpha=2"),
    ("model=indrnn model.layer.max_gain=inf", "model.layer.max_gain=inf"),
    ("optim.lr=inf", "optim.lr=inf"),
    ("optim.weight_decay=inf", "optim.weight_decay=inf"),
    ("model.layer.recurrent_gain=nan", "model.layer.recurrent_gain=nan"),
    ("model.layer.recurrent_gain=inf", "model.layer.recurrent_gain=inf"),
    ("model.layer.recurrent_gain=-1e30", "model.layer.recurrent_gain=-1e+30"),
    ("model=lstm model.layer.forget_bias=nan", "model.layer.forget_bias=nan"),
    ("model=lstm model.layer.forget_bias=inf", "model.layer.forget_bias=inf"),
    ("model=gru model.layer.update_bias=nan", "model.layer.update_bias=nan"),
    ("model=lstm model.layer.chrono=true model.layer.chrono_tmax=inf", "model.layer.chrono_tmax=inf"),
    ("model=gru model.layer.chrono=true model.layer.chrono_tmax=nan", "model.layer.chrono_tmax=nan"),
    ("model=lru model.layer.max_phase=inf", "model.layer.max_phase=inf"),
    ("model=lru model.layer.r_min=nan", "model.layer.r_min=nan"),
    ("model=cornn model.layer.dt=nan", "model.layer.dt=nan"),
    ("model=selective model.layer.dt_max=inf", "model.layer.dt_max=inf"),
    ("task=flip_flop task.p_ignore=nan", "task.p_ignore=nan"),
    ("task=mqar task.power_a=inf", "task.power_a=inf"),
    ("grad_clip=inf", "grad_clip=inf"),
    ("grad_clip_value=nan", "grad_clip_value=nan"),
    ("probe.horizon_floor=nan", "probe.horizon_floor=nan"),
    ("+optim.betas=[0.9,2]", "optim.betas=[0.9, 2]"),
    ("+optim.eps=-1", "optim.eps=-1"),
    ("optim=sgd optim.momentum=nan", "optim.momentum=nan"),
    # options of another model or optimizer, deletions, typos, logger values
    ("model=lstm +model.layer.max_gain=2", "model.layer.max_gain=2: not an option of seqlab.models.LSTMLayer"),
    ("+optim.momentum=0.9", "optim.momentum=0.9: not an option of torch.optim.Adam"),
    ("~task", "~task: task cannot be removed"),
    ("~model", "~model"),
    ("~optim", "~optim"),
    ("~probe", "use probe=none"),
    ("~seq_len", "~seq_len"),
    ("+stpes=100", "stpes=100: not a seqlab setting (did you mean steps?)"),
    ("+foo=1", "foo=1: not a seqlab setting"),
    ("logger.mode=sometimes", "logger.mode='sometimes': must be one of offline, online, disabled"),
    ("logger.tags=abc", "logger.tags='abc': must be a list"),
    ("logger.init_timeout=-1", "logger.init_timeout=-1"),
    ("progress=maybe", "progress='maybe'"),
    # sizes that cannot fit, and the rest bounded
    ("seq_len=100000000", "seq_len=100000000: this run needs at least"),
    ("model.hidden_size=10000000", "model.hidden_size=10000000: this run needs at least"),
    ("model.num_layers=100000", "model.num_layers=100000: must be an integer in [1, 10000]"),
    ("model.num_layers=10000 model.hidden_size=1024", "model.num_layers=10000: this run needs at least"),
    (f"batch_size={BIG}", f"batch_size={BIG}: this run needs at least"),
    (f"eval_size={BIG}", f"eval_size={BIG}: this run needs at least"),
    (f"probe.batch_size={BIG}", f"probe.batch_size={BIG}: this run needs at least"),
    (f"task=delayed_recall task.n_symbols={BIG}", f"task.n_symbols={BIG}: this run needs at least"),
    ("steps=1e24", "steps=1e+24: must be an integer"),
    (f"steps={10**24}", f"steps={10**24}: must be an integer in [0, 10^12]"),
    ("threads=100000", "threads=100000: must be an integer in [1, 1024]"),
    (f"model.hidden_size={2**64}", "model.hidden_size=18446744073709551616: must be an integer in [1, 2^63 - 1]"),
    # seeds beyond 64 (and 32) bits
    ("seed=1180591620717411303424", "seed=1180591620717411303424: must be an integer in [0, 2^32 - 1]"),
    ("eval_seed=18446744073709551616", "eval_seed=18446744073709551616"),
    ("probe.seed=-1", "probe.seed=-1"),
    (f"seed={2**32}", f"seed={2**32}"),
    # sweeps
    ("-m optim.lr=interval(0.01,0.1)", "the basic sweeper cannot search an interval"),
    ("-m hydra/launcher=parallel hydra.launcher.n_jobs=0", "hydra.launcher.n_jobs=0"),
    ("-m +hparams_search=lr hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0"),
    ("-m +hparams_search=lr optim.lr=interval(0.1,0.01)", "an interval needs start < end"),
    ("-m +hparams_search=lr optim.lr=tag(log,interval(0,0.1))", "a log-scale interval needs start > 0"),
    ("-m +hparams_search=lr hydra.sweeper.storage=foo://bar", "hydra.sweeper.storage='foo://bar'"),
    ("-m +hparams_search=lr hydra.sweeper.storage=sqlite:////nonexistent/dir/optuna.db", "cannot write"),
    ("-m +hparams_search=lr hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0"),
    ("-m hydra/launcher=submitit_local hydra.launcher.timeout_min=-1", "hydra.launcher.timeout_min=-1"),
    ("task=adding,copy", "task=adding,copy: a sweep runs only with -m"),
    ("seed=range(0,3)", "seed=range(0,3): a sweep runs only with -m"),
    ("-m model=rnn,nope", "model=nope: unknown model"),
    ("-m model=rnn,lstm +model.layer.forget_bias=1", "forget_bias=1: not an option of seqlab.models.RNNLayer"),
    # a 512-job sweep whose 257th job has the bad value (the old check stopped after 256)
    ("-m seq_len=10,1 seed=range(0,256)", "seq_len=1: must be an integer >= 2"),
    # every distinct value of a long axis is checked, not only the composed ones
    ("-m model=rnn,gru seed=range(-1,600)", "seed=-1"),
    ("-m model=rnn,gru seed=range(0,600) model.hidden_size=8,16,10000000", "model.hidden_size=10000000"),
    # a remedy preset and another model: the model would silently replace the remedy's (a "lstm_chrono" GRU)
    ("remedy=lstm_chrono model=gru", "model=gru: remedy=lstm_chrono is a preset for model=lstm"),
    ("-m remedy=gru_chrono,lstm_chrono model=gru", "model=gru: remedy=lstm_chrono is a preset for model=lstm"),
    # two modes at once: Hydra's ValueError traceback before
    ("-m model=rnn --cfg job", "--multirun and --cfg: only one of"),
    # near misses name what was meant; Hydra's usage text and parse errors are one line of ours
    ("stpes=100", "stpes: not an option (did you mean steps?)"),
    ("sEq_len=100", "sEq_len: not an option (did you mean seq_len?)"),
    ("model=lstn", "model=lstn: unknown model (did you mean lstm?)"),
    ("extra", "extra: not an override; every argument is KEY=VALUE"),
    ("--cfg jb", "argument --cfg/-c: invalid choice: 'jb'"),
]


@pytest.mark.parametrize("line, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_command_line_is_one_line_exit_2_and_nothing_written(line, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        preflight(line.split())
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqlab: error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert any(w in err for w in ("must", "not", "needs", "cannot", "only", "allowed"))  # says what is allowed
    assert list(tmp_path.iterdir()) == []  # no outputs/, multirun/, optuna.db


def test_a_refusal_for_memory_gives_the_estimate_and_this_machines_memory(capsys):
    from seqlab.memory import machine_memory

    with pytest.raises(SystemExit):
        preflight(["seq_len=100000000"])
    err = capsys.readouterr().err
    assert "TiB" in err and "training step" in err or "probe" in err
    total = machine_memory(torch.device("cpu")) / 2**30
    assert f"{total:.3g} GiB" in err


GOOD = [
    "model.num_layers=10000 model.hidden_size=2",  # deep but small: allowed, and checked in O(1)
    "seed=4294967295",
    "model.layer.recurrent_gain=-100",
    "-m seed=range(0,600) model=rnn,gru",           # long sweeps pass when every value is fine
    "-m +hparams_search=lr hydra.sweeper.storage=sqlite:///optuna.db",
    "-m hydra/launcher=parallel hydra.launcher.n_jobs=-1",
    "remedy=lstm_chrono model=lstm",                  # the remedy's own model, said twice
    "-m remedy=rnn_xavier,rnn_kaiming model=rnn model.hidden_size=32",
]


@pytest.mark.parametrize("line", GOOD)
def test_good_command_lines_pass(line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    preflight(line.split())
    assert list(tmp_path.iterdir()) == []  # the sqlite file is not created by the check


# --- the table covers every knob of every option --------------------------------------------

IN_DEFAULTS = {next(iter(d)) for d in OmegaConf.load(Path(CONF_DIR) / "config.yaml").defaults if not isinstance(d, str)}
# The groups whose options bring knobs of their own (presets only set those knobs: validate checks them)
OPTIONS = [(g, p.stem) for g in sorted(IN_DEFAULTS - {"remedy"}) for p in sorted((Path(CONF_DIR) / g).glob("*.yaml"))]


def _knobs_of(*overrides, hydra=False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=hydra)
    return OmegaConf.to_container(cfg if not hydra else cfg.hydra, resolve=not hydra)


def test_every_knob_of_every_option_has_a_rule_in_the_table():
    """A new model, task or optimizer knob that is a number, a flag or a list needs its line in
    seqlab.config.KNOBS; this names every one that does not have it."""
    assert {"task", "model", "optim", "probe", "logger"} <= {g for g, _ in OPTIONS}
    missing = set()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        trees = [(g, o, OmegaConf.to_container(compose("config", overrides=[f"{g}={o}"]), resolve=True))
                 for g, o in OPTIONS]
    for group, option, tree in trees:
        for path, value, param in knob_leaves(tree):
            if path in KNOBS:
                continue
            if is_number(value) or isinstance(value, (bool, list)) or _annotation_rule(param) is not None:
                missing.add(f"{path} ({group}={option})")
    assert not missing, "declare these in seqlab.config.KNOBS: " + ", ".join(sorted(missing))


@pytest.mark.parametrize("launcher", sorted(p.stem for p in (Path(CONF_DIR) / "hydra" / "launcher").glob("*.yaml")))
def test_every_number_of_our_launcher_and_sweeper_configs_has_a_rule(launcher):
    for over in ([f"hydra/launcher={launcher}"], ["+hparams_search=lr"]):
        hydra = _knobs_of(*over, hydra=True)
        ours = OmegaConf.load(Path(CONF_DIR) / "hydra" / "launcher" / f"{launcher}.yaml") if "launcher" in over[0] \
            else OmegaConf.load(Path(CONF_DIR) / "hparams_search" / "lr.yaml").hydra
        node = "launcher" if "launcher" in over[0] else "sweeper"
        mine = OmegaConf.to_container(ours if node == "launcher" else ours.sweeper, resolve=False)
        for key, value in mine.items():
            if key in ("defaults", "params", "sampler", "setup", "additional_parameters") or str(key).startswith("_"):
                continue
            assert f"hydra.{node}.{key}" in KNOBS, f"declare hydra.{node}.{key} in seqlab.config.KNOBS"
            KNOBS[f"hydra.{node}.{key}"].check(f"hydra.{node}.{key}", hydra[node][key])  # our default obeys it


def test_every_default_obeys_its_own_rule():
    tree = _knobs_of()
    for path, value, param in knob_leaves(tree):
        if path in KNOBS:
            KNOBS[path].check(path, value)


# --- the memory estimate is a lower bound: it never refuses a run that fits -----------------

@pytest.mark.parametrize("model", sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml")))
def test_memory_estimate_of_a_training_step_is_below_what_autograd_really_keeps(model):
    """Parameters, gradients and optimizer state plus the tensors autograd saves for one training
    step, measured, are at least the estimate's training terms (the estimate errs low, never high)."""
    from seqlab.config import _model_sizes, build_model, build_optimizer, build_task
    from seqlab.memory import estimate

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={model}", "seq_len=12", "batch_size=3", "model.hidden_size=8",
                                           "model.num_layers=3", "eval_size=2", "probe=none", "logger=none"])
    task = build_task(cfg)
    _, n_params, states, outputs = _model_sizes(cfg, task)
    torch.manual_seed(0)
    net = build_model(cfg, task)
    assert n_params == sum(p.numel() for p in net.parameters())  # the two-layer extrapolation is exact
    opt = build_optimizer(cfg, net)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    batch = task.make_batch(cfg.batch_size, torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = net(batch.inputs)
        loss = task.loss(out, batch)
    loss.backward()
    opt.step()
    state = sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v)
                and v.dim() > 0)
    measured = 4 * n_params * 2 + state + sum(saved) + out.numel() * 4 + batch.inputs.numel() * 4
    terms = {t.name: t.bytes for t in estimate(cfg, task, n_params, states, outputs, probe=False)}
    assert terms["parameters"] + terms["training step"] <= measured


def test_bounds_read_as_written():
    assert KNOBS["seed"].describe() == "an integer in [0, 2^32 - 1]"
    assert KNOBS["steps"].describe() == "an integer in [0, 10^12]"
    assert KNOBS["optim.lr"].describe() == "a finite number > 0"
    assert KNOBS["batch_size"].describe(2**70) == "an integer in [1, 2^63 - 1]"
    assert not KNOBS["optim.lr"].ok(math.inf) and not KNOBS["optim.lr"].ok(True) and KNOBS["optim.lr"].ok(1e30)
    assert KNOBS["seq_len"].ok(INT64_MAX) and not KNOBS["seq_len"].ok(INT64_MAX + 1)
