"""minLSTM: Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?",
sec. 3.2 (the LSTM with its gates' dependence on h_{t-1} dropped, the candidate's tanh
dropped, and the output made time-independent in scale by normalizing the two gates),
appendix (log-space code):

    f_t, i_t = sigmoid(Linear_f(x_t)), sigmoid(Linear_i(x_t))      gates from x_t only
    f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)              normalized: f' + i' = 1
    h~_t = g(Linear_h(x_t))                                        candidate (as minGRU's)
    h_t  = f'_t * h_{t-1} + i'_t * h~_t                            (B, H)

In logs, with d = softplus(-k_f) - softplus(-k_i) = log(i/f): log f' = -softplus(d),
log i' = -softplus(-d) (the paper's appendix), so f' = sigmoid(-d), i' = sigmoid(d):
computed that way on every path (equal to f / (f + i), without its 0/0 when both gates
underflow). No output gate and no separate cell: h is the one state.

As a diagonal recurrence: a_t = f'_t, b_t = i'_t h~_t; dL/dh_{t-1} = f'_t dL/dh_t per unit.
Since f' + i' = 1, minLSTM is minGRU's convex update with z = i' (the loop runs
torch.lerp(h, h~_t, i'_t)); the two differ in how the gate is parametrized.
Paths as minGRU's (seqlab.models.mingru): loop | chunked | parallel | log | auto.

``eigenvalues: signed`` (Grazzi et al. 2025, as minGRU's and the selective SSM's knob): a_t = 2 f'_t - 1
= f'_t - i'_t in (-1, 1) instead of f'_t in (0, 1), b_t = i'_t h~_t unchanged. The normalized gates
allow it as they allow minGRU's: f' is one sigmoid, sigmoid(-d), so 2 f' - 1 = -tanh(d / 2) spans
(-1, 1) as d does R. At init d is near 0 (f and i from the same init), so a starts near 0, as the
signed minGRU's. The update is then no longer convex, so no log-space scan.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import linear
from .diagonal import DiagonalLayer
from .init import init_matrix
from .mingru import candidate_fn, check_candidate, log_g
from .scan import METHODS


class MinLSTMLayer(DiagonalLayer):
    population_unsupported = None  # the step path takes stacked weights (seqlab.population)
    scans = METHODS
    # as minGRU's; the switch at T = 2000 lies between the measured lengths
    auto = {"cpu": ((math.inf, "loop"),), "cuda": ((2000, "log"), (math.inf, "chunked"))}
    convex = True  # f' = 1 - i': h_t = lerp(h_{t-1}, h~_t, i'_t)

    def __init__(self, input_size: int, hidden_size: int, candidate: str = "g", scan: str = "auto",
                 chunk: int | None = None, init: str = "default", eigenvalues: str = "positive"):
        super().__init__(input_size, hidden_size, scan, chunk)
        check_candidate(candidate, scan)
        from ..checks import check
        from .selective import check_eigenvalues

        self.eigenvalues = check_eigenvalues(eigenvalues)
        check(not (scan == "log" and eigenvalues == "signed"), "model.layer.scan", scan,
              "log needs eigenvalues: positive (the log-space scan takes the log of a > 0)")
        if eigenvalues == "signed":
            self.convex = False  # a = 2 f' - 1, b = i' h~: no longer a lerp
        self.candidate = candidate
        self.cand = candidate_fn(candidate)
        self.linear = nn.Linear(input_size, 3 * hidden_size)  # [Linear_f | Linear_i | Linear_h]
        init_matrix(self.linear.weight, init, block_rows=hidden_size)  # each of the three (biases: torch's)

    def method(self, x: torch.Tensor) -> str:
        m = super().method(x)
        return "chunked" if m == "log" and (self.candidate != "g" or self.eigenvalues == "signed") else m

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.linear.weight, self.linear.bias)  # (B, T, 3H): [k_f | k_i | k_h]

    @staticmethod
    def _log_ratio(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k_f, k_i, v = p.chunk(3, dim=-1)  # (B, T, H) each
        return F.softplus(-k_f) - F.softplus(-k_i), v  # d = log(i / f)

    def coefficients(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, v = self._log_ratio(p)
        if self.eigenvalues == "signed":  # a = 2 f' - 1 = f' - i' in (-1, 1), b = i' h~ (Grazzi et al. 2025)
            return torch.sigmoid(-d) - torch.sigmoid(d), torch.sigmoid(d) * self.cand(v)
        return torch.sigmoid(d), self.cand(v)  # w = i', c = h~ (a = f' = 1 - i', b = i' h~)

    def log_coefficients(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d, v = self._log_ratio(p)
        return -F.softplus(d), -F.softplus(-d) + log_g(v)
