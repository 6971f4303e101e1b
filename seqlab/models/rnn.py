"""Vanilla (Elman) RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

Parameters are those of ``torch.nn.RNN`` (one layer), so the fused kernel is
the fast path for tanh and relu; other activations (sigmoid, identity = a
linear RNN) run the step path for both, over the same parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_choice
from .base import RecurrentLayer, State, TapFn, no_tap
from .init import init_recurrent

ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda z: z,
}
FUSED = ("tanh", "relu")  # nonlinearities torch.nn.RNN implements


class RNNLayer(RecurrentLayer):
    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh",
                 init: str = "default", recurrent_gain: float = 1.0):
        super().__init__(input_size, hidden_size)
        check_choice("model.layer.activation", activation, ACTIVATIONS)
        self.activation = activation
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True,
                          nonlinearity=activation if activation in FUSED else "tanh")
        init_recurrent(self.rnn.weight_hh_l0, init, recurrent_gain)
        self.f = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation in FUSED:
            return self.rnn(x)[0]  # (B, T, H)
        return self.forward_steps(x)

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        r = self.rnn
        return x @ r.weight_ih_l0.T + r.bias_ih_l0 + r.bias_hh_l0  # (B, T, H)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        (h,) = state
        return (tap("h", self.f(u_t + h @ self.rnn.weight_hh_l0.T)),)
