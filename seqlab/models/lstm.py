"""LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000),
in torch's formulation and parameter layout (gates i, f, g, o):

    i, f, g, o = s(.), s(.), tanh(.), s(.)  of  W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

The fast path is ``torch.nn.LSTM`` (one layer); the step path taps c_t (before
h_t is formed from it, so dL/dc_t is the total derivative) and h_t.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import RecurrentLayer, State, TapFn, no_tap
from .init import init_recurrent


class LSTMLayer(RecurrentLayer):
    state_names = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, init: str = "default",
                 recurrent_gain: float = 1.0, forget_bias: float | None = None):
        super().__init__(input_size, hidden_size)
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        init_recurrent(self.lstm.weight_hh_l0, init, recurrent_gain)
        if forget_bias is not None:  # total forget-gate bias b_f = forget_bias
            H = hidden_size
            with torch.no_grad():
                self.lstm.bias_ih_l0[H:2 * H].fill_(forget_bias)
                self.lstm.bias_hh_l0[H:2 * H].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]  # (B, T, H)

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        m = self.lstm
        return x @ m.weight_ih_l0.T + m.bias_ih_l0 + m.bias_hh_l0  # (B, T, 4H)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        h, c = state
        i, f, g, o = (u_t + h @ self.lstm.weight_hh_l0.T).chunk(4, dim=1)  # each (B, H)
        c = tap("c", torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g))
        h = tap("h", torch.sigmoid(o) * torch.tanh(c))
        return h, c
