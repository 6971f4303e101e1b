"""A population (seqlab.population, issue 20): same-shaped runs trained as one batched model, each
member still its own run, equal to the same run trained alone (to float rounding)."""
import json
import math
import os
import signal
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab import train as train_module
from seqlab.__main__ import CONF_DIR
from seqlab.models import FeedforwardLayer, GRULayer, LSTMLayer, RNNLayer, SequenceModel
from seqlab.models.bnlstm import BNLSTMLayer
from seqlab.models.cornn import CoRNNLayer
from seqlab.models.indrnn import IndRNNLayer
from seqlab.models.lru import LRULayer
from seqlab.models.mingru import MinGRULayer
from seqlab.models.minlstm import MinLSTMLayer
from seqlab.models.orthogonal import OrthogonalRNNLayer
from seqlab.models.activations import ACTIVATIONS
from seqlab.population import Population, batchable, group_key, population_support
from seqlab.probe.lyapunov import lyapunov_estimates, population_lyapunov_estimates
from seqlab.train import Preempted, RunInfo, train, train_members

SMALL = ["logger=none", "progress=false", "task=adding", "seq_len=10", "steps=30", "eval_every=10",
         "log_every=5", "eval_size=64", "batch_size=8", "model.hidden_size=8", "probe.every=15",
         "probe.lyapunov_steps=40", "probe.lyapunov_warmup=10", "probe.plots=false", "checkpoint_every=10"]


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*SMALL, *overrides])


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def close(a: float, b: float, rel: float = 1e-4) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def assert_same_run(alone: Path, member: Path, rel: float = 1e-4, lyapunov_atol: float = 1e-7) -> None:
    """The member's record equals the lone run's: every metrics row, the summary's results, the probe curves."""
    a, b = rows(alone), rows(member)
    assert [r["step"] for r in a] == [r["step"] for r in b] and len(a) > 1
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float) and not k.startswith("train/update_ratio"):
                assert close(ra[k], rb[k], rel), (k, ra["step"], ra[k], rb[k])
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (alone, member))
    assert sa["status"] == sb["status"] == "finished"
    assert close(sa["final_loss"], sb["final_loss"], rel)
    assert sa["solved_step"] == sb["solved_step"] and sa["final_accuracy"] == sb["final_accuracy"]
    assert set(sa) == set(sb)  # nothing a member writes differs in kind from a lone run
    pa, pb = np.load(alone / "probe.npz"), np.load(member / "probe.npz")
    assert pa.files == pb.files
    for k in pa.files:
        if k.startswith(("mean_", "total_", "gain_")):
            np.testing.assert_allclose(pb[k], pa[k], rtol=rel, atol=1e-12, err_msg=k)
        if k.startswith("lyapunov_l"):  # a population's spectra come from one batched pass (probe_members)
            # at step 0 (the same weights) every exponent; later the largest (the trained weights differ by
            # rounding, which can move the smallest exponents of a degenerate spectrum, e.g. dead ReLU units)
            np.testing.assert_allclose(pb[k][0], pa[k][0], rtol=1e-5, atol=lyapunov_atol, err_msg=k)
            np.testing.assert_allclose(pb[k][:, 0], pa[k][:, 0], rtol=rel, atol=max(1e-6, lyapunov_atol), err_msg=k)


# --- the batched step itself ------------------------------------------------------------------------

CELLS = {**{f"rnn_{f}": partial(RNNLayer, activation=f) for f in ACTIVATIONS},
         "lstm": LSTMLayer, "gru": GRULayer, "mlp": FeedforwardLayer,
         # the cells whose step path takes the member dim (no hand-written kernel: their loop, batched)
         "indrnn": partial(IndRNNLayer, tmax=6),
         "indrnn_tanh": partial(IndRNNLayer, tmax=6, activation="tanh"), "exprnn": OrthogonalRNNLayer,
         "exprnn_tanh": partial(OrthogonalRNNLayer, activation="tanh"), "lru": LRULayer, "mingru": MinGRULayer,
         "minlstm": MinLSTMLayer, "mingru_signed": partial(MinGRULayer, eigenvalues="signed"), "cornn": CoRNNLayer}


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_summed_member_losses_give_each_member_its_own_gradient(cell):
    """Outputs and every parameter's gradient of a population equal each model's alone (per member's
    own loss, summed: the sum's gradient w.r.t. member m's weights is member m's own)."""
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(SequenceModel(CELLS[cell], input_size=3, output_size=2, hidden_size=6,
                                    num_layers=2 if cell != "mlp" else 3))
    x, y = torch.randn(3, 4, 6, 3), torch.randn(3, 4, 6, 2)
    steps = torch.tensor([2, 5])
    alone_out, alone_grads = [], []
    for m, model in enumerate(models):
        out = model(x[m], steps=steps)
        ((out - y[m]) ** 2).mean().backward()
        alone_out.append(out.detach())
        alone_grads.append([p.grad.clone() for p in model.parameters()])
        model.zero_grad(set_to_none=True)
    out = Population(models)(models, x, steps)
    assert out.shape == (3, 4, 6, 2)
    torch.stack([((out[m] - y[m]) ** 2).mean() for m in range(3)]).sum().backward()
    for m, model in enumerate(models):
        torch.testing.assert_close(out[m].detach(), alone_out[m], rtol=1e-5, atol=1e-6)
        for p, g in zip(model.parameters(), alone_grads[m]):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru", "indrnn_tanh", "exprnn", "lru",
                                  "mingru", "cornn"])
