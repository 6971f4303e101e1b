"""Element-wise nonlinearities the cells can use, and what the gradient through them is.

The derivative bounds are what the vanishing-gradient argument turns on
(LITERATURE.md, "The gradient through time": dh_k/dh_{k-1} = diag(f'(.)) W):
tanh' <= 1, sigmoid' <= 1/4, relu' and leaky_relu' in {slope, 1}, gelu' in
about [-0.13, 1.13], identity' = 1 (a linear RNN).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Activation = Callable[[torch.Tensor], torch.Tensor]

LEAKY_SLOPE = 0.01  # torch's default negative slope for leaky_relu

ACTIVATIONS: dict[str, Activation] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, LEAKY_SLOPE),
    "gelu": F.gelu,
    "identity": lambda z: z,
}
