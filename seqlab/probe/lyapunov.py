"""Lyapunov spectrum of a layer's recurrent dynamics along a driven trajectory.

Glossary: n sequences, T time, D layer input features, S = state size of one
layer (H, or 2H for an LSTM's (h, c)), k exponents.

The QR method (Engelken, Wolf & Abbott 2023; LITERATURE.md): with the inputs
fixed, one step is a map s_{t-1} -> s_t of the layer's full state; its Jacobian
J_t is applied to an orthonormal set Q (S, k) by forward-mode AD through the
layer's own ``step`` (so any ``RecurrentLayer`` works unchanged; the k tangents
ride as k copies of the state in the batch dimension, one dual-number step per
t, which costs less than vmap(jvp) here), then
J_t Q = Q' R with diag(R) made positive, Q <- Q', and after ``warmup`` steps
lambda_i = mean_t log R_ii. The exponents are per step, natural log, largest
first: comparable with ln(gamma) of the gradient curve. For a linear RNN
h_t = W h_{t-1} + u_t the spectrum is log |eig(W)| in the limit of many steps.

Finite-time bias. Along a finite trajectory the estimate carries a bias of order
C / N (N averaged steps): Q needs ~1 / (lambda_i - lambda_{i+1}) steps to align
with the i-th Lyapunov direction, and a non-normal Jacobian grows vectors
transiently before they decay. Measured (tests/test_lyapunov_convergence.py's
case: H = 32, eigenvalues 0.5..0.97 in a real Schur form with largest singular
value 1.9, true lambda1 = ln 0.97 = -0.0305): over one adding sequence of
T = 200 (warm-up 50) lambda1 = -0.0137; over 1000 / 2000 / 5000 steps -0.0276 /
-0.0291 / -0.0299. ``driving_inputs`` therefore drives the layer for a number of
steps independent of the task's T, with inputs from the task's own distribution
(its sequences back to back), and ``lyapunov_estimate`` returns a convergence
estimate with every exponent: the larger of the batch-means standard error
(the averaging window cut into blocks) and the drift |lambda(N) - lambda(N/2)|
between the estimate over the whole window and over its first half (a 1/N bias
shows up as that drift).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call

from ..models import RecurrentLayer, SequenceModel
from ..tasks import Task
from .gradient import probe_mode


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread for the loop of tiny (n, S) x (S, k) ops: OpenMP workers cost more
    than they give there, and on a busy 2-core machine they made it 10-20x slower (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def layer_inputs(model: SequenceModel, x: torch.Tensor) -> list[torch.Tensor]:
    """What each layer receives in a forward pass of ``x`` (B, T, D): a list of (B, T, D_l).

    Read with forward pre-hooks, so any wiring between the layers (residual skips, ...)
    is the model's own.
    """
    seen: list[torch.Tensor] = []
    hooks = [layer.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
             for layer in model.layers]
    try:
        with probe_mode(model):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


class _QRLoop(nn.Module):
    """The QR loop over one trajectory, as a module's forward so that ``functional_call`` can
    swap dual parameters into ``layer`` once for the whole loop."""

    def __init__(self, layer: RecurrentLayer):
        super().__init__()
        self.layer = layer

    def forward(self, drive: torch.Tensor, s: torch.Tensor, Q: torch.Tensor, warmup: int,
                sizes: list[int]) -> torch.Tensor:
        """drive (..., n, T, G), state s (..., n, S), Q (..., n, S, k) -> log R_ii at every t >= warmup,
        (T - warmup, ..., n, k). The leading dims ``...`` are a population's members (none for one layer:
        then these are exactly the ops of a (n, T, G) drive)."""
        *lead, n, S, k = Q.shape
        zero = drive.new_zeros(*lead, n * k, drive.shape[-1])  # the drive's tangent (see lyapunov_spectrum)
        log_r = []
        for t, drive_t in enumerate(drive.unbind(-2)):
            u_t = fwAD.make_dual(drive_t.repeat_interleave(k, dim=-2), zero)  # row (b, j) is sequence b
            # row (b, j) of the (..., n*k, S) batch: state s_b with tangent Q_b[:, j]
            dual = fwAD.make_dual(s.repeat_interleave(k, dim=-2), Q.transpose(-1, -2).reshape(*lead, n * k, S))
            out = self.layer.step(u_t, tuple(dual.split(sizes, dim=-1)))
            primal, tangent = fwAD.unpack_dual(torch.cat(out, dim=-1))  # (..., n*k, S) each
            s = primal[..., ::k, :]  # (..., n, S): every copy carries the same state
            Q, R = torch.linalg.qr(tangent.reshape(*lead, n, k, S).transpose(-1, -2))  # J_t Q = Q' R
            r = torch.diagonal(R, dim1=-2, dim2=-1)  # (..., n, k)
            Q = Q * torch.where(r < 0, -1.0, 1.0).to(Q.dtype).unsqueeze(-2)  # Q D, D R: diag(R) > 0
            if t >= warmup:
                log_r.append(r)  # > 0 up to sign; the logs are taken once, at the end
        return torch.stack(log_r).abs().double().log() if log_r else torch.zeros(0, *lead, n, k, dtype=torch.float64)


class _Drive(nn.Module):
    """``layer.input_drive`` as a module's forward, for ``functional_call`` with a population's stacked weights."""

    def __init__(self, layer: RecurrentLayer):
        super().__init__()
        self.layer = layer

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layer.input_drive(inputs)


@dataclass(frozen=True)
class LyapunovEstimate:
    """Top-k exponents of one layer with their convergence estimate, all (k,), largest first.

    exponents: mean of log R_ii over the N averaged steps and the n sequences;
    se:        batch-means standard error (the window cut into ``blocks`` blocks per sequence);
    drift:     exponents minus the estimate over the first half of the window;
    err:       max(se, |drift|), the convergence estimate to quote with each exponent.
    """

    exponents: np.ndarray
    se: np.ndarray
    drift: np.ndarray
    steps: int          # N, averaged steps per sequence
    sequences: int      # n

    @property
    def err(self) -> np.ndarray:
        return np.maximum(self.se, np.abs(self.drift))


def summarize_log_r(log_r: np.ndarray, blocks: int = 10) -> LyapunovEstimate:
    """log R_ii per averaged step, (N, n, k) -> exponents, standard error and drift."""
    N, n, k = log_r.shape
    if N == 0:
        nan = np.full(k, np.nan)
        return LyapunovEstimate(nan, nan, nan, 0, n)
    # A state that does not depend on the previous one (a feedforward layer, T = 1; a unit that saturated to
    # exactly constant) contracts a tangent to zero: log R = -inf, an exact exponent of -inf with no spread.
    exact = np.isneginf(log_r).any(axis=(0, 1))
    with np.errstate(invalid="ignore"):
        exponents = log_r.mean(axis=(0, 1))
        half = log_r[: max(N // 2, 1)].mean(axis=(0, 1))
        b = min(blocks, N)
        if b * n > 1:
            size = N // b  # equal blocks; the remainder (< b steps) is left out of the spread only
            means = log_r[: b * size].reshape(b, size, n, k).mean(axis=1).reshape(b * n, k)  # (b n, k)
            se = means.std(axis=0, ddof=1) / np.sqrt(b * n)
        else:
            se = np.full(k, np.nan)
        drift = exponents - half
    exponents = np.where(exact, -np.inf, exponents)
    se, drift = np.where(exact, 0.0, se), np.where(exact, 0.0, drift)
    return LyapunovEstimate(exponents, se, drift, N, n)


def _log_r(layer: RecurrentLayer, inputs: torch.Tensor, k: int, warmup: int, seed: int,
           differentiable: bool = False, members: list[RecurrentLayer] | None = None) -> torch.Tensor:
    """The QR loop along ``inputs`` (n, T, D): log R_ii of every step after the warm-up, (T - warmup, n, k').

    ``differentiable``: keep the autograd graph back to the layer's parameters (reverse mode
    through the forward-mode tangents and the QR steps), for gradient flossing.
    ``members``: the same layer of M same-shaped models (a population; ``layer`` is the first), each
    along its own ``inputs[m]`` (M, n, T, D) from the same first Q as alone, in one loop whose step runs
    ``layer``'s step path on their stacked weights: (T - warmup, M, n, k').
    """
    n, T = inputs.shape[-3:-1]
    with probe_mode(layer), torch.set_grad_enabled(differentiable), one_thread():
        loop = _QRLoop(layer)
        if members is None:
            weights = {name: p if differentiable else p.detach() for name, p in loop.named_parameters()}
            drive = layer.input_drive(inputs)  # (n, T, G)
        else:
            own = [dict(member.named_parameters()) for member in members]
            weights = {f"layer.{name}": torch.stack([params[name].detach() for params in own])
                       for name in own[0]}
            drive = functional_call(_Drive(layer), weights, (inputs,))  # (M, n, T, G)
        state = layer.initial_state(inputs)
        sizes = [s.shape[-1] for s in state]
        S = sum(sizes)
        k = min(k, S)
        gen = torch.Generator().manual_seed(seed)
        Q = torch.linalg.qr(torch.randn(n, S, k, generator=gen, dtype=torch.float64))[0]  # (n, S, k)
        Q = Q.to(device=inputs.device, dtype=inputs.dtype).expand(*inputs.shape[:-3], n, S, k)
        with fwAD.dual_level(), warnings.catch_warnings():
            # torch loads its forward-AD decompositions on first use via torch.jit.script, which warns
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
            # Every parameter enters as a dual with a real zero tangent: an op between a dual and a
            # plain tensor takes forward AD's zero-tensor path, ~30x slower than dual with dual
            # (torch 2.13 CPU: add 240 us vs 7 us at (16, 128)).
            params = {name: fwAD.make_dual(p, torch.zeros_like(p)) for name, p in weights.items()
                      if p.is_floating_point()}
            return functional_call(loop, params, (drive, torch.cat(state, dim=-1), Q, warmup, sizes))


def lyapunov_exponents(layer: RecurrentLayer, inputs: torch.Tensor, k: int = 16, warmup: int = 50,
                       seed: int = 0) -> torch.Tensor:
    """Top-k exponents (k,) as a differentiable function of ``layer``'s parameters (gradient flossing)."""
    warmup = min(warmup, inputs.shape[1] // 2)
    return _log_r(layer, inputs, k, warmup, seed, differentiable=True).mean(dim=(0, 1))


def lyapunov_estimate(layer: RecurrentLayer, inputs: torch.Tensor, k: int = 16, warmup: int = 50,
                      seed: int = 0, blocks: int = 10) -> LyapunovEstimate:
    """Top-k Lyapunov exponents of ``layer`` driven by ``inputs`` (n, T, D), with their convergence estimate.

    ``warmup`` steps (at most T // 2) align Q and settle the state before the
    averaging starts; ``seed`` draws the first Q from its own generator.
    """
    warmup = min(warmup, inputs.shape[1] // 2)
    return summarize_log_r(_log_r(layer, inputs, k, warmup, seed).cpu().numpy(), blocks)


def lyapunov_spectrum(layer: RecurrentLayer, inputs: torch.Tensor, k: int = 16, warmup: int = 50,
                      seed: int = 0) -> np.ndarray:
    """Top-k Lyapunov exponents (k,) of ``layer`` driven by ``inputs`` (n, T, D), mean over the n
    (``lyapunov_estimate`` without the convergence estimate)."""
    return lyapunov_estimate(layer, inputs, k, warmup, seed).exponents


def lyapunov_spectra(model: SequenceModel, x: torch.Tensor, k: int = 16, warmup: int = 50,
                     seed: int = 0) -> list[np.ndarray]:
    """Top-k exponents of every layer of ``model`` along the trajectory of ``x`` (n, T, D)."""
    return [lyapunov_spectrum(layer, inputs, k, warmup, seed)
            for layer, inputs in zip(model.layers, layer_inputs(model, x))]


def driving_inputs(task: Task, steps: int, sequences: int = 1, seed: int = 0, device="cpu") -> torch.Tensor:
    """(sequences, steps, D) inputs from the task's own distribution: its sequences back to back.

    The recurrent state is never reset between them, so the layer runs as a driven
    dynamical system for ``steps`` steps whatever the task's T. Drawn from a generator
    seeded with ``seed`` (the first sequence is the probe batch's first one when the
    seeds agree); the training streams are untouched.
    """
    T = task.total_len
    m = -(-steps // T)  # sequences per trajectory
    x = task.make_batch(sequences * m, torch.Generator().manual_seed(seed)).inputs  # (n m, T, D)
    return x.reshape(sequences, m * T, -1)[:, :steps].to(device)


def lyapunov_estimates(model: SequenceModel, x: torch.Tensor, k: int = 16, warmup: int = 50,
                       seed: int = 0, blocks: int = 10) -> list[LyapunovEstimate]:
    """``lyapunov_estimate`` of every layer of ``model`` along the trajectory of ``x`` (n, T, D)."""
    return [lyapunov_estimate(layer, inputs, k, warmup, seed, blocks)
            for layer, inputs in zip(model.layers, layer_inputs(model, x))]


def population_lyapunov_estimates(models: list[SequenceModel], x: torch.Tensor, k: int = 16, warmup: int = 50,
                                  seed: int = 0, blocks: int = 10) -> list[list[LyapunovEstimate]]:
    """``lyapunov_estimates`` of each of M same-shaped models (a population's members; seqlab.population),
    in one batched QR loop per layer: each member's layer steps with its own weights (stacked along a
    leading member dimension), along its own layer inputs from the same ``x`` and the same first Q as
    it would alone. The members are independent, so each gets its own estimate (equal to its lone
    ``lyapunov_estimates`` to float rounding: the batched matmul against the plain one)."""
    # layer 0 reads x itself (SequenceModel); a deeper layer reads each member's own lower layers' output
    seen = [layer_inputs(model, x) for model in models] if len(models[0].layers) > 1 else [[x]] * len(models)
    per_layer = []
    for layers, inputs in zip(zip(*(model.layers for model in models)), zip(*seen)):
        inputs = torch.stack(inputs)  # (M, n, T, D)
        per_layer.append(_log_r(layers[0], inputs, k, min(warmup, inputs.shape[-2] // 2), seed,
                                members=list(layers)).cpu().numpy())  # (N, M, n, k)
    return [[summarize_log_r(log_r[:, i], blocks) for log_r in per_layer] for i in range(len(models))]
