"""GRU (Cho et al. 2014) in torch's formulation and parameter layout (gates r, z, n):

    r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

The fast path is ``torch.nn.GRU`` (one layer); the step path taps h_t.

Update-gate bias inits (``b_z`` is the total bias b_iz + b_hz). In torch's
convention z is the *keep* gate, so a large b_z means long memory:
  * ``update_bias``: b_z = constant;
  * ``chrono``: b_z ~ log U[1, Tmax - 1], our transcription of Tallec &
    Ollivier 2018's chrono rule to the GRU: the keep time 1 / (1 - z) ~ 1 + e^{b_z}
    spans [2, Tmax]; 1 - z already plays the input gate, so there is no b_i to set.

``layer_norm`` (after Ba, Kiros & Hinton 2016): each gate block of W_ih x and
of W_hh h is normalized (own gains) before its bias is added, the b_hn term
staying inside r * (.) as in torch; no fused kernel, so both paths are the step path.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check, is_number
from .base import RecurrentLayer, State, TapFn, matmul, no_tap, vector
from .init import chrono_bias, init_matrix, init_recurrent, set_gate_bias
from .members import gru_members
from .norm import GateNorm, check_layer_norm

GATE_Z = 1  # torch's gate order r, z, n


class GRULayer(RecurrentLayer):
    population_unsupported = None  # the step path takes stacked weights (seqlab.population)
    def __init__(self, input_size: int, hidden_size: int, init: str = "default",
                 recurrent_gain: float = 1.0, update_bias: float | None = None,
                 chrono: bool = False, chrono_tmax: float | None = None, layer_norm: bool = False):
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        init_recurrent(self.gru.weight_hh_l0, init, recurrent_gain)
        init_matrix(self.gru.weight_ih_l0, init, block_rows=H)  # each gate's W_i*, gain 1 (identity: torch's)
        check(isinstance(chrono, bool), "model.layer.chrono", chrono, "must be true or false")
        check(update_bias is None or is_number(update_bias), "model.layer.update_bias", update_bias,
              "must be a number or null")
        check(not (chrono and update_bias is not None), "model.layer.update_bias", update_bias,
              "must be null when model.layer.chrono is true (chrono sets the update bias)")
        if update_bias is not None:
            set_gate_bias(self.gru.bias_ih_l0, self.gru.bias_hh_l0, GATE_Z, H, update_bias)
        if chrono:
            set_gate_bias(self.gru.bias_ih_l0, self.gru.bias_hh_l0, GATE_Z, H, chrono_bias(H, chrono_tmax))
        if check_layer_norm(layer_norm):
            self.norm_x, self.norm_h = GateNorm(3, H), GateNorm(3, H)
        self.layer_norm = layer_norm

    def population_support(self) -> str | None:
        return "layer_norm: its norms have no member dimension" if self.layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_norm:
            return self.forward_steps(x)
        return self.gru(x)[0]  # (B, T, H)

    def forward_members(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        """A population's forward: the recurrence as one autograd node (``seqlab.models.members``)."""
        m = self.gru
        return gru_members(x, m.weight_ih_l0, m.bias_ih_l0, m.weight_hh_l0, m.bias_hh_l0, steps)  # (M, B, T, H)

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        m = self.gru
        wx = matmul(x, m.weight_ih_l0)  # (B, T, 3H)
        if self.layer_norm:
            wx = self.norm_x(wx)
        return wx + vector(m.bias_ih_l0, wx)  # (B, T, 3H); b_hh stays inside r * (.)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        (h,) = state
        wh = matmul(h, self.gru.weight_hh_l0)  # (B, 3H)
        if self.layer_norm:
            wh = self.norm_h(wh)
        ur, uz, un = u_t.chunk(3, dim=-1)  # each (B, H)
        wr, wz, wn = (wh + vector(self.gru.bias_hh_l0, wh)).chunk(3, dim=-1)
        r, z = torch.sigmoid(ur + wr), torch.sigmoid(uz + wz)
        n = torch.tanh(un + r * wn)
        return (tap("h", (1 - z) * n + z * h),)
