"""Tasks: the definitions of LITERATURE.md, their worked examples, and baselines equal to their formulas."""
import math

import pytest
import torch

from seqlab.checks import ConfigError
from seqlab.tasks import Adding, Copy, DelayedRecall, adding, copy, delayed_recall


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- worked examples from the module docstrings ------------------------------------------

def test_adding_worked_example():
    values = torch.tensor([[0.10, 0.50, 0.20, 0.30, 0.25, 0.90]])
    b = adding.from_markers(values, torch.tensor([1]), torch.tensor([4]))
    assert b.inputs[0, :, 1].tolist() == [0, 1, 0, 0, 1, 0]
    assert torch.equal(b.inputs[0, :, 0], values[0])
    assert b.targets.tolist() == [[pytest.approx(0.75)]]
    assert Adding(6).loss_steps.tolist() == [5]


def test_copy_worked_example():
    data = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 0, 1, 2]])
    b = copy.from_data(data, seq_len=3)
    sym = b.inputs[0].argmax(-1).tolist()
    assert sym == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 8, 8, 9] + [8] * 10
    assert b.targets[0].tolist() == [8] * 13 + [1, 2, 3, 4, 5, 6, 7, 0, 1, 2]
    t = Copy(3)
    assert t.total_len == 23 and t.answer_steps.tolist() == list(range(13, 23)) and t.lag == 13


def test_delayed_recall_worked_example():
    b = delayed_recall.from_symbols(torch.tensor([2]), torch.tensor([[3, 0, 1]]), n_symbols=4)
    assert b.inputs[0].argmax(-1).tolist() == [2, 3, 0, 1, 5]
    assert b.inputs.shape == (1, 5, 6) and b.targets.tolist() == [[2]]
    assert DelayedRecall(5, n_symbols=4).lag == 4


# --- structure of generated batches -------------------------------------------------------

def test_adding_markers_one_in_each_half():
    T = 50
    b = Adding(T).make_batch(4096, gen())
    m = b.inputs[..., 1]
    assert torch.equal(m[:, : T // 2].sum(1), torch.ones(4096))
    assert torch.equal(m[:, T // 2 :].sum(1), torch.ones(4096))
    assert torch.allclose((b.inputs[..., 0] * m).sum(1), b.targets[:, 0])
    v = b.inputs[..., 0]
    assert v.min() >= 0 and v.max() <= 1
    # both halves get used over their whole range
    first = m[:, : T // 2].argmax(1)
    assert first.min() == 0 and first.max() == T // 2 - 1


def test_copy_layout():
    T = 30
    b = Copy(T).make_batch(512, gen())
    sym = b.inputs.argmax(-1)
    assert b.inputs.shape == (512, T + 20, 10)
    assert (sym[:, :10] < 8).all() and (sym[:, 10 : T + 9] == 8).all() and (sym[:, T + 9] == 9).all()
    assert (sym[:, T + 10 :] == 8).all()
    assert torch.equal(b.targets[:, T + 10 :], sym[:, :10]) and (b.targets[:, : T + 10] == 8).all()


def test_delayed_recall_distractor_options():
    b = DelayedRecall(20, distractors="blank").make_batch(64, gen())
    sym = b.inputs.argmax(-1)
    assert (sym[:, 1:-1] == 8).all() and (sym[:, -1] == 9).all()
    assert torch.equal(sym[:, 0], b.targets[:, 0])
    r = DelayedRecall(20).make_batch(4096, gen()).inputs.argmax(-1)
    assert (r[:, 1:-1] < 8).all() and len(r[:, 1:-1].unique()) == 8


# --- baselines equal their formulas ---------------------------------------------------------

def test_adding_baseline_is_one_sixth():
    t = Adding(100)
    b = t.make_batch(200_000, gen(1))
    outputs = torch.ones(b.inputs.shape[0], t.total_len, 1)  # always predict 1.0
    assert t.baseline == pytest.approx(1 / 6)
    assert float(t.loss(outputs, b)) == pytest.approx(1 / 6, abs=0.002)


@pytest.mark.parametrize("T", [10, 100, 500])
def test_copy_memoryless_baseline(T):
    t = Copy(T)
    b = t.make_batch(20_000, gen(2))
    logits = torch.full((1, t.total_len, 10), -1e9)
    logits[0, : T + 10, 8] = 0.0  # blanks for sure
    logits[0, T + 10 :, :8] = 0.0  # uniform over the 8 data symbols
    outputs = logits.expand(b.inputs.shape[0], -1, -1)
    assert t.baseline == pytest.approx(10 * math.log(8) / (T + 20))
    assert float(t.loss(outputs, b)) == pytest.approx(t.baseline, rel=1e-5)
    # and the data symbols are uniform, so no memoryless predictor does better
    freq = torch.bincount(b.targets[:, T + 10 :].flatten(), minlength=8).float()
    assert (freq / freq.sum()).sub(1 / 8).abs().max() < 0.005


@pytest.mark.parametrize("K", [2, 8, 16])
def test_delayed_recall_chance_baseline(K):
    t = DelayedRecall(10, n_symbols=K)
    b = t.make_batch(100_000, gen(3))
    outputs = torch.zeros(b.inputs.shape[0], 10, K)  # uniform prediction
    assert t.baseline == pytest.approx(math.log(K))
    assert float(t.loss(outputs, b)) == pytest.approx(math.log(K), rel=1e-6)
    p = torch.bincount(b.targets[:, 0], minlength=K).float() / b.targets.shape[0]
    entropy = float(-(p * p.log()).sum())  # the best constant predictor's loss
    assert entropy == pytest.approx(math.log(K), abs=0.002)


def test_accuracy_and_solved():
    t = Adding(10)
    b = t.make_batch(100, gen())
    perfect = torch.zeros(100, 10, 1)
    perfect[:, -1, 0] = b.targets[:, 0]
    assert t.accuracy(perfect, b) == 1.0 and float(t.loss(perfect, b)) == 0.0
    assert t.solved(0.009, 0.0) and not t.solved(0.011, 1.0)
    c = Copy(5)
    assert c.solved(1.0, 0.995) and not c.solved(0.0, 0.98)


# --- generators, not global state ---------------------------------------------------------

@pytest.mark.parametrize("task", [Adding(30), Copy(30), DelayedRecall(30)])
def test_same_generator_seed_same_batch(task):
    torch.manual_seed(0)
    a = task.make_batch(8, gen(5))
    torch.manual_seed(99)  # global state must not matter
    b = task.make_batch(8, gen(5))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    c = task.make_batch(8, gen(6))
    assert not torch.equal(a.inputs, c.inputs)


@pytest.mark.parametrize("make, key", [
    (lambda: Adding(1), "seq_len"), (lambda: Adding(2.5), "seq_len"), (lambda: Copy(True), "seq_len"),
    (lambda: DelayedRecall(10, n_symbols=1), "task.n_symbols"),
    (lambda: DelayedRecall(10, distractors="noise"), "task.distractors"),
])
def test_bad_parameters_name_the_key(make, key):
    with pytest.raises(ConfigError, match=rf"^{key}="):
        make()
