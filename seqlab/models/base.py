"""The one recurrent-layer interface that serves both training and the probe.

Glossary: B batch, T time, D input features, H hidden units, G = gates * H.

Every layer has two paths over the very same parameters:
  * ``forward(x)``: the fast path (a fused torch kernel where one exists:
    cuDNN on GPU, the fused CPU kernel otherwise);
  * ``forward_steps(x, taps)``: an explicit loop over time that adds a zero
    "tap" tensor to every state it computes (h_t, and c_t for an LSTM).
    Differentiating a loss with respect to the taps gives the total derivative
    dL/dh_t at every step in one backward pass (LITERATURE.md, "The gradient
    through time"); a fused kernel only exposes the direct part.
A test holds the two paths equal for every layer.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import torch
from torch import nn

Taps = dict[str, torch.Tensor]  # state name -> (B, T, H) zeros that require grad


TapFn = Callable[[str, torch.Tensor], torch.Tensor]  # (state name, state) -> state + tap
State = tuple[torch.Tensor, ...]  # one (B, H) tensor per name in state_names; h first


def no_tap(name: str, state: torch.Tensor) -> torch.Tensor:
    return state


class RecurrentLayer(nn.Module):
    """One recurrent layer mapping (B, T, D) -> (B, T, H), starting from a zero state.

    A subclass implements ``input_drive`` (the part of the pre-activations that
    does not depend on the state, for all t at once) and ``step`` (one step of
    the recurrence, calling ``tap(name, s)`` on every state it produces, at the
    point where that state is formed). It may override ``forward`` with a
    fused kernel.
    """

    state_names: ClassVar[tuple[str, ...]] = ("h",)
    # True: ``forward(x, steps=...)`` returns the output at those steps only, (B, L, H), and the sequence
    # model asks for just the loss steps from its last layer (no stack of all T outputs to read one)
    outputs_at_steps: ClassVar[bool] = False

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, G): input-dependent pre-activations, one matmul for all t."""
        raise NotImplementedError

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        """One step: drive u_t (B, G) and previous state -> next state."""
        raise NotImplementedError

    def state_size(self, name: str) -> int:
        """Width of state ``name`` (its taps are (B, T, this)): H, unless a layer's state is wider
        than its output (a selective SSM keeps N numbers per output channel)."""
        return self.hidden_size

    def initial_state(self, x: torch.Tensor) -> State:
        return tuple(x.new_zeros(x.shape[0], self.state_size(name)) for name in self.state_names)  # (B, S)

    def forward(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        """Fast path. Default: the step path (for layers with no fused kernel). ``steps`` is passed
        only to layers that set ``outputs_at_steps``."""
        return self.forward_steps(x) if steps is None else self.forward_steps(x, steps=steps)

    def forward_steps(self, x: torch.Tensor, taps: Taps | None = None,
                      steps: torch.Tensor | None = None) -> torch.Tensor:
        """Step path: unrolled recurrence; ``taps[name][:, t]`` is added to state ``name`` at t.
        ``steps`` (L,) increasing: keep the output at those steps only, (B, L, H)."""
        # unbind, not u[:, t]: the backward of T slices would write T full-size
        # zero gradients (O(T^2) memory traffic); unbind's backward is one stack.
        drive = self.input_drive(x).unbind(1)  # T x (B, G)
        tap_steps = None if taps is None else {k: v.unbind(1) for k, v in taps.items()}  # T x (B, H)
        state = self.initial_state(x)
        keep = None if steps is None else set(steps.tolist())
        out = []
        for t, u_t in enumerate(drive):
            tap_t = no_tap if tap_steps is None else (lambda name, s, t=t: s + tap_steps[name][t])
            state = self.step_at(t, u_t, state, tap_t)
            if keep is None or t in keep:
                out.append(state[0])
        return torch.stack(out, dim=1)  # (B, T, H), or (B, L, H)

    def step_at(self, t: int, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        """Step ``t`` of the step path. Default: ``step``, the same map at every t; a layer whose
        step depends on t (per-time-step statistics: recurrent batch norm) overrides this."""
        return self.step(u_t, state, tap)
