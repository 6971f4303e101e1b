"""How many steps the Lyapunov spectrum needs to converge, on the lab's reference cases.

    python benchmarks/lyapunov_convergence.py                 # docs/probe.md's table (~5 min on one thread)
    python benchmarks/lyapunov_convergence.py --cases nonnormal rnn_tanh --steps 200 2000

For each case and each (warm-up, averaged steps) it prints the top exponent lambda1, its
convergence estimate (``LyapunovEstimate.err``: max of the batch-means standard error and the
drift since half the window) and its error against a reference: ln max|eig W| for the linear
non-normal case, else the same QR method over ``--reference-steps`` steps (warm-up 2000). Inputs
are the task's own sequences back to back (``driving_inputs``), one sequence, float64, H=128
(32 for the linear case), PyTorch's default init at seed 0, adding T=200. Also the seconds one
estimate takes at float32 (as the probe runs it).

Cases: ``nonnormal`` (h_t = W h_{t-1} + u_t with W = U (diag(0.97..0.5) + c N) U^T, N strictly
upper triangular, c set so that ||W||_2 = 1.9: tests/test_lyapunov_convergence.py's case) and
every conf/remedy preset named.
"""
from __future__ import annotations

import argparse
import copy
import math
import time

import numpy as np
import torch

from seqlab.models import RNNLayer
from seqlab.probe.lyapunov import driving_inputs, layer_inputs, lyapunov_estimate
from seqlab.tasks import Adding


def nonnormal_matrix(H: int = 32, top: float = 0.97, bottom: float = 0.5, sigma: float = 1.9,
                     seed: int = 0) -> torch.Tensor:
    """A non-normal W in real Schur form (rotated): eigenvalues ``top``..``bottom``, ||W||_2 = ``sigma``."""
    g = torch.Generator().manual_seed(seed)
    eig = torch.linspace(top, bottom, H, dtype=torch.float64)
    N = torch.triu(torch.randn(H, H, generator=g, dtype=torch.float64), 1)
    lo, hi = 0.0, 10.0
    for _ in range(60):  # bisection on c: ||diag + c N||_2 grows with c
        c = (lo + hi) / 2
        lo, hi = (c, hi) if torch.linalg.matrix_norm(torch.diag(eig) + c * N, 2) < sigma else (lo, c)
    U = torch.linalg.qr(torch.randn(H, H, generator=g, dtype=torch.float64))[0]
    return U @ (torch.diag(eig) + c * N) @ U.T


def linear_layer(W: torch.Tensor, input_size: int) -> RNNLayer:
    layer = RNNLayer(input_size, W.shape[0], activation="identity").to(W.dtype)
    with torch.no_grad():
        layer.rnn.weight_hh_l0.copy_(W)
    return layer


def remedy_layer(name: str, task, hidden: int):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from seqlab.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"remedy={name}", f"model.hidden_size={hidden}",
                                                         f"seq_len={task.seq_len}", "logger=none"])
    torch.manual_seed(0)
    return instantiate(cfg.model)(input_size=task.input_size, output_size=task.output_size)


def estimate(case, task, warmup, steps, dtype=torch.float64, k=16):
    model = copy.deepcopy(case["model"]).to(dtype)  # .to is in place: keep the float64 original
    x = driving_inputs(task, warmup + steps, 1, seed=0).to(dtype)
    layer = model.layers[0] if hasattr(model, "layers") else model
    inputs = layer_inputs(model, x)[0] if hasattr(model, "layers") else x
    t0 = time.perf_counter()
    est = lyapunov_estimate(layer, inputs, k=k, warmup=warmup)
    return est, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["nonnormal", "rnn_tanh", "rnn_orthogonal", "lstm", "lstm_chrono",
                                                  "gru_chrono", "lru"])
    p.add_argument("--schedules", nargs="+", default=["50:150", "50:1000", "200:2000", "500:2000", "500:3000",
                                                      "1000:5000"], help="warm-up:steps pairs")
    p.add_argument("--reference-steps", type=int, default=30000)
    p.add_argument("--hidden", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    task = Adding(200)
    print(f"torch {torch.__version__}, 1 thread; adding T=200 inputs back to back; k=16; float64 "
          f"(time: float32)\n")
    print("| case | reference λ1 | warm-up:steps | λ1 | err (estimate) | \\|λ1 − ref\\| | s (float32) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name in args.cases:
        if name == "nonnormal":
            W = nonnormal_matrix()
            case = {"model": linear_layer(W, task.input_size)}
            ref = math.log(float(np.abs(np.linalg.eigvals(W.numpy())).max()))
        else:
            case = {"model": remedy_layer(name, task, args.hidden)}
            ref_est, _ = estimate(case, task, 2000, args.reference_steps)
            ref = float(ref_est.exponents[0])
        for sched in args.schedules:
            warmup, steps = map(int, sched.split(":"))
            est, _ = estimate(case, task, warmup, steps)
            _, seconds = estimate(case, task, warmup, steps, dtype=torch.float32)
            lam, err = float(est.exponents[0]), float(est.err[0])
            print(f"| {name} | {ref:.5f} | {warmup}:{steps} | {lam:.5f} | {err:.1e} | {abs(lam - ref):.1e} "
                  f"| {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
