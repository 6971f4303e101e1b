"""Orthogonal RNN in the style of expRNN: Lezcano-Casado & Martinez-Rubio 2019,
"Cheap Orthogonal Constraints in Neural Networks: A Simple Parametrization of
the Orthogonal and Unitary Group" (ICML), sec. 3-4:

    h_t = sigma(W_in x_t + Q h_{t-1}),   Q = exp(A),   A = -A^T (skew-symmetric)

Q is kept exactly orthogonal by ``torch.nn.utils.parametrizations.orthogonal``
with ``orthogonal_map="matrix_exp"`` and ``use_trivialization=False``: the
trained parameter X gives A = tril(X) - tril(X)^T and Q = matrix_exp(A), so every
optimizer step moves A and Q stays in SO(H) (X's strict upper triangle is
unused, as torch lays it out). With Q orthogonal, the recurrent factor of the
gradient, dh_t/dh_{t-1} = diag(sigma'(.)) Q, has singular values sigma'(.) only:
the recurrence itself neither shrinks nor grows the gradient.

sigma is modReLU (Arjovsky, Shah & Bengio 2016, real case), the paper's choice,
  modrelu(z) = sign(z) * relu(|z| + b),  b learned per unit, init U[-0.01, 0.01],
or tanh (then W_in has a bias). Input weights W_in: He-normal (fan_in, ReLU gain) by
default, the paper's; ``input_init`` picks another scheme of ``seqlab.models.init``.

Inits of A (2x2 blocks [[0, s], [-s, 0]] on the diagonal, as in the paper's code):
  henaff    s ~ U[-pi, pi]                  (Henaff, Szlam & LeCun 2016)
  cayley    s = -sqrt((1 - cos t) / (1 + cos t)), t ~ U[0, pi/2]  (Helfrich et al. 2018)
  identity  A = 0, Q = I

No fused kernel takes a parametrized matrix, so the step path serves both
paths; ``forward_steps`` computes Q once per call (``parametrize.cached``), not
once per step. A caller that runs ``step`` directly in a loop should do the same.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from ..checks import check_choice
from .base import RecurrentLayer, State, TapFn, Taps, linear, matmul, no_tap, vector
from .init import MATRIX_INITS, init_matrix

ORTHO_ACTIVATIONS = ("modrelu", "tanh")
ORTHO_INITS = ("henaff", "cayley", "identity")


class ModReLU(nn.Module):
    """modrelu(z) = sign(z) * relu(|z| + b), element-wise with a learned (H,) bias b."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-0.01, 0.01))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sign(z) * torch.relu(z.abs() + vector(self.bias, z))  # a population's bias: (M, H)


def skew_init(hidden_size: int, scheme: str) -> torch.Tensor:
    """(H, H) skew-symmetric A with 2x2 rotation generators on the diagonal."""
    check_choice("model.layer.init", scheme, ORTHO_INITS)
    n = hidden_size // 2
    if scheme == "henaff":
        s = torch.empty(n).uniform_(-math.pi, math.pi)
    elif scheme == "cayley":
        t = torch.empty(n).uniform_(0.0, math.pi / 2)
        s = -torch.sqrt((1 - torch.cos(t)) / (1 + torch.cos(t)))
    else:
        s = torch.zeros(n)
    upper = torch.zeros(max(hidden_size - 1, 0))
    upper[0::2] = s  # positions (0,1), (2,3), ...
    A = torch.diag(upper, diagonal=1)  # (H, H)
    return A - A.T


class OrthogonalRNNLayer(RecurrentLayer):
    # a population stacks the parametrization's X (recurrent.parametrizations.weight.original): torch's
    # orthogonal map (tril, skew, matrix_exp) takes the leading member dim, so each member's Q is exp(A_m)
    population_unsupported = None

    def __init__(self, input_size: int, hidden_size: int, activation: str = "modrelu",
                 init: str = "henaff", input_init: str = "kaiming"):
        super().__init__(input_size, hidden_size)
        check_choice("model.layer.activation", activation, ORTHO_ACTIVATIONS)
        A = skew_init(hidden_size, init)  # checks ``init``
        self.input = nn.Linear(input_size, hidden_size, bias=activation == "tanh")
        check_choice("model.layer.input_init", input_init, MATRIX_INITS)
        init_matrix(self.input.weight, input_init)  # the paper's: kaiming (He normal, fan_in)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)
        parametrizations.orthogonal(self.recurrent, "weight", orthogonal_map="matrix_exp",
                                    use_trivialization=False)
        with torch.no_grad():
            self.recurrent.parametrizations.weight.original.copy_(A)  # tril(A) - tril(A)^T = A
        self.f = ModReLU(hidden_size) if activation == "modrelu" else torch.tanh

    @property
    def Q(self) -> torch.Tensor:
        """(H, H) the orthogonal recurrent matrix exp(A) (a population's: (M, H, H))."""
        return self.recurrent.weight

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.input.weight, self.input.bias)  # (B, T, H)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        (h,) = state
        return (tap("h", self.f(u_t + matmul(h, self.Q))),)

    def forward_steps(self, x: torch.Tensor, taps: Taps | None = None,
                      steps: torch.Tensor | None = None) -> torch.Tensor:
        with parametrize.cached():  # one matrix_exp per call, shared by all T steps
            return super().forward_steps(x, taps, steps)
