"""What one probe costs next to one training step, and what the Lyapunov spectrum costs.

    python benchmarks/probe_cost.py                # docs/benchmarks.md's table (a few minutes on 2 cores)
    python benchmarks/probe_cost.py --repeats 3 --models rnn

Rows (median over --repeats, after one warm-up call each, flush_denormal on as in train.py):
  train step      fused forward + backward + Adam step, as train.py does it, at batch B
  gradient probe  gradient_curves: the tapped step path + one backward per loss step, at batch B
  probe           seqlab.probe.probe without the spectrum (gradient probe + fits): every probe
  full probe      seqlab.probe.probe with conf/probe/default.yaml's settings: + top-16 Lyapunov
                  exponents of each layer over lyapunov_warmup + lyapunov_steps (500 + 3000) steps
                  of the task's inputs (the first and the last probe of a run)
  run share       what the probe adds to a default run (conf/config.yaml: steps, eval_every,
                  eval_size; probe.every): (P - 2) probes + 2 full probes, over steps x train step
                  + evaluations + the probes, with P = steps / every + 1 probes
  lyapunov T=1000 lyapunov_spectrum: 16 exponents, H=128, one sequence of 1000 steps
For copy (several loss steps) it also times gradient_curves' one backward per loss step
against batched VJPs (is_grads_batched, all loss steps in one vmapped backward).
"""
from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from seqlab.models import GRULayer, LSTMLayer, RNNLayer, SequenceModel
from seqlab.probe import ProbeSettings, gradient_curves, lyapunov_spectrum, probe, probe_loss_steps
from seqlab.tasks import Adding, Copy
from seqlab.train import evaluate

LAYERS = {"rnn": RNNLayer, "lstm": LSTMLayer, "gru": GRULayer}