def test_population_lyapunov_spectra_equal_each_members_alone(cell):
    """One batched QR loop over the members' stacked weights (the probe's spectra in a population) gives
    each member the estimate it gets alone: exponents, standard error and drift, every layer. (ReLU: the
    top 2 only; an exponent next to an exactly -inf one, a dead unit's, is ill-conditioned: rounding moves
    it by ~1% (seen: a member against its lone run, the same weights).)"""
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(SequenceModel(CELLS[cell], input_size=3, output_size=2, hidden_size=6, num_layers=2))
    x = torch.randn(1, 80, 3)
    k = 2 if cell == "rnn_relu" else 4
    together = population_lyapunov_estimates(models, x, k=k, warmup=20, seed=3)
    for model, estimates in zip(models, together):
        alone = lyapunov_estimates(model, x, k=k, warmup=20, seed=3)
        assert len(estimates) == len(alone) == 2 and any(np.isfinite(e.exponents).any() for e in alone)
        for a, b in zip(alone, estimates):  # (a dead ReLU layer's exponents are exactly -inf)
            assert a.steps == b.steps == 60
            for field in ("exponents", "se", "drift"):
                np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0][0].exponents, together[1][0].exponents)  # each member its own


def test_a_member_that_overflows_leaves_the_others_gradients_finite_and_their_own():
    models = []
    for seed, gain in ((0, 1.0), (1, 100.0), (2, 1.0)):
        torch.manual_seed(seed)
        models.append(SequenceModel(partial(RNNLayer, activation="identity", recurrent_gain=gain), input_size=2,
                                    output_size=1, hidden_size=6))
    x = torch.randn(3, 4, 40, 2)  # member 1: |W|^40 with rho = 100 overflows float32
    out = Population(models)(models, x)
    losses = (out ** 2).mean(dim=(1, 2, 3))
    losses.sum().backward()
    assert not torch.isfinite(losses[1])
    for m in (0, 2):
        assert torch.isfinite(losses[m])
        assert all(torch.isfinite(p.grad).all() for p in models[m].parameters())


def test_cells_without_a_member_dimension_say_so_in_one_line():
    bn = SequenceModel(BNLSTMLayer, input_size=2, output_size=1, hidden_size=4)
    assert population_support([bn]) == ("BNLSTMLayer: its batch norms keep running statistics per time step "
                                         "(buffers) with no member dimension")
    ln = SequenceModel(partial(GRULayer, layer_norm=True), input_size=2, output_size=1, hidden_size=4)
    assert "layer_norm" in population_support([ln])
    ff = SequenceModel(partial(FeedforwardLayer, norm="batch"), input_size=2, output_size=1, hidden_size=4)
    assert "norm" in population_support([ff]) and "\n" not in population_support([ff])
    with pytest.raises(ValueError, match="cannot train as one population"):
        Population([bn, bn])
    for model in ("gru", "lru", "exprnn", "indrnn", "cornn", "mingru", "minlstm"):
        assert batchable(compose_cfg(f"model={model}")) is None, model
    assert batchable(compose_cfg("model=selective")).startswith("SelectiveLayer: no faster in a population")
    assert "BNLSTMLayer" in batchable(compose_cfg("model=bnlstm"))
    assert "floss" in batchable(compose_cfg("model=gru", "floss=default"))


