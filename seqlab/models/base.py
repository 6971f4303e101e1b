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

# A population (seqlab.population): M same-shaped models trained as one. Their parameters arrive
# stacked along a leading member dimension M (a weight (M, G, D), a bias (M, G)) and every tensor the
# step path computes gains that leading dimension: (M, B, T, D) in, (M, B, H) states. A layer's step
# path works for both when it reads its weights through ``matmul`` and its vectors through ``vector``
# and indexes time and features from the end (time is dim -2, features -1); for one model (2-D
# weights) these are exactly the ops it ran before.


TapFn = Callable[[str, torch.Tensor], torch.Tensor]  # (state name, state) -> state + tap
State = tuple[torch.Tensor, ...]  # one (B, H) tensor per name in state_names; h first


def no_tap(name: str, state: torch.Tensor) -> torch.Tensor:
    return state


def matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T``: one model, weight (G, D) and x (..., D); a population, weight (M, G, D) and
    x (M, ..., D), each member's rows through its own weight (one batched matmul)."""
    if weight.dim() == 2:
        return x @ weight.T
    flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (M, N, D)
    return (flat @ weight.mT).view(*x.shape[:-1], weight.shape[-2])  # (M, ..., G)


def vector(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A bias or gain (G,) as it adds to ``like`` (..., G); a population's (M, G) as (M, 1, ..., G)."""
    return v if v.dim() == 1 else v.view(v.shape[0], *[1] * (like.dim() - 2), v.shape[-1])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``nn.Linear``'s map (F.linear, bit for bit, for one model), member by member for a population."""
    if weight.dim() == 2:
        return torch.nn.functional.linear(x, weight, bias)
    y = matmul(x, weight)
    return y if bias is None else y + vector(bias, y)


class RecurrentLayer(nn.Module):
    """One recurrent layer mapping (B, T, D) -> (B, T, H), starting from a zero state.

    A subclass implements ``input_drive`` (the part of the pre-activations that
    does not depend on the state, for all t at once) and ``step`` (one step of
    the recurrence, calling ``tap(name, s)`` on every state it produces, at the
    point where that state is formed). It may override ``forward`` with a
    fused kernel.
    """

    state_names: ClassVar[tuple[str, ...]] = ("h",)
    # Why this layer cannot train as a population member (stacked weights through ``forward_steps``),
    # or None when it can; a layer whose step path is written for a leading member dim sets None.
    population_unsupported: ClassVar[str | None] = "its step path has no member dimension yet"
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
        return tuple(x.new_zeros(*x.shape[:-2], self.state_size(name)) for name in self.state_names)  # (B, S)

    def population_support(self) -> str | None:
        """None when this layer, as configured, can be a population member; else why not (one line)."""
        return self.population_unsupported

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
        drive = self.input_drive(x).unbind(-2)  # T x (B, G)
        tap_steps = None if taps is None else {k: v.unbind(-2) for k, v in taps.items()}  # T x (B, H)
        state = self.initial_state(x)
        keep = None if steps is None else set(steps.tolist())
        out = []
        for t, u_t in enumerate(drive):
            tap_t = no_tap if tap_steps is None else (lambda name, s, t=t: s + tap_steps[name][t])
            state = self.step_at(t, u_t, state, tap_t)
            if keep is None or t in keep:
                out.append(state[0])
        return torch.stack(out, dim=-2)  # (B, T, H), or (B, L, H)

    def forward_members(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        """A population's training forward (weights stacked: x (M, B, T, D) -> (M, B, T, H), or the
        steps ``steps`` only, (M, B, L, H)). Default: the step path; a cell with a hand-written batched
        recurrence (``seqlab.models.members``: one autograd node for the whole loop) overrides this."""
        return self.forward_steps(x, steps=steps)

    def step_at(self, t: int, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        """Step ``t`` of the step path. Default: ``step``, the same map at every t; a layer whose
        step depends on t (per-time-step statistics: recurrent batch norm) overrides this."""
        return self.step(u_t, state, tap)
