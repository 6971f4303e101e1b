"""What the per-layer learning-speed statistics (seqlab.probe.layer_stats) add to a training step.

    python benchmarks/layer_stats_cost.py               # docs/probe.md's numbers (about a minute on 2 cores)
    python benchmarks/layer_stats_cost.py --repeats 50

A training step as train.py takes it (forward, loss, backward, measure, clip, Adam step),
timed with ``LayerStats`` due at that step (per-group gradient norms, a copy of every
parameter, the update norms after the step) and not due (the call returns at once), in
turn (A B A B ...) so that a machine shared with other jobs slows both alike; medians of
--repeats, one thread, flush_denormal on. train.py measures on logged steps only (every
``log_every`` = 50 by default), so the cost per step is the due-step overhead / log_every.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from seqlab.models import FeedforwardLayer, RNNLayer, SequenceModel
from seqlab.probe.layer_stats import LayerStats
from seqlab.tasks import Adding
from seqlab.tasks.random_labels import RandomLabels

CASES = {  # name -> (layer, task, num_layers, batch)
    "rnn x 1, adding T=200": (RNNLayer, Adding(seq_len=200), 1, 64),
    "rnn x 8, adding T=200": (RNNLayer, Adding(seq_len=200), 8, 64),
    "mlp x 16, random labels": (FeedforwardLayer, RandomLabels(n_examples=512, input_dim=100, n_classes=10), 16, 32),
    "mlp x 100, random labels": (FeedforwardLayer, RandomLabels(n_examples=512, input_dim=100, n_classes=10), 100, 32),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, 1 thread, median of {args.repeats} (A B interleaved); machine shared")
    print(f"{'case':28s} {'step (ms)':>10s} {'due step (ms)':>14s} {'ratio':>7s} {'per step at log_every=50':>26s}")
    for name, (layer, task, layers, batch_size) in CASES.items():
        torch.manual_seed(0)
        model = SequenceModel(layer, task.input_size, task.output_size, hidden_size=128, num_layers=layers)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        flag = {"due": False}
        stats = LayerStats(model, optimizer, due=lambda step: flag["due"])
        batch = task.make_batch(batch_size, torch.Generator().manual_seed(0))

        def step(due: bool) -> None:
            flag["due"] = due
            out = model(batch.inputs, steps=task.loss_steps)
            loss = task.loss(out, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats.measure(0)
            torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
            optimizer.step()

        step(False), step(True)  # warm-up
        plain, due = [], []
        for _ in range(args.repeats):
            for flag_value, times in ((False, plain), (True, due)):
                t0 = time.perf_counter()
                step(flag_value)
                times.append(time.perf_counter() - t0)
        a, b = statistics.median(plain), statistics.median(due)
        print(f"{name:28s} {1e3 * a:10.2f} {1e3 * b:14.2f} {b / a:7.3f} {1 + (b / a - 1) / 50:26.4f}")


if __name__ == "__main__":
    main()
