"""minGRU: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?",
sec. 3.1 (the GRU with its gates' dependence on h_{t-1} dropped, and the tanh range
restriction of the candidate dropped), appendix (log-space code):

    z_t   = sigmoid(Linear_z(x_t))                 update gate, from x_t only
    h~_t  = g(Linear_h(x_t))                       candidate (paper's sec. 3.1: Linear_h(x_t);
                                                   its log-space code: g, positive)
    h_t   = (1 - z_t) * h_{t-1} + z_t * h~_t       (B, H)

with g(v) = v + 0.5 for v >= 0, sigmoid(v) for v < 0 (continuous, > 0), so that every
h_t > 0 and the log-space scan applies: log(1 - z) = -softplus(k), log z = -softplus(-k),
log g as in the paper's appendix. ``candidate: linear`` is sec. 3.1's plain Linear_h
(no log-space path then).

As a diagonal recurrence h_t = a_t h_{t-1} + b_t: a_t = 1 - z_t, b_t = z_t h~_t (the
loop runs it as torch.lerp(h, h~_t, z_t)). The gradient through time is dL/dh_{t-1} = (1 - z_t) dL/dh_t per unit,
so a unit keeps its gradient exactly as long as its update gate stays shut.

``eigenvalues: signed`` (Grazzi et al. 2025, "Unlocking State-Tracking in Linear RNNs Through
Negative Eigenvalues"): a_t = 1 - 2 z_t in (-1, 1) instead of 1 - z_t in (0, 1), b_t = z_t h~_t
unchanged; at z = 1/2 (init) a = 0. The cell is then no longer convex, so no log-space scan.

Paths (seqlab.models.scan): the step path (taps on h) and the fast path over the same
parameters, ``scan`` = loop | chunked | parallel | log | auto (the measured fastest for
the device: the loop on CPU; on CUDA the log-space scan up to T = 2000, the chunked one beyond). A test holds every path equal to the step path, and the
log-space scan to the paper's sequential recurrence at T = 1000.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_choice, check
from .base import linear
from .diagonal import DiagonalLayer
from .init import init_matrix
from .scan import METHODS

CANDIDATES = ("g", "linear")


def g(v: torch.Tensor) -> torch.Tensor:
    """The paper's positive candidate activation: v + 0.5 (v >= 0), sigmoid(v) (v < 0)."""
    return torch.where(v >= 0, v.clamp_min(0) + 0.5, torch.sigmoid(v))


def log_g(v: torch.Tensor) -> torch.Tensor:
    """log g(v), computed without exp/log round trips (the paper's appendix)."""
    return torch.where(v >= 0, (v.clamp_min(0) + 0.5).log(), -F.softplus(-v))


def candidate_fn(name: str):
    return g if name == "g" else (lambda v: v)


def check_candidate(candidate: str, scan: str) -> None:
    check_choice("model.layer.candidate", candidate, CANDIDATES)
    check(not (scan == "log" and candidate != "g"), "model.layer.scan", scan,
          "log needs candidate: g (the log-space scan takes the log of a positive h~)")


class MinGRULayer(DiagonalLayer):
    population_unsupported = None  # the step path takes stacked weights (seqlab.population)
    scans = METHODS
    # log-space scan fastest at T = 200, 1000 on an H100, chunked at 5000; the switch at T = 2000 lies between the measured lengths
    auto = {"cpu": ((math.inf, "loop"),), "cuda": ((2000, "log"), (math.inf, "chunked"))}
    convex = True  # h_t = lerp(h_{t-1}, h~_t, z_t)

    def __init__(self, input_size: int, hidden_size: int, candidate: str = "g", scan: str = "auto",
                 chunk: int | None = None, init: str = "default", eigenvalues: str = "positive"):
        super().__init__(input_size, hidden_size, scan, chunk)
        check_candidate(candidate, scan)
        from .selective import check_eigenvalues

        self.eigenvalues = check_eigenvalues(eigenvalues)
        check(not (scan == "log" and eigenvalues == "signed"), "model.layer.scan", scan,
              "log needs eigenvalues: positive (the log-space scan takes the log of a > 0)")
        if eigenvalues == "signed":
            self.convex = False  # a = 1 - 2 z, b = z h~: no longer a lerp
        self.candidate = candidate
        self.cand = candidate_fn(candidate)
        self.linear = nn.Linear(input_size, 2 * hidden_size)  # [Linear_z | Linear_h]
        init_matrix(self.linear.weight, init, block_rows=hidden_size)  # each of Linear_z, Linear_h (biases: torch's)

    def method(self, x: torch.Tensor) -> str:
        m = super().method(x)
        return "chunked" if m == "log" and (self.candidate != "g" or self.eigenvalues == "signed") else m

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.linear.weight, self.linear.bias)  # (B, T, 2H): [k_z | k_h]

    def coefficients(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = p.chunk(2, dim=-1)  # (B, T, H) each
        z = torch.sigmoid(k)
        if self.eigenvalues == "signed":
            return 1 - 2 * z, z * self.cand(v)  # a in (-1, 1), b = z h~ (Grazzi et al. 2025)
        return z, self.cand(v)  # w = z, c = h~ (a = 1 - z, b = z h~)

    def log_coefficients(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = p.chunk(2, dim=-1)
        return -F.softplus(k), -F.softplus(-k) + log_g(v)  # log(1 - z), log z + log h~