def median_times(fns: list, repeats: int) -> list[float]:
    """Median seconds of each function, timed in turn (A B C A B C ...) so that a machine shared
    with other jobs slows them alike; one warm-up call each first."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def build(name: str, task, hidden: int) -> SequenceModel:
    torch.manual_seed(0)
    return SequenceModel(LAYERS[name], task.input_size, task.output_size, hidden_size=hidden)


def train_step_fn(model, task, batch):
    opt = torch.optim.Adam(model.parameters(), lr=1e-12)  # tiny lr: the model stays what it was

    def step():
        loss = task.loss(model(batch.inputs, steps=task.loss_steps), batch)  # as train.py
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), float("inf"))
        opt.step()
    return step


def batched_vjp_fn(model, task, batch, max_loss_steps):
    """The alternative to one backward per loss step: all loss steps in one vmapped backward."""
    def run():
        B, T = batch.inputs.shape[:2]
        taps = model.make_taps(B, T)
        flat = [t for layer in taps for t in layer.values()]
        per_step = task.loss_per_step(model(batch.inputs, taps=taps, steps=task.loss_steps), batch) * B
        steps = task.loss_steps.tolist()
        cols = [steps.index(s) for s in probe_loss_steps(task, max_loss_steps).tolist()]
        torch.autograd.grad(per_step[cols], flat, grad_outputs=torch.eye(len(cols)), is_grads_batched=True)
    return run


def default_run() -> dict:
    """steps, eval_every and eval_size of a default run, read from conf/config.yaml."""
    import yaml

    from seqlab.__main__ import CONF_DIR

    cfg = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    return {k: int(cfg[k]) for k in ("steps", "eval_every", "eval_size")}


def run_share(run: dict, every: int, t_train: float, t_eval: float, t_probe: float, t_full: float) -> float:
    """The probe's share of a default run's wall time: P probes (the first and last with the spectrum)."""
    n_probes = run["steps"] // every + 1 + (run["steps"] % every != 0)
    n_evals = run["steps"] // run["eval_every"] + 1 + (run["steps"] % run["eval_every"] != 0)
    probes = (n_probes - 2) * t_probe + 2 * t_full
    return probes / (run["steps"] * t_train + n_evals * t_eval + probes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    p.add_argument("--seq-len", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--no-copy", action="store_true", help="skip the copy-task rows")
    p.add_argument("--max-loss-steps", type=int, default=None, help="probe.max_loss_steps (default: the config's)")
    p.add_argument("--no-lyapunov-table", action="store_true", help="skip the T=1000 Lyapunov timings")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    settings = ProbeSettings(batch_size=args.batch)
    if args.max_loss_steps:
        settings = ProbeSettings(batch_size=args.batch, max_loss_steps=args.max_loss_steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, T={args.seq_len}, B={args.batch}, "
          f"H={args.hidden}, median of {args.repeats}; probe settings: max_loss_steps={settings.max_loss_steps}, "
          f"lyapunov_k={settings.lyapunov_k}, lyapunov_sequences={settings.lyapunov_sequences}\n")

    run = default_run()
    print(f"default run: {run['steps']} steps, probe every {settings.every}, eval of {run['eval_size']} "
          f"every {run['eval_every']}\n")
    print("| task | model | train step (ms) | gradient probe (ms) | ratio | probe (ms) | full probe (ms) | ratio "
          "| run share |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    tasks = [Adding(args.seq_len)] + ([] if args.no_copy else [Copy(args.seq_len)])
    for task in tasks:
        batch = task.make_batch(args.batch, torch.Generator().manual_seed(0))
        eval_batch = task.make_batch(run["eval_size"], torch.Generator().manual_seed(1))
        for name in args.models:
            model = build(name, task, args.hidden)
            t_train, t_grad, t_probe, t_full = median_times([
                train_step_fn(model, task, batch),
                partial(gradient_curves, model, task, batch, settings.max_loss_steps),
                partial(probe, model, task, batch, settings, lyapunov=False),
                partial(probe, model, task, batch, settings)], args.repeats)
            (t_eval,) = median_times([partial(evaluate, model, task, eval_batch)], max(1, args.repeats // 3))
            share = run_share(run, settings.every, t_train, t_eval, t_probe, t_full)
            label = task.name + (f" (L={len(probe_loss_steps(task, settings.max_loss_steps))})"
                                 if len(task.answer_steps) > 1 else "")
            print(f"| {label} | {name} | {1e3 * t_train:.1f} | {1e3 * t_grad:.1f} | {t_grad / t_train:.2f} "
                  f"| {1e3 * t_probe:.1f} | {1e3 * t_full:.1f} | {t_full / t_train:.1f} | {100 * share:.2f}% |",
                  flush=True)

    if not args.no_copy:
        task = Copy(args.seq_len)
        batch = task.make_batch(args.batch, torch.Generator().manual_seed(0))
        print(f"\ncopy, L={settings.max_loss_steps} loss steps: one backward each (used) vs batched VJPs\n")
        print("| model | one backward per loss step (ms) | is_grads_batched (ms) |")
        print("|---|---:|---:|")
        for name in args.models:
            model = build(name, task, args.hidden)
            t_used, t_vmap = median_times([
                partial(gradient_curves, model, task, batch, settings.max_loss_steps),
                batched_vjp_fn(model, task, batch, settings.max_loss_steps)], args.repeats)
            print(f"| {name} | {1e3 * t_used:.1f} | {1e3 * t_vmap:.1f} |", flush=True)

    if args.no_lyapunov_table:
        return
    print(f"\nLyapunov spectrum: 16 exponents, H={args.hidden}, one sequence of T=1000 (adding inputs)\n")
    print("| model | seconds |")
    print("|---|---:|")
    task = Adding(1000)
    x = task.make_batch(1, torch.Generator().manual_seed(0)).inputs
    for name in args.models:
        layer = build(name, task, args.hidden).layers[0]
        (t,) = median_times([partial(lyapunov_spectrum, layer, x, 16, 100)], max(1, args.repeats // 3))
        print(f"| {name} | {t:.2f} |", flush=True)


if __name__ == "__main__":
    main()
