"""Layer normalization inside a recurrence (Ba, Kiros & Hinton 2016, "Layer Normalization").

Glossary: G gate blocks of H units each.

``GateNorm`` normalizes each (H,) gate block of a (..., G*H) pre-activation to
zero mean and unit variance over its H units and multiplies by a learned gain
(initialized to 1). It has no shift of its own: the cell adds its biases after
the norm, so the bias inits (forget bias, chrono) keep their meaning.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check


def check_layer_norm(value) -> bool:
    check(isinstance(value, bool), "model.layer.layer_norm", value, "must be true or false")
    return value


class GateNorm(nn.Module):
    def __init__(self, gates: int, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.gates, self.hidden_size, self.eps = gates, hidden_size, eps
        self.weight = nn.Parameter(torch.ones(gates * hidden_size))  # the gain g of Ba et al.

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(..., G*H) -> (..., G*H), each gate block normalized over its H units."""
        blocks = z.unflatten(-1, (self.gates, self.hidden_size))  # (..., G, H)
        return F.layer_norm(blocks, (self.hidden_size,), eps=self.eps).flatten(-2) * self.weight
