"""Tasks without time (T = 1): random labels, and the 8x8 digits in their flat and sequential layouts.

Worked examples, baselines equal to their formulas, fixed data sets and splits, batches
drawn only from the training set, evaluation on the held-out set, and no global RNG touched.
"""
import math

import pytest
import torch

from seqlab.checks import ConfigError
from seqlab.tasks import RandomLabels


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_labels_worked_example():
    task = RandomLabels(n_examples=3, input_dim=2, n_classes=4, data_seed=0)
    ev = task.eval_batch(1000, gen())
    torch.testing.assert_close(ev.inputs, torch.tensor([[[1.5410, -0.2934]], [[-2.1788, 0.5684]],
                                                        [[-1.0845, -1.3986]]]), atol=1e-4, rtol=0)
    assert ev.targets.tolist() == [[0], [3], [2]]
    assert (task.total_len, task.lag, task.loss_steps.tolist()) == (1, 0, [0])


@pytest.mark.parametrize("C", [2, 10, 37])
def test_random_labels_baseline_is_ln_C_and_uniform_guessing_scores_it(C):
    task = RandomLabels(n_examples=50, input_dim=3, n_classes=C)
    assert task.baseline == pytest.approx(math.log(C))
    ev = task.eval_batch(0, gen())
    uniform = torch.zeros(50, 1, C)  # equal logits
    assert task.loss(uniform, ev).item() == pytest.approx(math.log(C), rel=1e-6)


def test_random_labels_batches_come_from_the_fixed_set_and_eval_is_all_of_it():
    task = RandomLabels(n_examples=20, input_dim=4, n_classes=5, data_seed=7)
    ev = task.eval_batch(1000, gen(1234))
    assert ev.inputs.shape == (20, 1, 4) and ev.targets.shape == (20, 1)
    rows = {tuple(x.tolist()): int(y) for x, y in zip(ev.inputs[:, 0], ev.targets[:, 0])}
    b = task.make_batch(64, gen(3))
    assert b.inputs.shape == (64, 1, 4)
    for x, y in zip(b.inputs[:, 0], b.targets[:, 0]):
        assert rows[tuple(x.tolist())] == int(y)  # every example is one of the N, with its own label
    # labels fixed per data_seed, another seed another set; same generator seed, same batch
    assert torch.equal(RandomLabels(20, 4, 5, data_seed=7).eval_batch(1, gen()).targets, ev.targets)
    assert not torch.equal(RandomLabels(20, 4, 5, data_seed=8).eval_batch(1, gen()).inputs, ev.inputs)
    assert torch.equal(task.make_batch(64, gen(3)).inputs, b.inputs)


def test_task_generators_touch_no_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    task = RandomLabels(n_examples=30, input_dim=4, n_classes=3)
    task.make_batch(8, gen())
    task.eval_batch(8, gen())
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("kwargs, key", [
    ({"n_examples": 0}, "task.n_examples"), ({"input_dim": 0}, "task.input_dim"),
    ({"n_classes": 1}, "task.n_classes"), ({"data_seed": -1}, "task.data_seed"),
    ({"n_classes": 2.5}, "task.n_classes"),
])
def test_random_labels_bad_parameters_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as err:
        RandomLabels(**kwargs)
    assert "\n" not in str(err.value)


# --- digits ----------------------------------------------------------------------------

from seqlab.tasks import Digits  # noqa: E402
from seqlab.tasks.digits import load  # noqa: E402


def test_digits_ship_with_scikit_learn_1797_images_10_classes():
    X, y = load()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.min() == 0 and X.max() == 1 and set(y.tolist()) == set(range(10))


def test_digits_worked_example_both_layouts():
    row0 = [0, 0, 0.3125, 0.8125, 0.5625, 0.0625, 0, 0]
    seq = Digits(layout="sequential")
    b = seq.examples(torch.tensor([0]))
    assert b.inputs.shape == (1, 64, 1) and b.targets.tolist() == [[0]]
    assert b.inputs[0, :8, 0].tolist() == row0
    assert (seq.total_len, seq.lag, seq.loss_steps.tolist(), seq.input_size) == (64, 63, [63], 1)
    flat = Digits(layout="flat")
    b = flat.examples(torch.tensor([0]))
    assert b.inputs.shape == (1, 1, 64) and b.inputs[0, 0, :8].tolist() == row0
    assert (flat.total_len, flat.lag, flat.loss_steps.tolist(), flat.input_size) == (1, 0, [0], 64)


