"""The long-memory task suite (issue 11): worked examples from the docstrings, baselines equal
to their formulas and to the memoryless limit on large samples, generators free of global
state, the per-example loss mask in the loss, the evaluation and the probe, every task x
every model through train() and the probe, and the one-line errors for bad settings."""
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.models import RNNLayer, SequenceModel
from seqlab.probe import curve_keys, gradient_curves
from seqlab.probe.gradient import per_example_answers
from seqlab.tasks import (MQAR, FlipFlop, LagCopy, Parity, SelectiveCopy, TemporalOrder, flip_flop, lag_copy,
                          mqar, parity, selective_copy, temporal_order)
from seqlab.tasks.base import lag_distribution
from seqlab.train import RunInfo, evaluate, train


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- worked examples (the tables in the module docstrings) ----------------------------------

def test_temporal_order_worked_example():
    distractors = torch.tensor([[0, 0, 0, 1, 2, 0, 3, 0, 1, 0, 0],    # E a X b c Y d a b B -
                                [0, 0, 1, 2, 3, 0, 0, 1, 0, 2, 0]])   # E Y b c d a X b a c B
    positions = torch.tensor([[2, 5], [1, 6]])
    values = torch.tensor([[0, 1], [1, 0]])
    b = temporal_order.from_symbols(distractors, positions, values, torch.tensor([10, 11]), seq_len=10)
    text = ["".join(temporal_order.SYMBOLS[int(i)] if row.sum() else "-" for i, row in zip(r.argmax(-1), r))
            for r in b.inputs]
    assert text == ["EaXbcYdabB-", "EYbcdaXbacB"]
    assert b.inputs[0, 10].sum() == 0  # padding is all zeros
    assert b.mask.tolist() == [[True, False], [False, True]]
    assert b.targets.tolist() == [[1, 1], [2, 2]] and b.lags.tolist() == [[7, -1], [-1, 9]]
    t = TemporalOrder(10)
    assert temporal_order.windows(10, "6a") == [(1, 2), (5, 6)] and t.loss_steps.tolist() == [9, 10]
    assert temporal_order.windows(100, "6a") == [(10, 20), (50, 60)]  # the paper's numbers at T = 100
    assert temporal_order.windows(100, "6b") == [(10, 20), (33, 43), (66, 76)]
    assert t.total_len == 11 and t.output_size == 4 and TemporalOrder(10, variant="6b").output_size == 8


def test_selective_copy_worked_example():
    b = selective_copy.from_tokens(torch.tensor([[3, 1, 4]]), torch.tensor([[1, 2, 5]]), seq_len=4, n_tokens=6)
    assert b.inputs[0].argmax(-1).tolist() == [0, 3, 1, 0, 0, 4, 0, 5, 5, 5]
    assert b.targets.tolist() == [[3, 1, 4]] and b.lags.tolist() == [[6, 6, 4]] and b.mask is None
    assert SelectiveCopy(4, n_memorize=3, n_tokens=6).loss_steps.tolist() == [7, 8, 9]


def test_mqar_worked_example():
    b = mqar.from_pairs(torch.tensor([[2, 4]]), torch.tensor([[8, 7]]), torch.tensor([[1, 4]]), 16, 12)
    assert b.inputs[0].argmax(-1).tolist() == [2, 8, 4, 7, 0, 0, 2, 0, 0, 0, 0, 0, 4, 0, 0, 0]
    task = MQAR(16, n_pairs=2, vocab_size=12, random_non_queries=False)
    assert task.loss_steps.tolist() == [4, 6, 8, 10, 12, 14]
    assert b.mask.tolist() == [[False, True, False, False, True, False]]
    assert b.targets[b.mask].tolist() == [8, 7] and b.lags[b.mask].tolist() == [6, 10]
    # the generator: keys and values from their halves, distinct, every key queried once, after the context
    g = MQAR(64, n_pairs=8, vocab_size=64).make_batch(256, gen())
    sym = g.inputs.argmax(-1)
    keys, vals = sym[:, 0:16:2], sym[:, 1:16:2]
    assert keys.min() >= 1 and keys.max() < 32 and vals.min() >= 32
    assert all(len(set(r)) == 8 for r in keys.tolist()) and all(len(set(r)) == 8 for r in vals.tolist())
    assert (g.mask.sum(1) == 8).all()
    steps = MQAR(64, n_pairs=8, vocab_size=64).loss_steps
    queried = torch.stack([sym[i, steps[g.mask[i]]] for i in range(256)])  # (B, 8) keys at the query steps
    assert torch.equal(queried.sort(1).values, keys.sort(1).values)
    answers = torch.stack([g.targets[i, g.mask[i]] for i in range(256)])
    lookup = {(i, k): v for i in range(256) for k, v in zip(keys[i].tolist(), vals[i].tolist())}
    assert all(lookup[(i, k)] == v for i in range(256) for k, v in zip(queried[i].tolist(), answers[i].tolist()))