def test_group_key_ignores_only_seed_lr_and_init():
    key = group_key(compose_cfg("model=gru"))
    assert group_key(compose_cfg("model=gru", "seed=5", "optim.lr=0.1", "model.layer.init=orthogonal",
                                 "model.layer.recurrent_gain=0.5", "model.layer.chrono=true")) == key
    for other in ("model.hidden_size=16", "seq_len=12", "grad_clip=1.0", "steps=31", "+optim.betas=[0.8,0.9]",
                  "model=lstm", "batch_size=9"):
        assert group_key(compose_cfg("model=gru", other)) != key, other


# --- the loop: members against the same runs alone ------------------------------------------------

VARIANTS = [("seed=0", "optim.lr=1e-3"), ("seed=1", "optim.lr=1e-2"),
            ("seed=2", "optim.lr=3e-3", "model.layer.init=orthogonal")]


# each cell's own knobs: rnn with relu; exprnn's init names a skew-symmetric scheme (not orthogonal)
EXTRA = {"rnn": ("model.layer.activation=relu",)}
INIT = {"exprnn": "model.layer.init=cayley"}
# expRNN's exponents are 0 for its orthogonal Q; float32 matrix_exp of one (H, H) matrix and of the stacked
# (M, H, H) ones take different rounding (log singular values -4e-7..-1.7e-6 against +1.6e-7, seen at H = 8),
# which the QR loop's mean turns into exponents of -5e-6 against +8e-8: equal to float32 rounding, not to 1e-7
LYAPUNOV_ATOL = {"exprnn": 1e-5}


@pytest.mark.parametrize("model", ["gru", "lstm", "rnn", "indrnn", "exprnn", "lru", "mingru", "minlstm", "cornn"])
def test_population_members_equal_the_same_runs_alone(model, tmp_path):
    variants = [[INIT.get(model, o) if o.startswith("model.layer.init") else o for o in v] for v in VARIANTS]
    cfgs = [compose_cfg(f"model={model}", "grad_clip=0.5", *EXTRA.get(model, ()), *v) for v in variants]
    for i, cfg in enumerate(cfgs):
        train(cfg, RunInfo(run_dir=tmp_path / f"alone{i}", name=f"r{i}"))
    results = train_members(cfgs, [RunInfo(run_dir=tmp_path / f"member{i}", name=f"r{i}") for i in range(3)])
    assert all(isinstance(r, dict) and r["status"] == "finished" for r in results)
    for i in range(3):
        assert_same_run(tmp_path / f"alone{i}", tmp_path / f"member{i}", lyapunov_atol=LYAPUNOV_ATOL.get(model, 1e-7))
        # the same files, and a checkpoint a lone run can resume from (same keys, same shapes)
        names = {p.name for p in (tmp_path / f"alone{i}").iterdir()}
        assert names == {p.name for p in (tmp_path / f"member{i}").iterdir()}
        ca, cb = (torch.load(tmp_path / f"{w}{i}" / "checkpoint.pt", weights_only=True) for w in ("alone", "member"))
        assert ca.keys() == cb.keys() and ca["model"].keys() == cb["model"].keys()
        assert torch.equal(ca["data_rng"], cb["data_rng"]) and torch.equal(ca["rng"]["cpu"], cb["rng"]["cpu"])


def test_mlp_population_on_a_task_without_time(tmp_path):
    cfgs = [compose_cfg("model=mlp", "task=random_labels", "model.layer.activation=tanh", *v) for v in VARIANTS[:2]]
    for i, cfg in enumerate(cfgs):
        train(cfg, RunInfo(run_dir=tmp_path / f"alone{i}", name=f"r{i}"))
    train_members(cfgs, [RunInfo(run_dir=tmp_path / f"member{i}", name=f"r{i}") for i in range(2)])
    for i in range(2):
        assert_same_run(tmp_path / f"alone{i}", tmp_path / f"member{i}")


def test_a_member_that_fails_at_setup_gets_its_record_and_fails_alone(tmp_path):
    """optim.lr=-1 in one member: it ends with its one-line ConfigError before training, its fresh directory
    still gets Hydra's record (on_accept, as a lone job's does), and the others train."""
    cfgs = [compose_cfg("model=gru", "steps=4", f"optim.lr={lr}") for lr in (1e-3, -1, 3e-3)]
    accepted = []
    infos = [RunInfo(run_dir=tmp_path / f"m{i}", name=f"r{i}", on_accept=partial(accepted.append, i)) for i in range(3)]
    results = train_members(cfgs, infos)
    assert isinstance(results[1], train_module.ConfigError) and "optim.lr" in str(results[1])
    assert results[0]["status"] == results[2]["status"] == "finished"
    assert sorted(accepted) == [0, 1, 2]
    (tmp_path / "m1" / "checkpoint.pt").write_bytes(b"")  # a directory with a checkpoint is not written into
    accepted.clear()
    train_members(cfgs, infos)
    assert 1 not in accepted


