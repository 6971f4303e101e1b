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
h_t = W h_{t-1} + u_t the spectrum is log |eig(W)|.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call

from ..models import RecurrentLayer, SequenceModel
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
        """drive (n, T, G), state s (n, S), Q (n, S, k) -> sum over t >= warmup of log R_ii, (n, k)."""
        (n, S, k), T = Q.shape, drive.shape[1]
        # the drive as duals with a zero tangent (see lyapunov_spectrum); row (b, j) is sequence b
        u = fwAD.make_dual(drive.repeat_interleave(k, dim=0), torch.zeros_like(drive).repeat_interleave(k, dim=0))
        log_r = torch.zeros(n, k, dtype=torch.float64, device=drive.device)
        for t, u_t in enumerate(u.unbind(1)):
            # row (b, j) of the (n*k, S) batch: state s_b with tangent Q_b[:, j]
            dual = fwAD.make_dual(s.repeat_interleave(k, dim=0), Q.transpose(1, 2).reshape(n * k, S))
            out = self.layer.step(u_t, tuple(dual.split(sizes, dim=-1)))
            primal, tangent = fwAD.unpack_dual(torch.cat(out, dim=-1))  # (n*k, S) each
            s = primal[::k]  # (n, S): every copy carries the same state
            Q, R = torch.linalg.qr(tangent.reshape(n, k, S).transpose(1, 2))  # J_t Q = Q' R: (n, S, k), (n, k, k)
            r = torch.diagonal(R, dim1=-2, dim2=-1)  # (n, k)
            Q = Q * torch.where(r < 0, -1.0, 1.0).to(Q.dtype).unsqueeze(1)  # Q D, D R: diag(R) > 0
            if t >= warmup:
                log_r += r.abs().double().log()
        return log_r


def lyapunov_spectrum(layer: RecurrentLayer, inputs: torch.Tensor, k: int = 16, warmup: int = 50,
                      seed: int = 0) -> np.ndarray:
    """Top-k Lyapunov exponents (k,) of ``layer`` driven by ``inputs`` (n, T, D), mean over the n.

    ``warmup`` steps (at most T // 2) align Q and settle the state before the
    averaging starts; ``seed`` draws the first Q from its own generator.
    """
    n, T = inputs.shape[:2]
    warmup = min(warmup, T // 2)
    with probe_mode(layer), torch.no_grad(), one_thread():
        drive = layer.input_drive(inputs)  # (n, T, G)
        state = layer.initial_state(inputs)
        sizes = [s.shape[-1] for s in state]
        S = sum(sizes)
        k = min(k, S)
        gen = torch.Generator().manual_seed(seed)
        Q = torch.linalg.qr(torch.randn(n, S, k, generator=gen, dtype=torch.float64))[0]  # (n, S, k)
        Q = Q.to(device=inputs.device, dtype=inputs.dtype)
        loop = _QRLoop(layer)
        with fwAD.dual_level(), warnings.catch_warnings():
            # torch loads its forward-AD decompositions on first use via torch.jit.script, which warns
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
            # Every parameter enters as a dual with a real zero tangent: an op between a dual and a
            # plain tensor takes forward AD's zero-tensor path, ~30x slower than dual with dual
            # (torch 2.13 CPU: add 240 us vs 7 us at (16, 128)).
            params = {name: fwAD.make_dual(p.detach(), torch.zeros_like(p))
                      for name, p in loop.named_parameters() if p.is_floating_point()}
            log_r = functional_call(loop, params, (drive, torch.cat(state, dim=-1), Q, warmup, sizes))
    return (log_r / (T - warmup)).mean(0).cpu().numpy()


def lyapunov_spectra(model: SequenceModel, x: torch.Tensor, k: int = 16, warmup: int = 50,
                     seed: int = 0) -> list[np.ndarray]:
    """Top-k exponents of every layer of ``model`` along the trajectory of ``x`` (n, T, D)."""
    return [lyapunov_spectrum(layer, inputs, k, warmup, seed)
            for layer, inputs in zip(model.layers, layer_inputs(model, x))]