def test_flip_flop_worked_example():
    W, R, I = flip_flop.W, flip_flop.R, flip_flop.I
    b = flip_flop.from_instructions(torch.tensor([[W, I, R, W, R]]), torch.tensor([[1, 0, 0, 0, 1]]))
    assert ["wri01"[i] for i in b.inputs[0].argmax(-1)] == list("w1i0r1w0r0")
    assert FlipFlop(10).loss_steps.tolist() == [2, 4, 6, 8]
    assert b.mask.tolist() == [[False, True, False, True]]
    assert b.targets[b.mask].tolist() == [1, 0] and b.lags[b.mask].tolist() == [4, 2]


def test_flip_flop_generator_obeys_the_language():
    b = FlipFlop(64, p_ignore=0.5).make_batch(512, gen())
    tok = b.inputs.argmax(-1)  # (B, T)
    instr, bits = tok[:, 0::2], tok[:, 1::2] - flip_flop.BIT0
    assert (instr[:, 0] == flip_flop.W).all() and (instr[:, -1] == flip_flop.R).all()
    for row_i, row_b in zip(instr.tolist(), bits.tolist()):
        last = None
        for op, bit in zip(row_i, row_b):
            if op == flip_flop.W:
                last = bit
            elif op == flip_flop.R:
                assert bit == last
    # the instruction frequencies follow (p_w, p_r, p_i) = (0.25, 0.25, 0.5) in the middle
    freq = torch.bincount(instr[:, 1:-1].flatten(), minlength=3).double() / instr[:, 1:-1].numel()
    assert freq.tolist() == pytest.approx([0.25, 0.25, 0.5], abs=0.01)


def test_parity_worked_example():
    bits = torch.tensor([[1, 0, 1, 1, 0]])
    assert parity.from_bits(bits).targets.tolist() == [[1]]
    assert parity.from_bits(bits, every_step=True).targets.tolist() == [[1, 1, 0, 1, 1]]
    assert Parity(5).loss_steps.tolist() == [4] and Parity(5, every_step=True).loss_steps.tolist() == [0, 1, 2, 3, 4]
    assert Parity(5, every_step=True).answer_steps.tolist() == [4]


def test_lag_copy_worked_example():
    b = lag_copy.from_symbols(torch.tensor([[3, 0, 2, 1, 1, 0]]), delay=2, n_symbols=4)
    assert b.inputs[0].argmax(-1).tolist() == [3, 0, 2, 1, 1, 0] and b.targets.tolist() == [[3, 0, 2, 1]]
    t = LagCopy(6, delay=2, n_symbols=4)
    assert t.loss_steps.tolist() == [2, 3, 4, 5] and t.lag == 2
    assert LagCopy(9).delay == 4  # null -> L // 2


# --- baselines: the formula, the uniform predictor's loss, and the memoryless limit --------------

BASELINE_CASES = [
    (TemporalOrder(40), math.log(4)), (TemporalOrder(40, variant="6b"), math.log(8)),
    (TemporalOrder(40, variable_length=False), math.log(4)),
    (SelectiveCopy(20, n_memorize=4, n_tokens=8), math.log(6)),
    (MQAR(32, n_pairs=4, vocab_size=16), math.log(8)), (FlipFlop(32, p_ignore=0.6), math.log(2)),
    (Parity(12), math.log(2)), (Parity(12, every_step=True), 11 / 12 * math.log(2)),
    (LagCopy(12, delay=5, n_symbols=5), math.log(5)),
]


