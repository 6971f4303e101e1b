"""Vanilla (Elman) RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

Parameters are those of ``torch.nn.RNN`` (one layer), so the fused kernel is
the fast path for tanh and relu; the other activations (sigmoid, leaky_relu,
gelu, identity = a linear RNN) run the step path for both, over the same
parameters.

With ``layer_norm`` (Ba, Kiros & Hinton 2016, sec. 3.1, the layer-normalized
RNN h_t = f(g / sigma_t * (a_t - mu_t) + b) with a_t = W_hh h_{t-1} + W_ih x_t),
the summed input a_t is normalized over the H units before the biases and f;
no fused kernel does that, so both paths are the step path.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_choice
from .activations import ACTIVATIONS
from .base import RecurrentLayer, State, TapFn, matmul, no_tap, vector
from .init import init_matrix, init_recurrent
from .members import RNN_ACTIVATIONS, rnn_members
from .norm import GateNorm, check_layer_norm

FUSED = ("tanh", "relu")  # nonlinearities torch.nn.RNN implements


class RNNLayer(RecurrentLayer):
    population_unsupported = None  # the step path takes stacked weights (seqlab.population)
    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh",
                 init: str = "default", recurrent_gain: float = 1.0, layer_norm: bool = False):
        super().__init__(input_size, hidden_size)
        check_choice("model.layer.activation", activation, ACTIVATIONS)
        self.activation = activation
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True,
                          nonlinearity=activation if activation in FUSED else "tanh")
        init_recurrent(self.rnn.weight_hh_l0, init, recurrent_gain)
        init_matrix(self.rnn.weight_ih_l0, init)  # W_ih: same scheme, gain 1 (identity: torch's)
        self.f = ACTIVATIONS[activation]
        self.norm = GateNorm(1, hidden_size) if check_layer_norm(layer_norm) else None

    def population_support(self) -> str | None:
        return "layer_norm: its norm has no member dimension" if self.norm is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation in FUSED and self.norm is None:
            return self.rnn(x)[0]  # (B, T, H)
        return self.forward_steps(x)

    def forward_members(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        """A population's forward: the recurrence as one autograd node (``seqlab.models.members``) for
        the activations whose derivative its output gives; the step path for leaky_relu and gelu."""
        if self.norm is not None or self.activation not in RNN_ACTIVATIONS:
            return self.forward_steps(x, steps=steps)
        r = self.rnn
        return rnn_members(x, r.weight_ih_l0, r.bias_ih_l0, r.weight_hh_l0, r.bias_hh_l0, self.activation,
                           steps)  # (M, B, T, H)

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        r = self.rnn
        wx = matmul(x, r.weight_ih_l0)  # (B, T, H)
        if self.norm is not None:
            return wx  # the biases come after the norm
        return wx + vector(r.bias_ih_l0, wx) + vector(r.bias_hh_l0, wx)  # (B, T, H)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        (h,) = state
        a = u_t + matmul(h, self.rnn.weight_hh_l0)  # (B, H)
        if self.norm is not None:
            a = self.norm(a) + self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0
        return (tap("h", self.f(a)),)
