"""GRU (Cho et al. 2014) in torch's formulation and parameter layout (gates r, z, n):

    r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

The fast path is ``torch.nn.GRU`` (one layer); the step path taps h_t.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import RecurrentLayer, State, TapFn, no_tap
from .init import init_recurrent


class GRULayer(RecurrentLayer):
    def __init__(self, input_size: int, hidden_size: int, init: str = "default",
                 recurrent_gain: float = 1.0):
        super().__init__(input_size, hidden_size)
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        init_recurrent(self.gru.weight_hh_l0, init, recurrent_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]  # (B, T, H)

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        m = self.gru
        return x @ m.weight_ih_l0.T + m.bias_ih_l0  # (B, T, 3H); b_hh stays inside r * (.)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        (h,) = state
        ur, uz, un = u_t.chunk(3, dim=1)  # each (B, H)
        wr, wz, wn = (h @ self.gru.weight_hh_l0.T + self.gru.bias_hh_l0).chunk(3, dim=1)
        r, z = torch.sigmoid(ur + wr), torch.sigmoid(uz + wz)
        n = torch.tanh(un + r * wn)
        return (tap("h", (1 - z) * n + z * h),)