def _conditional_entropy(task, b):
    """H(target | loss step, current input symbol) over the answers: the best memoryless loss."""
    sym = torch.where(b.inputs.sum(-1) > 0, b.inputs.argmax(-1), -1)[:, task.loss_steps]  # (B, L)
    mask = torch.ones_like(b.targets, dtype=torch.bool) if b.mask is None else b.mask
    col = torch.arange(b.targets.shape[1]).expand_as(b.targets)
    joint = Counter(zip(col[mask].tolist(), sym[mask].tolist(), b.targets[mask].tolist()))
    context = Counter(zip(col[mask].tolist(), sym[mask].tolist()))
    n = int(mask.sum())
    return -sum(c / n * math.log(c / context[k[:2]]) for k, c in joint.items())


def _memoryless_logits(task, b):
    """Uniform over the classes the answers take (parity every-step: step 0 is its own bit)."""
    classes = b.targets[b.mask] if b.mask is not None else b.targets.flatten()
    logits = torch.full((b.inputs.shape[0], task.total_len, task.output_size), -1e9)
    logits[..., classes.unique()] = 0.0
    if isinstance(task, Parity) and task.every_step:
        logits[:, 0] = torch.where(b.inputs[:, 0] > 0, 0.0, -1e9)
    return logits


@pytest.mark.parametrize("task, formula", BASELINE_CASES, ids=lambda x: getattr(x, "name", ""))
def test_baseline_equals_formula_on_a_large_sample(task, formula):
    b = task.make_batch(20_000, gen(7))
    assert task.baseline == pytest.approx(formula)
    assert float(task.loss(_memoryless_logits(task, b), b)) == pytest.approx(formula, rel=1e-6)
    assert _conditional_entropy(task, b) == pytest.approx(formula, abs=0.01)  # no memoryless model does better


# --- the per-example loss mask --------------------------------------------------------------------

def test_masked_loss_is_the_ignore_index_mean_and_eval_weights_by_answers(monkeypatch):
    task = FlipFlop(24)
    b = task.make_batch(50, gen(1))
    torch.manual_seed(0)
    logits = torch.randn(50, 24, 2)
    labels = b.targets.masked_fill(~b.mask, -100)
    ref = F.cross_entropy(logits[:, task.loss_steps].transpose(1, 2), labels, ignore_index=-100)
    assert float(task.loss(logits, b)) == pytest.approx(float(ref), rel=1e-6)
    acc = (logits[:, task.loss_steps].argmax(-1) == b.targets)[b.mask].float().mean()
    assert task.accuracy(logits, b) == pytest.approx(float(acc))
    # evaluation in chunks of 7 examples equals the loss over the whole batch (weighted by answers)
    import seqlab.train as T
    model = _model(task)
    monkeypatch.setattr(T, "EVAL_CHUNK", 7)
    loss, accuracy = evaluate(model, task, b)
    with torch.no_grad():
        out = model(b.inputs)
    assert loss == pytest.approx(float(task.loss(out, b)), rel=1e-6)
    assert accuracy == pytest.approx(task.accuracy(out, b), rel=1e-6)
    assert b[3:5].mask.shape == (2, 11) and b[3:5].weight == int(b.mask[3:5].sum())


def _model(task, hidden=6, dtype=torch.float32):
    torch.manual_seed(0)
    m = SequenceModel(lambda input_size, hidden_size: RNNLayer(input_size, hidden_size), task.input_size,
                      task.output_size, hidden_size=hidden)
    return m.to(dtype)


@pytest.mark.parametrize("task", [FlipFlop(20, p_ignore=0.5), MQAR(24, n_pairs=3, vocab_size=12),
                                  TemporalOrder(20)], ids=lambda t: t.name)
