"""The common shape of the input-gated diagonal cells (minGRU, minLSTM, the selective SSM).

Glossary: B batch, T time, D input features, H output units, S state width (H, or
H * N for the selective SSM), P whatever ``project`` returns.

Their recurrence is h_t = a_t * h_{t-1} + b_t with a_t and b_t computed from x_t
alone (never from h), so:
  * ``coefficients`` computes every a_t, b_t at once (B, T, S); a ``convex`` cell
    (minGRU, minLSTM: a_t = 1 - w_t, b_t = w_t c_t) returns (w, c) instead, and its
    loop runs ``torch.lerp(h, c_t, w_t)``, the fastest CPU form measured;
  * the step path (``forward_steps``, the probe's) runs the base class's loop with
    ``step``: h = a_t * h + b_t, tapped where it is formed; dh_t/dh_{t-1} = diag(a_t)
    exactly, which is what the probe and the Lyapunov spectrum read;
  * the fast path (``forward``) hands a, b to a scan (seqlab.models.scan): ``scan``
    names the method, ``auto`` the measured fastest for the device.
Both paths end with ``output`` (the identity, except for the SSM's y_t = C_t h_t + D u_t).
"""
from __future__ import annotations

from typing import ClassVar

import torch

from . import scan as scanlib
from .base import RecurrentLayer, State, TapFn, Taps, no_tap


class DiagonalLayer(RecurrentLayer):
    """Subclasses set ``scans`` (methods they support) and implement ``project`` and
    ``coefficients`` (and ``log_coefficients`` if ``log`` is among their scans)."""

    scans: ClassVar[tuple[str, ...]] = scanlib.LINEAR
    auto: ClassVar[scanlib.Auto] = scanlib.AUTO
    convex: ClassVar[bool] = False  # coefficients are (w, c): h_t = (1 - w_t) h_{t-1} + w_t c_t
    outputs_at_steps = True  # forward(x, steps): the output at the loss steps only

    def __init__(self, input_size: int, hidden_size: int, scan: str = "auto", chunk: int | None = None):
        super().__init__(input_size, hidden_size)
        scanlib.check_scan(scan, chunk, self.scans)
        self.scan, self.chunk = scan, chunk

    def project(self, x: torch.Tensor):
        """(B, T, D) -> whatever ``coefficients`` and ``output`` read (one matmul for all t)."""
        raise NotImplementedError

    def coefficients(self, p) -> tuple[torch.Tensor, torch.Tensor]:
        """-> a, b, each (B, T, S) (w, c if ``convex``)."""
        raise NotImplementedError

    def log_coefficients(self, p) -> tuple[torch.Tensor, torch.Tensor]:
        """-> log a, log b, each (B, T, S) (only for cells whose a, b are positive)."""
        raise NotImplementedError

    def output(self, p, h: torch.Tensor) -> torch.Tensor:
        """(B, T, S) states -> (B, T, H) layer output."""
        return h

    def method(self, x: torch.Tensor) -> str:
        return scanlib.resolve(self.scan, x, self.auto)

    def forward(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        p = self.project(x)
        return self.output(self._at(p, steps), self._states(p, self.method(x), steps))

    def _states(self, p, method: str, steps: torch.Tensor | None) -> torch.Tensor:
        """The states h (B, T, S) from ``project``'s result by ``method`` (at ``steps`` only: (B, L, S))."""
        if method == "log":
            h = scanlib.scan_log(*self.log_coefficients(p))  # (B, T, S)
        elif method == "loop":  # keeps only the states at ``steps``: no stack of all T to read one
            h = scanlib.scan_loop(*self.coefficients(p), self.convex, keep=steps)  # (B, T or L, S)
        else:
            h = scanlib.run_scan(method, *self.coefficients(p), self.chunk, self.convex)  # (B, T, S)
        if steps is not None and method != "loop":
            h = h[:, steps.to(h.device)]  # (B, L, S)
        return h

    def forward_members(self, x: torch.Tensor, steps: torch.Tensor | None = None) -> torch.Tensor:
        """A population's forward (x (M, B, T, D), stacked weights): ``project`` member by member, then the
        lone run's scan on the M * B sequences at once (the coefficients are element-wise, so the members
        are just more sequences). At GRU-like long-memory sizes the step path was slower per member than
        a lone run (minGRU at M = 8: 0.84x; docs/population.md, "Round 6"). The states are the output:
        the one cell with an output map that reads ``p``, the selective SSM, runs alone (``population_unsupported``)."""
        p = self.project(x)  # (M, B, T, P)
        h = self._states(p.flatten(0, 1), self.method(x[0]), steps)  # (M * B, T or L, S)
        return h.unflatten(0, x.shape[:2])  # (M, B, T or L, S)

    def _at(self, p, steps: torch.Tensor | None):
        """``project``'s result at ``steps`` only (what ``output`` reads there)."""
        if steps is None or type(self).output is DiagonalLayer.output:
            return p
        idx = steps.to((p[0] if isinstance(p, tuple) else p).device)
        return tuple(v[:, idx] for v in p) if isinstance(p, tuple) else p[:, idx]

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.coefficients(self.project(x)), dim=-1)  # (B, T, 2S): [a | b] or [w | c]

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        (h,) = state
        a, b = u_t.chunk(2, dim=-1)  # (B, S) each
        return (tap("h", torch.lerp(h, b, a) if self.convex else torch.addcmul(b, a, h)),)

    def forward_steps(self, x: torch.Tensor, taps: Taps | None = None,
                      steps: torch.Tensor | None = None) -> torch.Tensor:
        h = super().forward_steps(x, taps, steps)  # (B, T, S), or (B, L, S)
        return h if type(self).output is DiagonalLayer.output else self.output(self._at(self.project(x), steps), h)
