"""The classic demonstration (python -m seqlab.demo): its numbers, checked independently."""
import pytest
import torch
from torch import nn

from seqlab.demo import DEFAULT_SEED, layer_gradient_norms, main


def reference_first_layer_norm(activation, seed):
    """The demonstration written out in plain PyTorch, the same draws as the lab's seeding."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 100, generator=gen)
    y = torch.randint(0, 10, (32,), generator=gen)
    torch.manual_seed(seed)
    f = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}[activation]
    net = nn.Sequential(nn.Linear(100, 128), f(), nn.Linear(128, 128), f(), nn.Linear(128, 128), f(),
                        nn.Linear(128, 10))
    nn.functional.cross_entropy(net(x), y).backward()
    return net[0].weight.grad.norm().item()


def test_fixed_seed_numbers_are_inside_the_quoted_ranges_and_match_plain_pytorch():
    sigmoid = layer_gradient_norms("sigmoid", DEFAULT_SEED)
    relu = layer_gradient_norms("relu", DEFAULT_SEED)
    assert 0.0042 <= sigmoid[0] <= 0.0049
    assert 0.106 <= relu[0] <= 0.130
    assert 24 <= relu[0] / sigmoid[0] <= 28
    assert sigmoid[0] == pytest.approx(reference_first_layer_norm("sigmoid", DEFAULT_SEED), rel=1e-6)
    assert relu[0] == pytest.approx(reference_first_layer_norm("relu", DEFAULT_SEED), rel=1e-6)
    # the textbook shape: with sigmoid the gradient shrinks layer by layer towards the input
    assert all(a < b for a, b in zip(sigmoid, sigmoid[1:]))
    assert len(sigmoid) == len(relu) == 4


def test_command_prints_both_numbers_and_the_ratio(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    first = next(line for line in out.splitlines() if line.startswith("first layer"))
    s, r = layer_gradient_norms("sigmoid")[0], layer_gradient_norms("relu")[0]
    assert f"sigmoid {s:.6f}" in first and f"relu {r:.6f}" in first and f"{r / s:.1f}" in first


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed=-1: must be an integer in [0, 2^32 - 1] (the range of the lab's seed)"),
    (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["--seeds", "0"], "--seeds=0: must be an integer >= 1"),
])
def test_bad_argument_is_one_line_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr()
    assert exit_.value.code == 2 and out.out == ""
    assert out.err == f"seqlab: error: {message}\n"