def test_probe_measures_from_each_examples_own_answers(task):
    """The masked probe's g(k) is the mean over (example, probed answer) of ||dL_(b,tau_b)/dh_(tau_b - k)||,
    each computed here on its own with autograd."""
    model = _model(task, dtype=torch.float64)
    b = task.make_batch(5, gen(3))
    b = type(b)(b.inputs.double(), b.targets, b.mask, b.lags)
    curves = gradient_curves(model, task, b, max_loss_steps=2)
    cols, valid = per_example_answers(task, b, 2)
    samples = {}  # lag -> norms
    for j in range(cols.shape[0]):
        for i in range(5):
            if not valid[j, i]:
                continue
            one = b[i:i + 1]
            taps = [{k: t.double().requires_grad_() for k, t in layer.items()} for layer in model.make_taps(1, task.total_len)]
            out = model(one.inputs, taps=taps)
            loss = task.loss_elements(out, one)[0, cols[j, i]]
            (g,) = torch.autograd.grad(loss, [taps[0]["h"]])
            tau = int(task.loss_steps[cols[j, i]])
            assert one.mask[0, cols[j, i]]  # a real answer of this example
            for k in range(tau + 1):
                samples.setdefault(k, []).append(float(g[0, tau - k].norm()))
    assert len(curves.lags) == max(samples) + 1
    np.testing.assert_allclose(curves.mean["h_l0"], [np.mean(samples[k]) for k in sorted(samples)], rtol=1e-10)


def test_lag_distribution_reads_the_batch():
    b = FlipFlop(10).make_batch(1, gen())
    b = flip_flop.from_instructions(torch.tensor([[0, 2, 1, 0, 1]]), torch.tensor([[1, 0, 0, 0, 1]]))
    d = lag_distribution(FlipFlop(10), b)
    assert d["min"] == 2 and d["max"] == 4 and d["answers"] == 2 and d["q50"] == 3.0
    adding = lag_distribution(__import__("seqlab.tasks", fromlist=["Adding"]).Adding(10),
                              __import__("seqlab.tasks.adding", fromlist=["x"]).from_markers(
                                  torch.rand(2, 10), torch.tensor([0, 3]), torch.tensor([6, 7])))
    assert adding["min"] == 6 and adding["max"] == 9  # T - 1 - first marker


# --- generators: reproducible from their generator, no global random state ---------------------

ALL = [TemporalOrder(20), TemporalOrder(20, variant="6b", variable_length=False), SelectiveCopy(10, n_memorize=3),
       MQAR(16, n_pairs=2, vocab_size=16), FlipFlop(16), Parity(10), Parity(10, every_step=True), LagCopy(10)]


@pytest.mark.parametrize("task", ALL, ids=lambda t: t.name)
def test_generator_only_randomness(task):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = task.make_batch(16, gen(5))
    assert torch.equal(state, torch.get_rng_state())  # the global stream is untouched
    torch.manual_seed(99)
    c = task.make_batch(16, gen(5))
    for x, y in zip(a._fields(), c._fields()):
        assert (x is None and y is None) or torch.equal(x, y)
    assert not torch.equal(a.inputs, task.make_batch(16, gen(6)).inputs)


# --- every task x every model: trains, is probed, writes its summary ----------------------------

TASK_ARGS = {"temporal_order": ["seq_len=10"], "selective_copy": ["seq_len=6", "task.n_memorize=2", "task.n_tokens=5"],
             "mqar": ["seq_len=12", "task.n_pairs=2", "task.vocab_size=12"], "flip_flop": ["seq_len=12"],
             "parity": ["seq_len=8", "task.every_step=true"], "lag_copy": ["seq_len=8"]}
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("task", sorted(TASK_ARGS))
def test_every_task_trains_and_is_probed_with_every_model(tmp_path, task, model):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "logger=none", "progress=false", f"task={task}", f"model={model}", *TASK_ARGS[task], "steps=2",
            "eval_every=2", "eval_size=8", "batch_size=4", "model.hidden_size=4", "probe.every=2",
            "probe.batch_size=4", "probe.lyapunov_k=1", "probe.lyapunov_warmup=1", "probe.lyapunov_steps=0",
            "probe.plots=false"])
    s = train(cfg, RunInfo(run_dir=tmp_path, name="r", choices={"task": task, "model": model}))
    assert s["status"] == "finished" and math.isfinite(s["final_loss"]) and s["task"] == task
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["lag_distribution"]["answers"] > 0 and written["lag"] >= 1
    with np.load(tmp_path / "probe.npz") as p:
        key = str(p["curves"][0])  # h_l0 (y_l0 for coRNN, ...)
        assert list(p["steps"]) == [0, 2] and np.isfinite(p[f"mean_{key}"]).all() and p[f"mean_{key}"].shape[1] >= 2
    assert key in s["probe"]