def test_one_member_diverges_the_others_go_on(tmp_path):
    """A linear RNN with rho = 100 overflows at once (its step-0 evaluation is already non-finite): that
    member ends 'diverged', with its probe where it blew up; the others finish, equal to their runs alone."""
    base = ("model=rnn", "model.layer.activation=identity", "seq_len=30")
    cfgs = [compose_cfg(*base, "seed=0"), compose_cfg(*base, "seed=1", "model.layer.recurrent_gain=100"),
            compose_cfg(*base, "seed=2", "optim.lr=1e-2")]
    results = train_members(cfgs, [RunInfo(run_dir=tmp_path / f"member{i}", name=f"r{i}") for i in range(3)])
    assert isinstance(results[1], train_module.Diverged)
    s1 = json.loads((tmp_path / "member1" / "summary.json").read_text())
    assert s1["status"] == "diverged" and s1["diverged_step"] == 0 and "probe" in s1
    for i in (0, 2):
        assert results[i]["status"] == "finished"
        train(cfgs[i], RunInfo(run_dir=tmp_path / f"alone{i}", name=f"r{i}"))
        assert_same_run(tmp_path / f"alone{i}", tmp_path / f"member{i}")


def test_killed_population_resumes_every_member_to_the_uninterrupted_results(tmp_path, monkeypatch):
    cfgs = [compose_cfg("model=gru", *v) for v in VARIANTS]
    whole = train_members(cfgs, [RunInfo(run_dir=tmp_path / f"whole{i}", name=f"r{i}") for i in range(3)])
    infos = [RunInfo(run_dir=tmp_path / f"cut{i}", name=f"r{i}") for i in range(3)]
    real = train_module.Member.after_step

    def signal_at_17(self, step, elapsed):  # SIGTERM arrives during step 17, as a scheduler's would
        if step == 17 and self is not None and self.info.run_dir == infos[0].run_dir:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, step, elapsed)

    monkeypatch.setattr(train_module.Member, "after_step", signal_at_17)
    with pytest.raises(Preempted):
        train_members(cfgs, infos)
    for info in infos:
        s = json.loads((info.run_dir / "summary.json").read_text())
        assert s["status"] == "preempted" and s["stopped_at_step"] == 17
    monkeypatch.setattr(train_module.Member, "after_step", real)
    resumed = train_members(cfgs, infos)
    for i in range(3):
        assert resumed[i]["segments"] == 2 and resumed[i]["resumed_from_step"] == 17
        assert rows(tmp_path / f"whole{i}") == rows(tmp_path / f"cut{i}")  # bit for bit
        assert resumed[i]["final_loss"] == whole[i]["final_loss"]
        pa, pb = np.load(tmp_path / f"whole{i}" / "probe.npz"), np.load(tmp_path / f"cut{i}" / "probe.npz")
        assert all(np.array_equal(pa[k], pb[k], equal_nan=pa[k].dtype.kind == "f") for k in pa.files)
    # a finished member stays finished: a rerun changes nothing
    again = train_members(cfgs, infos)
    assert all(r.get("already_finished") for r in again)


def test_nonfinite_policy_skip_is_per_member(tmp_path, monkeypatch):
    """on_nonfinite=skip: member 1's loss turns non-finite from step 3 (injected); it skips those updates
    and ends diverged once past skip_limit; member 0 skips nothing and equals its run alone."""
    cfgs = [compose_cfg("model=gru", "on_nonfinite=skip", "steps=20", f"seed={i}") for i in range(2)]
    infos = [RunInfo(run_dir=tmp_path / f"m{i}", name=f"r{i}") for i in range(2)]
    real = train_module.Member.update

    def nan_loss(self, step, loss_value, norm_value, *rest):
        bad = self.info.run_dir == infos[1].run_dir and step >= 3
        return real(self, step, math.nan if bad else loss_value, norm_value, *rest)

    monkeypatch.setattr(train_module.Member, "update", nan_loss)
    results = train_members(cfgs, infos)
    monkeypatch.setattr(train_module.Member, "update", real)
    assert isinstance(results[1], train_module.Diverged)
    s1 = json.loads((infos[1].run_dir / "summary.json").read_text())
    assert s1["status"] == "diverged" and s1["diverged_step"] == 12 and "10 of 12 updates skipped" in s1["error"]
    assert results[0]["status"] == "finished" and results[0]["skipped_updates"] == 0
    train(cfgs[0], RunInfo(run_dir=tmp_path / "alone0", name="r0"))
    assert_same_run(tmp_path / "alone0", infos[0].run_dir)


