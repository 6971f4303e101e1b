"""The classic vanishing-gradient demonstration, on the lab's own model and task:

    python -m seqlab.demo                 # seed 1: sigmoid, ReLU, the ratio, and per-layer norms
    python -m seqlab.demo --seeds 20      # the spread over seeds 0..19

A feedforward net 100 -> 128 -> 128 -> 128 -> 10 (three hidden Linear + activation
layers and a linear readout, PyTorch's default init: ``model=mlp`` with
``num_layers=3 hidden_size=128``), one batch of 32 inputs x ~ N(0, 1) with random
labels in 0..9 (``task=random_labels`` with ``n_examples=32``: the batch is the task's
whole fixed set), cross-entropy, one backward pass, and the Frobenius norm of the
*first* Linear layer's weight gradient ||dL/dW_1||_F, for sigmoid and for ReLU.

Seeding follows the training loop's: the data from the task's own generator
(``data_seed`` = seed), each net from ``torch.manual_seed(seed)`` just before it is
built, so the two nets have the same draws (and, since the layers are built in
nn.Sequential's order, the same weights as ``nn.Sequential(Linear, f, ..., Linear)``
after the same seed). The often-quoted output of this demonstration (sigmoid
0.004324, ReLU 0.118170) was not reproduced digit for digit by any seed and ordering
tried (300 seeds x 10 orderings of data and net draws); its size is: over 20 seeds
the ratio is ~23-29 (``--seeds 20``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial

import torch

from .checks import SEED_MAX
from .models import FeedforwardLayer, SequenceModel
from .tasks import RandomLabels

DEFAULT_SEED = 1
ACTIVATIONS = ("sigmoid", "relu")


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as every seqlab entry point
        print(f"seqlab: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def layer_gradient_norms(activation: str, seed: int = DEFAULT_SEED, depth: int = 3, width: int = 128,
                         batch: int = 32, input_dim: int = 100, classes: int = 10) -> list[float]:
    """||dL/dW_l||_F of every Linear layer, first hidden layer first, readout last (depth + 1 values)."""
    task = RandomLabels(n_examples=batch, input_dim=input_dim, n_classes=classes, data_seed=seed)
    data = task.eval_batch(batch, torch.Generator())  # the whole fixed set: (32, 1, 100), (32, 1)
    torch.manual_seed(seed)  # model initialization, as the training loop does it
    model = SequenceModel(partial(FeedforwardLayer, activation=activation), input_size=input_dim,
                          output_size=classes, hidden_size=width, num_layers=depth)
    task.loss(model(data.inputs), data).backward()
    weights = [layer.linear.weight for layer in model.layers] + [model.readout.weight]
    return [float(w.grad.norm()) for w in weights]


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(prog="python -m seqlab.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the data and of both nets")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="instead: the first layer's norms over seeds 0..N-1 (min, median, max)")
    args = parser.parse_args(argv)
    if not 0 <= args.seed <= SEED_MAX:  # beyond 64 bits torch.manual_seed raises (a traceback)
        parser.error(f"--seed={args.seed}: must be an integer in [0, 2^32 - 1] (the range of the lab's seed)")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds={args.seeds}: must be an integer >= 1")
    torch.set_num_threads(1)
    if args.seeds:
        rows = [[layer_gradient_norms(a, s)[0] for a in ACTIVATIONS] for s in range(args.seeds)]
        ratios = [r / s for s, r in rows]
        print(f"||dL/dW_1||_F over seeds 0..{args.seeds - 1}:   min      median   max")
        for name, values, fmt in (("sigmoid", [r[0] for r in rows], "9.6f"), ("relu", [r[1] for r in rows], "9.6f"),
                                  ("ratio relu/sigmoid", ratios, "9.1f")):
            print(f"  {name:<20s} " + " ".join(format(v, fmt) for v in (min(values), statistics.median(values),
                                                                        max(values))))
        return 0
    norms = {a: layer_gradient_norms(a, args.seed) for a in ACTIVATIONS}
    print(f"100 -> 128 -> 128 -> 128 -> 10, x ~ N(0, 1) (32, 100), random labels, cross-entropy, seed {args.seed}")
    print(f"first layer ||dL/dW_1||_F:  sigmoid {norms['sigmoid'][0]:.6f}   relu {norms['relu'][0]:.6f}   "
          f"ratio relu/sigmoid {norms['relu'][0] / norms['sigmoid'][0]:.1f}")
    print("every layer's ||dL/dW||_F:   W_1       W_2       W_3       readout")
    for a in ACTIVATIONS:
        print(f"  {a:<25s} " + "  ".join(f"{v:.6f}" for v in norms[a]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