# --- bad settings: the lab's one-line error --------------------------------------------------------

@pytest.mark.parametrize("make, key", [
    (lambda: MQAR(16, n_pairs=5), "task.n_pairs"), (lambda: MQAR(15, n_pairs=2), "seq_len"),
    (lambda: MQAR(64, n_pairs=8, vocab_size=16), "task.n_pairs"), (lambda: MQAR(16, n_pairs=2, power_a=0), "task.power_a"),
    (lambda: LagCopy(10, delay=10), "task.delay"), (lambda: LagCopy(10, delay=0), "task.delay"),
    (lambda: TemporalOrder(9), "seq_len"), (lambda: TemporalOrder(50, variant="6c"), "task.variant"),
    (lambda: FlipFlop(15), "seq_len"), (lambda: FlipFlop(16, p_ignore=1.0), "task.p_ignore"),
    (lambda: SelectiveCopy(10, n_tokens=3), "task.n_tokens"), (lambda: SelectiveCopy(10, n_memorize=0), "task.n_memorize"),
    (lambda: Parity(10, every_step="yes"), "task.every_step"),
])
def test_bad_combinations_name_the_key(make, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as e:
        make()
    assert "\n" not in str(e.value)


def test_bad_combination_on_the_command_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "seqlab", "task=mqar", "seq_len=16", "task.n_pairs=5", "logger=none"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("seqlab: error: task.n_pairs=5: must be <= seq_len/4 = 4")
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("summary.json"))


# --- the report: one cell across tasks on one page ---------------------------------------------

def test_report_compares_a_cell_across_tasks(tmp_path):
    from seqlab.report import load_runs, write_report

    for task, model in [("parity", "rnn"), ("flip_flop", "rnn"), ("parity", "lstm"), ("flip_flop", "lstm")]:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[
                "logger=none", "progress=false", f"task={task}", f"model={model}", "seq_len=8", "steps=2",
                "eval_every=2", "eval_size=8", "batch_size=4", "model.hidden_size=4", "probe.every=2",
                "probe.batch_size=4", "probe.lyapunov_k=0", "probe.plots=false"])
        run_dir = tmp_path / "sweep" / f"{task}-{model}"
        train(cfg, RunInfo(run_dir=run_dir, name="r", choices={"task": task, "model": model}))
        (run_dir / ".hydra").mkdir()
        # one sweep set its own budget: an override that is one value per task is the task's column, not a cell
        budget = "- steps=2\n" if task == "flip_flop" else ""
        (run_dir / ".hydra" / "overrides.yaml").write_text(f"- task={task}\n- model={model}\n{budget}")
    written = write_report(load_runs([tmp_path / "sweep"]), tmp_path / "out")
    page = written["across_tasks_md"].read_text()
    assert "| cell | flip_flop T=8 steps=2 | parity T=8 |" in page
    lines = {line.split(" |")[0]: line for line in page.splitlines() if line.startswith("| ")}
    assert {"| lstm", "| rnn", "| memoryless baseline", "| answer lag: median [25%, 75%]"} <= set(lines)
    assert "| answer lag: median [25%, 75%] | " in page and " 7 [7, 7] |" in lines["| answer lag: median [25%, 75%]"]
    assert written["across_tasks_png"].exists() and "across_tasks.md" in written["markdown"].read_text()
    one_task = write_report(load_runs([tmp_path / "sweep" / "parity-rnn", tmp_path / "sweep" / "parity-lstm"]),
                            tmp_path / "one")
    assert "across_tasks_md" not in one_task
