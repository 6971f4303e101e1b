"""A feedforward layer behind the recurrent-layer interface, so an MLP is a ``SequenceModel``.

Glossary: B batch, T time, D input features, H hidden units.

Depth and time are one grid (DESIGN.md): a state sits at (layer l, step t), and a
feedforward net is the case T = 1. One layer of an MLP is

    h_l = f(N(W_l x_l + b_l))          (B, T, H); N = batch norm, layer norm or nothing

(Linear -> norm -> activation, the order of Ioffe & Szegedy 2015, sec. 3.2), and
``SequenceModel`` stacks L of them with a linear readout: with ``num_layers=3`` and
``hidden_size=128`` on a 100-input, 10-class task it is the classic demonstration's
net 100 -> 128 -> 128 -> 128 -> 10, with the same parameter order (and so the same
draws from the global RNG) as ``nn.Sequential(Linear, f, Linear, f, Linear, f, Linear)``.

As a recurrent layer it has one state, ``h``, and a ``step`` that ignores the
previous state: nothing flows along time, so on a sequence task it is the same
net applied to every step independently (a memoryless model; the gradient at any
lag k > 0 is exactly 0). The tap of the probe's step path is added to h_l, the
layer's post-activation output, *before* ``SequenceModel`` adds a residual skip
(x_{l+1} = x_l + h_l for l >= 1), so dL/dtap_l is the total derivative dL/dh_l
through every layer above: the depth probe reads the gradient against depth from
these taps exactly as it reads it against lag from a recurrent layer's.

The norm is applied in ``input_drive`` to all (B, T) positions at once, so batch
norm's statistics are per feature over the B*T rows in both paths, and the fast
path (``forward``) equals the step path exactly. Batch norm (``norm=batch``,
``torch.nn.BatchNorm1d``): batch statistics in train mode, running statistics in
eval mode; it needs at least 2 rows per batch in train mode. With a norm the
linear map has no bias (the norm's own shift beta replaces it, Ioffe & Szegedy
sec. 3.2).

Init (``init``, ``gain``): the scheme is applied to W_l of every layer (see
``seqlab.models.init``); the biases keep torch's default; the readout is
``SequenceModel``'s (``readout_init``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_choice
from .activations import ACTIVATIONS, Activation
from .base import RecurrentLayer, State, TapFn, linear, no_tap
from .init import MATRIX_INITS, init_matrix

NORMS = ("none", "batch", "layer")


def make_norm(kind: str, features: int, key: str = "model.layer.norm") -> nn.Module | None:
    """The norm module over the last dim of a (..., F) tensor: None, ``RowBatchNorm`` or LayerNorm."""
    check_choice(key, kind, NORMS)
    if kind == "batch":
        return RowBatchNorm(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    return None


class RowBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over every leading position of a (..., F) tensor: statistics per feature
    over all B*T rows (the sequence-wise normalization of Laurent et al. 2016 for a sequence).

    A single row has no batch statistics: in train mode it is normalized with the running
    ones and tracks nothing. Training never gets there (batches < 2 are refused before a
    run); the probe's one-sequence Lyapunov loop does, and then sees the inference-mode map.
    """

    batch_statistics = True  # needs >= 2 rows in train mode (``SequenceModel.min_batch_size``)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        rows = z.reshape(-1, z.shape[-1])  # (B*T, F)
        if self.training and rows.shape[0] == 1:
            return F.batch_norm(rows, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                                self.eps).view(z.shape)
        return super().forward(rows).view(z.shape)


class FeedforwardLayer(RecurrentLayer):
    """h = f(N(W x + b)) at every step, no state carried: (B, T, D) -> (B, T, H)."""

    population_unsupported = None  # W and b may be stacked (seqlab.population), with norm=none

    def __init__(self, input_size: int, hidden_size: int, activation: str = "relu", init: str = "default",
                 gain: float = 1.0, norm: str = "none"):
        super().__init__(input_size, hidden_size)
        check_choice("model.layer.activation", activation, ACTIVATIONS)
        check_choice("model.layer.init", init, MATRIX_INITS)
        self.activation, self.f = activation, ACTIVATIONS[activation]
        self.norm = make_norm(norm, hidden_size)
        self.linear = nn.Linear(input_size, hidden_size, bias=self.norm is None)  # W, b
        init_matrix(self.linear.weight, init, gain)

    def population_support(self) -> str | None:
        return f"norm={type(self.norm).__name__}: its statistics have no member dimension" if self.norm else None

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, H): the normalized pre-activations N(W x + b) of every position."""
        z = linear(x, self.linear.weight, self.linear.bias)  # (B, T, H)
        return z if self.norm is None else self.norm(z)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        """h_t = f(u_t), tapped after the activation; the previous state is not read."""
        return (tap("h", self.f(u_t)),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path: all positions at once (no loop over T)."""
        return self.f(self.input_drive(x))  # (B, T, H)

    def forward_members(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        """A population's forward: the fast path, which takes stacked weights as it is (``linear``)."""
        x = x if steps is None else x.index_select(-2, steps.to(x.device))  # no state: the steps alone
        return self.forward(x)  # (M, B, T or L, H)
