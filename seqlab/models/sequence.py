"""The sequence model every task trains: stacked recurrent layers + a linear readout.

Glossary: B batch, T time, D input features, H hidden units, O outputs.
The readout is applied at every step; the task picks the steps that carry loss.

With ``residual``, every layer after the first adds its input to its output
(He et al. 2016's identity skip, between stacked recurrent layers of equal width H):

    x_1 = layer_0(x_0)                       (D -> H: no skip, the widths differ)
    x_{l+1} = x_l + layer_l(x_l),  l >= 1     (B, T, H)

so the readout sees x_L. The skip is across depth at the same time step, not
across time; the probe's taps still sit on each layer's own states (h_t of
layer l, before the skip is added). One layer: no effect.

With ``between`` (``batch`` or ``layer``), every layer after the first reads a
normalized copy of what the layer below handed up, N_l over the H features:

    x_{l+1} = layer_l(N_l(x_l))            or, with residual, x_l + layer_l(N_l(x_l))

(a pre-norm residual block). ``batch`` is batch normalization with statistics per
feature over all B*T positions of the batch (the sequence-wise BN between stacked
recurrent layers of Laurent et al. 2016, "Batch Normalized Recurrent Neural
Networks"; running statistics in eval mode), ``layer`` is layer normalization
over the H features (Ba et al. 2016). The norm sits outside the layers, so the
fast and the step path apply the very same one. One layer: no effect.

``readout_init`` re-initializes the readout's weight with a scheme of
``seqlab.models.init`` (``default`` = torch's, bit-for-bit); its bias keeps torch's.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..checks import check, check_choice, check_int
from .base import RecurrentLayer, Taps, linear
from .feedforward import NORMS, make_norm
from .init import MATRIX_INITS, init_matrix

PATHS = ("fused", "step", "members")  # members: a population's stacked weights (seqlab.population)


class SequenceModel(nn.Module):
    """``layer`` is a factory ``(input_size, hidden_size) -> RecurrentLayer`` (a Hydra partial)."""

    def __init__(self, layer: Callable[..., RecurrentLayer], input_size: int, output_size: int,
                 hidden_size: int = 128, num_layers: int = 1, residual: bool = False, between: str = "none",
                 readout_init: str = "default"):
        super().__init__()
        check_int("model.hidden_size", hidden_size, 1)
        check_int("model.num_layers", num_layers, 1)
        check(isinstance(residual, bool), "model.residual", residual, "must be true or false")
        self.residual = residual
        sizes = [input_size] + [hidden_size] * num_layers
        self.layers = nn.ModuleList(layer(input_size=d, hidden_size=hidden_size) for d in sizes[:-1])
        check_choice("model.between", between, NORMS)
        # between[l - 1] normalizes the input of layer l >= 1 (empty for "none")
        norms = [make_norm(between, hidden_size, "model.between") for _ in range(num_layers - 1)]
        self.between = nn.ModuleList(n for n in norms if n is not None)
        self.readout = nn.Linear(hidden_size, output_size)
        check_choice("model.readout_init", readout_init, MATRIX_INITS)
        init_matrix(self.readout.weight, readout_init)

    @property
    def min_batch_size(self) -> int:
        """Smallest batch this model can train on: 2 when a module uses batch statistics."""
        return 2 if any(getattr(m, "batch_statistics", False) for m in self.modules()) else 1

    def population_support(self) -> str | None:
        """None when this model can train as a member of a population (seqlab.population), else why
        not, in one line: its step path must take stacked weights with a leading member dimension."""
        if len(self.between):
            return f"between={type(self.between[0]).__name__}: its norm has no member dimension"
        for layer in self.layers:
            why = layer.population_support()
            if why is not None:
                return f"{type(layer).__name__}: {why}"
        return None

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.layers[0].state_names

    def make_taps(self, batch_size: int, seq_len: int, device=None) -> list[Taps]:
        """Zero taps, one dict per layer, each (B, T, S) requiring grad (S = the state's width, H mostly)."""
        return [{name: torch.zeros(batch_size, seq_len, layer.state_size(name), device=device, requires_grad=True)
                 for name in layer.state_names} for layer in self.layers]

    def forward(self, x: torch.Tensor, path: str = "fused", taps: list[Taps] | None = None,
                steps: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) -> (B, T, O). ``path="step"`` unrolls in time; ``taps`` implies it.
        ``path="members"``: a population's forward (stacked weights, (M, B, T, D) -> (M, B, T, O)),
        each layer's ``forward_members``.

        ``steps`` (L,) distinct time indices: the readout runs at those steps only and the other
        steps of the result are zero. The training loop passes the task's loss steps: with one
        loss step (adding, delayed recall) that saves a (B*T, H) x (H, O) product and its backward,
        ~10% of a tanh-RNN training step at T=200, H=128 on CPU (benchmarks/performance.py).
        """
        check_choice("path", path, PATHS)
        T, last = x.shape[-2], len(self.layers) - 1
        few = steps is not None and len(steps) < T and taps is None and path != "step"
        sliced = False  # x holds the loss steps only: (B, L, H)
        for i, layer in enumerate(self.layers):
            z = self.between[i - 1](x) if i > 0 and len(self.between) else x  # (B, T, H) what layer i reads
            if taps is not None or path == "step":
                y = layer.forward_steps(z, None if taps is None else taps[i])  # (B, T, H)
            elif path == "members":  # a population: the last layer hands back only the loss steps
                at = steps if i == last and few else None
                y = layer.forward_members(z, steps=at)  # (M, B, T, H), or (M, B, L, H)
                if at is not None:
                    sliced = True
                    x = x.index_select(-2, steps.to(x.device)) if self.residual and i > 0 else x
            elif i == last and few and layer.outputs_at_steps:
                # a layer that can hand back only the loss steps skips stacking and reading out the rest
                # (the selective SSM's y_t = C_t h_t at every t; benchmarks/scan_paths.py)
                y, sliced = layer(z, steps=steps), True  # (B, L, H)
                x = x[:, steps.to(x.device)] if self.residual and i > 0 else x
            else:
                y = layer(z)  # (B, T, H)
            x = x + y if self.residual and i > 0 else y
        readout = self.readout  # a population's readout weight is (M, O, H): ``linear`` maps member by member
        if steps is None or len(steps) == T:
            return linear(x, readout.weight, readout.bias)  # (B, T, O)
        steps = steps.to(x.device)
        y = linear(x if sliced else x[..., steps, :], readout.weight, readout.bias)  # (B, L, O)
        return y.new_zeros(*x.shape[:-2], T, y.shape[-1]).index_copy(-2, steps, y)  # (B, T, O)

    @torch.no_grad()
    def project_(self) -> None:
        """Put every parameter back inside its layer's hard constraint (e.g. IndRNN's |u| bound).

        ``build_optimizer`` registers this to run after every optimizer step
        (projected gradient descent); layers without a constraint do nothing.
        """
        for layer in self.layers:
            if hasattr(layer, "project_"):
                layer.project_()
