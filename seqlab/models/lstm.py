"""LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000),
in torch's formulation and parameter layout (gates i, f, g, o):

    i, f, g, o = s(.), s(.), tanh(.), s(.)  of  W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

The fast path is ``torch.nn.LSTM`` (one layer); the step path taps c_t (before
h_t is formed from it, so dL/dc_t is the total derivative) and h_t.

Gate-bias inits (``b`` below is the total bias b_ih + b_hh of a gate block):
  * ``forget_bias``: b_f = constant (Gers et al. 2000; Jozefowicz et al. 2015 use 1);
  * ``chrono``: b_f ~ log U[1, Tmax - 1], b_i = -b_f (Tallec & Ollivier 2018,
    sec. 4), Tmax = ``chrono_tmax``, the longest dependency expected.

``layer_norm`` (Ba, Kiros & Hinton 2016, supplementary, layer-normalized LSTM):
    (i, f, g, o) = LN(W_hh h_{t-1}) + LN(W_ih x_t) + b,   h_t = o * tanh(LN(c_t)),
each LN per gate block with its own gain; no fused kernel, so both paths are
the step path. c_t is tapped before its norm.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check, is_number
from .base import RecurrentLayer, State, TapFn, matmul, no_tap, vector
from .init import chrono_bias, init_matrix, init_recurrent, set_gate_bias
from .members import lstm_members
from .norm import GateNorm, check_layer_norm

GATE_I, GATE_F = 0, 1  # torch's gate order i, f, g, o


class LSTMLayer(RecurrentLayer):
    state_names = ("h", "c")
    population_unsupported = None  # the step path takes stacked weights (seqlab.population)

    def __init__(self, input_size: int, hidden_size: int, init: str = "default",
                 recurrent_gain: float = 1.0, forget_bias: float | None = None,
                 chrono: bool = False, chrono_tmax: float | None = None, layer_norm: bool = False):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        init_recurrent(self.lstm.weight_hh_l0, init, recurrent_gain)
        init_matrix(self.lstm.weight_ih_l0, init, block_rows=H)  # each gate's W_i*, gain 1 (identity: torch's)
        check(isinstance(chrono, bool), "model.layer.chrono", chrono, "must be true or false")
        check(forget_bias is None or is_number(forget_bias), "model.layer.forget_bias", forget_bias,
              "must be a number or null")
        check(not (chrono and forget_bias is not None), "model.layer.forget_bias", forget_bias,
              "must be null when model.layer.chrono is true (chrono sets the forget bias)")
        b_ih, b_hh = self.lstm.bias_ih_l0, self.lstm.bias_hh_l0
        if forget_bias is not None:
            set_gate_bias(b_ih, b_hh, GATE_F, H, forget_bias)
        if chrono:
            b_f = chrono_bias(H, chrono_tmax)  # (H,)
            set_gate_bias(b_ih, b_hh, GATE_F, H, b_f)
            set_gate_bias(b_ih, b_hh, GATE_I, H, -b_f)
        if check_layer_norm(layer_norm):
            self.norm_x, self.norm_h, self.norm_c = GateNorm(4, H), GateNorm(4, H), GateNorm(1, H)
        self.layer_norm = layer_norm

    def population_support(self) -> str | None:
        return "layer_norm: its norms have no member dimension" if self.layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_norm:
            return self.forward_steps(x)
        return self.lstm(x)[0]  # (B, T, H)

    def forward_members(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        """A population's forward: the recurrence as one autograd node (``seqlab.models.members``)."""
        m = self.lstm
        return lstm_members(x, m.weight_ih_l0, m.bias_ih_l0, m.weight_hh_l0, m.bias_hh_l0, steps)  # (M, B, T, H)

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        m = self.lstm
        wx = matmul(x, m.weight_ih_l0)  # (B, T, 4H)
        if self.layer_norm:
            wx = self.norm_x(wx)
        return wx + vector(m.bias_ih_l0, wx) + vector(m.bias_hh_l0, wx)  # (B, T, 4H)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        h, c = state
        wh = matmul(h, self.lstm.weight_hh_l0)  # (B, 4H)
        if self.layer_norm:
            wh = self.norm_h(wh)
        i, f, g, o = (u_t + wh).chunk(4, dim=-1)  # each (B, H)
        c = tap("c", torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g))
        h = tap("h", torch.sigmoid(o) * torch.tanh(self.norm_c(c) if self.layer_norm else c))
        return h, c