# --- the launcher: a multirun as a user runs it ------------------------------------------------------

def test_populations_are_cut_to_max_members_and_split_so_no_worker_idles():
    from hydra_plugins.seqlab_batched_launcher.batched_launcher import makespan, plan_populations

    assert plan_populations([list(range(10)), [10, 11]], max_members=4, n_jobs=1) == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10, 11]]
    # one group of 16 on 2 workers: two populations of 8; on 4 workers: four of 4
    assert sorted(map(len, plan_populations([list(range(16))], 64, 2))) == [8, 8]
    assert sorted(map(len, plan_populations([list(range(16))], 64, 4))) == [4, 4, 4, 4]
    assert sorted(map(len, plan_populations([list(range(8)), list(range(8, 24))], 64, 2))) == [8, 16]  # enough
    assert plan_populations([[0, 1, 2]], 64, 2) == [[0, 1, 2]]  # too small to split
    plan = plan_populations([list(range(13))], 64, 3)
    assert sorted(j for p in plan for j in p) == list(range(13)) and len(plan) == 3
    # the trainability preset at one length (RNN 8, LSTM 16, GRU 16) on 2 workers: 24 jobs' work on one
    # worker and 16 on the other, unless the 8 is cut: then 20 and 20; the largest populations go first
    plan = plan_populations([list(range(8)), list(range(8, 24)), list(range(24, 40))], 64, 2)
    assert plan == [list(range(8, 24)), list(range(24, 40)), [0, 1, 2, 3], [4, 5, 6, 7]]
    assert makespan(plan, 2) == 20 and makespan([list(range(8)), list(range(8, 24)), list(range(24, 40))], 2) == 24

def test_a_population_is_capped_by_its_members_work():
    """Large runs go in smaller populations (seqlab.population.MEMBER_WORK: at GRU, T=200, H=64, B=64 a
    population of 8 was faster per member than one of 16); small runs are not capped below max_members."""
    from hydra_plugins.seqlab_batched_launcher.batched_launcher import plan_populations
    from seqlab.population import members_cap

    assert members_cap(compose_cfg("seq_len=200", "model.hidden_size=64", "batch_size=64")) == 8
    assert members_cap(compose_cfg("seq_len=20", "model.hidden_size=32", "batch_size=32")) == 320
    assert [len(p) for p in plan_populations([list(range(16)), [16, 17]], 64, 1, [8, 64])] == [8, 8, 2]


def test_the_launcher_keeps_the_configs_the_sweeper_composed():
    """Hydra's sweeper composes every job to validate the batch before launch(); the launcher takes those
    configs instead of composing each job again, and hands its workers the loader as it was (picklable)."""
    import pickle
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from hydra_plugins.seqlab_batched_launcher.batched_launcher import BatchedLauncher

    calls = []
    loader = _Loader(calls)
    master = OmegaConf.create({"hydra": {"runtime": {"choices": {}}}})
    launcher = BatchedLauncher(n_jobs=1)
    launcher.setup(hydra_context=SimpleNamespace(config_loader=loader), task_function=None, config=master)
    composed = [loader.load_sweep_config(master, o) for o in (["+a=0"], ["+a=1"])]  # the sweeper's check
    seen = {}

    def body(job_overrides, initial_job_idx):
        seen["pickles"] = len(pickle.dumps(loader)) > 0  # what the workers receive: no closure, no configs
        return [launcher._composed.pop((id(master), tuple(o)), None) for o in job_overrides]

    launcher._launch = body
    assert launcher.launch([["+a=0"], ["+a=1"]], 0) == composed and calls == [["+a=0"], ["+a=1"]]
    assert seen["pickles"] and launcher._composed == {}
    assert "load_sweep_config" in vars(loader)  # remembering again for the sweeper's next batch


