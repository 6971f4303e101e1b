"""A selective diagonal state-space recurrence: the S6 layer of Gu & Dao 2023, "Mamba:
Linear-Time Sequence Modeling with Selective State Spaces", sec. 3.2 and Algorithm 2, in
plain torch (no fused kernel, no conv, no gate: the SSM alone).

Per channel p = 1..H with a state of N numbers (the paper's D channels, N state size):

    u_t        = silu(W_in x_t + b_in)                      (B, H) the channels' input
    Delta_t    = softplus(W_dt (W_r u_t) + b_dt)            (B, H) step size, from x_t (s_Delta, tau_Delta)
    B_t, C_t   = W_B u_t, W_C u_t                           (B, N) each, from x_t (s_B, s_C)
    h_t[p, :]  = exp(Delta_t[p] A[p, :]) * h_{t-1}[p, :] + Delta_t[p] B_t * u_t[p]     eq. 2a with
                                                            eq. 4's A-bar = exp(Delta A) and the
                                                            paper's code's B-bar = Delta B
    y_t[p]     = C_t . h_t[p, :] + D[p] u_t[p]              eq. 2b, with the skip D

A = -exp(A_log) is diagonal, real and negative (S4D-real init: A[p, n] = -(n + 1)), so
|exp(Delta A)| < 1 for any Delta > 0: stable by construction.

``eigenvalues``: ``positive`` (the paper's) keeps every transition a = exp(Delta A) in (0, 1);
``signed`` uses a = 2 exp(Delta A) - 1 in (-1, 1), Grazzi, Siems, Zela, Franke, Hutter & Pontil
2025 ("Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues", ICLR): with
transitions in [0, 1] a linear recurrence cannot solve parity; with [-1, 1] it can (a -> -1 on a
1 bit flips the state's sign). At init Delta is small, so signed a starts near 1 as well. b_dt is set so that
Delta = softplus(b_dt) ~ log-uniform on [dt_min, dt_max] at init (the paper's 0.001, 0.1);
W_r is the low-rank (dt_rank = ceil(H / 16)) factor of s_Delta, as in the paper's code.

The state is h = (H, N) per example, stored flat as (B, H * N): ``state_size("h") = H N``,
so the probe's taps on h are (B, T, H N) and its curve h_l0 is ||dL/dh_t|| over all of
them; dh_t/dh_{t-1} = diag(exp(Delta_t A)) exactly. The layer's output is y (B, T, H).

Paths (seqlab.models.scan): the step path (a sequential scan, taps on h) and the fast path
``scan`` = loop | chunked | parallel | auto (no log-space scan: b_t has either sign). Memory:
every path keeps the (B, T, H, N) coefficients for the backward, N times an LSTM's per step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check, check_int, is_int, is_number
from .diagonal import DiagonalLayer
from .init import init_matrix

EIGENVALUES = ("positive", "signed")


def check_eigenvalues(value: str) -> str:
    """The range of an input-gated recurrence's transition a_t: positive (0, 1) or signed (-1, 1)."""
    from ..checks import check_choice

    check_choice("model.layer.eigenvalues", value, EIGENVALUES)
    return value


class SelectiveLayer(DiagonalLayer):
    # Measured with its step path batched (commit 8a2a5e2; benchmarks/population_sizes.py --sizes small --model
    # selective): per member 1.03x a lone run at M = 4, 0.95x at 16, 0.56x at 64 (594 MB saved for the backward)
    population_unsupported = ("no faster in a population (its (B, H, N) state makes a step arithmetic, not "
                              "overhead: 0.95x per member at M = 16), so it runs alone")

    def __init__(self, input_size: int, hidden_size: int, state_size: int = 16, dt_rank: int | None = None,
                 dt_min: float = 1e-3, dt_max: float = 0.1, scan: str = "auto", chunk: int | None = None,
                 init: str = "default", eigenvalues: str = "positive"):
        super().__init__(input_size, hidden_size, scan, chunk)
        H = hidden_size
        self.eigenvalues = check_eigenvalues(eigenvalues)
        N = check_int("model.layer.state_size", state_size, 1)
        check(dt_rank is None or (is_int(dt_rank) and dt_rank >= 1), "model.layer.dt_rank", dt_rank,
              "must be an integer >= 1 or null (null = ceil(hidden_size / 16))")
        check(is_number(dt_min) and dt_min > 0, "model.layer.dt_min", dt_min, "must be a number > 0")
        check(is_number(dt_max) and dt_max > dt_min, "model.layer.dt_max", dt_max,
              f"must be a number > dt_min = {dt_min}")
        R = dt_rank or math.ceil(H / 16)
        self.N, self.R = N, R
        self.in_proj = nn.Linear(input_size, H)  # u = silu(W_in x + b_in)
        init_matrix(self.in_proj.weight, init)  # W_in only: x_proj, dt_proj, A and D keep S6's own init
        self.x_proj = nn.Linear(H, R + 2 * N, bias=False)  # [W_r | W_B | W_C]
        self.dt_proj = nn.Linear(R, H)  # W_dt, b_dt
        with torch.no_grad():
            bound = R ** -0.5
            self.dt_proj.weight.uniform_(-bound, bound)
            dt = torch.exp(torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(H, 1))  # (H, N)
        self.D = nn.Parameter(torch.ones(H))

    def state_size(self, name: str) -> int:
        return self.hidden_size * self.N

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        u = F.silu(self.in_proj(x))  # (B, T, H)
        r, B_t, C_t = self.x_proj(u).split([self.R, self.N, self.N], dim=-1)  # (B, T, R), (B, T, N) x 2
        delta = F.softplus(self.dt_proj(r))  # (B, T, H)
        return u, delta, B_t, C_t

    def coefficients(self, p) -> tuple[torch.Tensor, torch.Tensor]:
        u, delta, B_t, _ = p
        A = -torch.exp(self.A_log)  # (H, N)
        a = torch.exp(delta.unsqueeze(-1) * A)  # (B, T, H, N) in (0, 1)
        if self.eigenvalues == "signed":
            a = 2 * a - 1  # in (-1, 1): Grazzi et al. 2025's extension for Mamba
        b = (delta * u).unsqueeze(-1) * B_t.unsqueeze(-2)  # (B, T, H, N)
        return a.flatten(-2), b.flatten(-2)  # (B, T, H N)

    def output(self, p, h: torch.Tensor) -> torch.Tensor:
        u, _, _, C_t = p
        h = h.unflatten(-1, (self.hidden_size, self.N))  # (B, T, H, N)
        return (h @ C_t.unsqueeze(-1)).squeeze(-1) + self.D * u  # (B, T, H)
