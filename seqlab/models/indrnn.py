"""IndRNN: Li, Li, Cook, Zhu & Gao 2018, "Independently Recurrent Neural Network
(IndRNN): Building A Longer and Deeper RNN", eq. (2):

    h_t = f(W x_t + u * h_{t-1} + b)          (* element-wise; u is (H,), not (H, H))

Each unit is its own one-dimensional recurrence, so the gradient through time
is a product of scalars per unit (sec. 3.1): dh_T/dh_t = prod_k f'(z_k) u,
which for ReLU is u^(T-t) while the unit is active. Bounding |u| <= gamma^(1/T)
keeps that factor <= gamma over the whole sequence (sec. 3.1; the reference
code for the adding problem uses gamma = 2, i.e. |u| <= 2^(1/T)).

Init: u ~ U[u_min, gamma^(1/T)] (u_min = 0 as in the public reimplementations of
the adding experiment; unverified against the paper's own code), b torch's
nn.Linear default, W torch's default or the scheme ``init`` names (xavier, kaiming,
orthogonal: ``seqlab.models.init``). With ``constrain``, ``project_`` clips u into
[-gamma^(1/T), gamma^(1/T)]; the lab's optimizer runs it after every update
(``seqlab.config.build_optimizer``), i.e. projected gradient descent, as the
paper clips the recurrent weights after each step.

No separate fast path: the step path serves both. A hand-written autograd
function for the element-wise recurrence (time loop outside autograd, reverse
loop for the backward, saving only the outputs) was tried and measured no
faster on CPU (T=200, B=64, H=128, one thread: ~20-25 ms vs ~19-20 ms per
forward+backward), because per-step operator overhead, not arithmetic,
dominates at these sizes; it was not worth its hand-written backward.
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check, check_choice, is_number
from .activations import ACTIVATIONS, Activation
from .base import RecurrentLayer, State, TapFn, linear, no_tap, vector
from .init import MATRIX_INITS, init_matrix


class IndRNNLayer(RecurrentLayer):
    population_unsupported = None  # the step path takes stacked weights (seqlab.population)

    def __init__(self, input_size: int, hidden_size: int, activation: str = "relu",
                 max_gain: float = 2.0, tmax: int | float | None = None, constrain: bool = True,
                 u_min: float = 0.0, init: str = "default"):
        super().__init__(input_size, hidden_size)
        check_choice("model.layer.activation", activation, ACTIVATIONS)
        check(is_number(max_gain) and max_gain > 0, "model.layer.max_gain", max_gain, "must be a number > 0")
        check(is_number(tmax) and tmax >= 1, "model.layer.tmax", tmax, "must be a number >= 1 (the T of |u| <= max_gain^(1/T))")
        check(isinstance(constrain, bool), "model.layer.constrain", constrain, "must be true or false")
        self.bound = float(max_gain) ** (1.0 / tmax)  # gamma^(1/T)
        check(is_number(u_min) and -self.bound <= u_min < self.bound, "model.layer.u_min", u_min,
              f"must be a number in [-bound, bound) with bound = max_gain^(1/tmax) = {self.bound:.6g}")
        self.activation, self.constrain = activation, constrain
        self.f: Activation = ACTIVATIONS[activation]
        self.input = nn.Linear(input_size, hidden_size)  # W, b
        check_choice("model.layer.init", init, MATRIX_INITS)
        init_matrix(self.input.weight, init)  # W only: u has its own init, b keeps torch's
        self.u = nn.Parameter(torch.empty(hidden_size).uniform_(u_min, self.bound))  # (H,)

    @torch.no_grad()
    def project_(self) -> None:
        """Clip u into [-gamma^(1/T), gamma^(1/T)] (only when ``constrain``)."""
        if self.constrain:
            self.u.clamp_(-self.bound, self.bound)

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.input.weight, self.input.bias)  # (B, T, H)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        (h,) = state
        return (tap("h", self.f(u_t + vector(self.u, h) * h)),)