def test_the_sweep_composer_gives_hydras_own_configs_composing_once_per_structure():
    """The batched launcher's SweepComposer: each job's config (the hydra node included) equals Hydra's own
    load_sweep_config, YAML for YAML; only the first job of each set of config-group choices is composed."""
    import itertools

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from hydra_plugins.seqlab_batched_launcher.batched_launcher import SweepComposer

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(config_name="config", run_mode=RunMode.MULTIRUN,
                                           overrides=["task=adding", "logger=none", "hydra.sweep.dir=/tmp/s"])
        full = []
        composer = SweepComposer(lambda m, o: full.append(o) or loader.load_sweep_config(m, o))
        jobs = [[f"model={m}", f"seed={s}", f"optim.lr={lr}", "+model.readout_init=orthogonal"] * (m == "rnn") or
                [f"model={m}", f"seed={s}", f"optim.lr={lr}"]
                for m, s, lr in itertools.product(("gru", "rnn"), (0, 1), ("1e-3", "0.003"))]
        for job in jobs:
            ours, hydras = composer(master, job), loader.load_sweep_config(master, job)
            assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras), job
            assert list(ours.hydra.overrides.task) == job and ours.seed == int(job[1][5:])
    assert full == [jobs[0], jobs[4]]  # the rnn jobs' "+" override is structural: composed once, then copied


class _Loader:  # stands in for Hydra's config loader
    def __init__(self, calls):
        self.calls = calls

    def load_sweep_config(self, master_config, sweep_overrides):
        from omegaconf import OmegaConf

        self.calls.append(list(sweep_overrides))
        return OmegaConf.create({"composed": list(sweep_overrides)})


def seqlab_cli(cwd: Path, *args, timeout=600):
    import subprocess
    import sys

    env = {**os.environ, "WANDB_SILENT": "true", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("WANDB_MODE", None)
    return subprocess.run([sys.executable, "-m", "seqlab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_batched_launcher_writes_what_the_basic_launcher_writes(tmp_path):
    """model=gru,bnlstm x lr=1e30,0.01 (SGD): the 2 GRU jobs train as one population (the one at lr=1e30
    diverges at step 2 and fails only its own job), the BN-LSTM jobs (running statistics) run alone after
    one line each. Every job's directory equals the basic launcher's, each with its own W&B run."""
    sweep = ["-m", "model=gru,bnlstm", "optim=sgd", "optim.lr=1e30,0.01", "logger=wandb",
             *[o for o in SMALL if o != "logger=none"]]
    runs = {}
    for launcher in ("basic", "batched"):
        (tmp_path / launcher).mkdir()
        r = seqlab_cli(tmp_path / launcher, *sweep, f"hydra/launcher={launcher}", "hydra.sweep.dir=sweep")
        assert r.returncode == 1, r.stderr  # Hydra re-raises a failed job once the sweep has run
        assert "Traceback" not in r.stderr
        runs[launcher] = sorted((d for d in (tmp_path / launcher / "sweep").iterdir() if d.name.isdigit()),
                                key=lambda d: int(d.name))
        assert len(runs[launcher]) == 4
    out = r.stderr
    assert "Launching 4 jobs: 1 population (2 members), 2 jobs alone" in r.stdout
    cores = os.cpu_count() or 1  # n_jobs=1 (the default) runs the 3 parts one after another, and says so
    assert (f"alone, one after another (hydra.launcher.n_jobs={cores} runs {cores} at once" in r.stdout) == (cores > 1)
    assert out.count("runs unbatched: BNLSTMLayer: its batch norms keep running statistics per time step") == 2
    assert out.count("diverged: non-finite loss at step 2") == 2  # one GRU member, one BN-LSTM job
    assert out.strip().splitlines()[-1].endswith("4 jobs: 2 finished, 2 diverged (job 0, 2)")
    ids = set()
    for alone, member in zip(runs["basic"], runs["batched"]):
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (alone, member))
        assert sa["status"] == sb["status"] and sa["name"] == sb["name"] and set(sa) == set(sb)
        assert (alone / ".hydra" / "overrides.yaml").read_text() == (member / ".hydra" / "overrides.yaml").read_text()
        if sa["status"] == "finished":
            assert_same_run(alone, member)
        else:
            assert sa["diverged_step"] == sb["diverged_step"] == 2
        assert sb["wandb_run"] and list((member / "wandb").glob(f"offline-run-*-{sb['wandb_run']}"))
        ids.add(sb["wandb_run"])
    assert len(ids) == 4  # each job its own W&B run