def test_digits_split_is_fixed_disjoint_stratified_and_eval_uses_it():
    task = Digits()
    train, held = task.splits
    assert len(train) + len(held) == 1797 and len(held) == 359
    assert not set(train.tolist()) & set(held.tolist())
    assert torch.equal(Digits().splits[1], held)  # fixed by split_seed, whatever the object
    assert not torch.equal(Digits(split_seed=1).splits[1], held)
    counts = torch.bincount(load()[1][held], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (174-183 images)
    ev = task.eval_batch(1000, gen(1234))  # train.py's call: the held-out split, not a fresh batch
    assert ev.inputs.shape == (359, 1, 64)
    X, y = load()
    assert torch.equal(ev.inputs[:, 0], X[held]) and torch.equal(ev.targets[:, 0], y[held])
    # training batches only ever hold training images
    train_rows = {tuple(r.tolist()) for r in X[train]}
    b = task.make_batch(200, gen(5))
    held_only = {tuple(r.tolist()) for r in X[held]} - train_rows  # (a few images are duplicates)
    assert not {tuple(r.tolist()) for r in b.inputs[:, 0]} & held_only


def test_permuted_digits_is_one_fixed_permutation_of_the_sequential_pixels():
    seq, perm = Digits(layout="sequential"), Digits(layout="sequential", permute=True)
    order = perm.pixel_order
    assert sorted(order.tolist()) == list(range(64)) and not torch.equal(order, torch.arange(64))
    assert torch.equal(Digits(layout="sequential", permute=True).pixel_order, order)
    assert not torch.equal(Digits(layout="sequential", permute=True, permute_seed=1).pixel_order, order)
    torch.testing.assert_close(perm.eval_set.inputs, seq.eval_set.inputs[:, order], rtol=0, atol=0)
    assert torch.equal(perm.eval_set.targets, seq.eval_set.targets)


@pytest.mark.parametrize("layout", ["flat", "sequential"])
def test_digits_baseline_is_ln_10(layout):
    task = Digits(layout=layout)
    assert task.baseline == pytest.approx(math.log(10))
    ev = task.eval_batch(0, gen())
    uniform = torch.zeros(ev.inputs.shape[0], task.total_len, 10)
    assert task.loss(uniform, ev).item() == pytest.approx(math.log(10), rel=1e-6)


def test_digits_generators_touch_no_global_rng():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    task = Digits(layout="sequential", permute=True)
    task.make_batch(8, gen())
    task.eval_batch(8, gen())
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("kwargs, key", [
    ({"layout": "grid"}, "task.layout"), ({"permute": "yes"}, "task.permute"),
    ({"permute_seed": -1}, "task.permute_seed"), ({"split_seed": 1.5}, "task.split_seed"),
    ({"eval_fraction": 1.0}, "task.eval_fraction"), ({"eval_fraction": 0}, "task.eval_fraction"),
])
def test_digits_bad_parameters_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=rf"^{key}=") as err:
        Digits(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("task, model, name, length", [
    ("random_labels", "mlp", "random_labels-mlp", 1), ("digits_sequential", "lstm", "digits_sequential-lstm", 64),
    ("adding", "rnn", "adding-rnn-T7", 7)])
def test_run_name_and_summary_give_the_length_the_task_reads(tmp_path, task, model, name, length):
    """Tasks with their own length (no seq_len) are not named or reported with the unused seq_len."""
    from hydra import compose, initialize_config_dir

    from seqlab.__main__ import _run_name
    from seqlab.config import CONF_DIR
    from seqlab.report.runs import load_runs
    from seqlab.train import RunInfo, train

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"task={task}", f"model={model}", "seq_len=7", "steps=1", "eval_every=1", "batch_size=4", "eval_size=8",
            "model.hidden_size=4", "probe=none", "logger=none", "progress=false"])
    assert _run_name(cfg, {"task": task, "model": model}, "seed=3") == f"{name} seed=3"
    summary = train(cfg, RunInfo(run_dir=tmp_path / "r", name=name))
    assert summary["seq_len"] == length
    assert load_runs([tmp_path / "r"])[0].seq_len == length
