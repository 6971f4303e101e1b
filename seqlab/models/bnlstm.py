"""Recurrent batch normalization for the LSTM: Cooijmans, Ballas, Laurent, Gulcehre &
Courville 2017 (arXiv 2016), "Recurrent Batch Normalization", sec. 4, eqs. (6)-(8):

    (i, f, o, g) = BN(W_h h_{t-1}; gamma_h, 0) + BN(W_x x_t; gamma_x, 0) + b
    c_t = s(f) * c_{t-1} + s(i) * tanh(g)
    h_t = s(o) * tanh(BN(c_t; gamma_c, beta_c))

(gates in torch's order i, f, g, o here). The recurrent and the input terms are
normalized separately, each per feature, so their relative weight is set by the
learned gains gamma_h, gamma_x and not by the scales of W_h, W_x; beta_h = beta_x = 0
(the bias b is their shift). Statistics are kept **per time step**: in train mode the
batch's mean and variance at step t; in eval mode the running (population) estimates
of step t, with every step past the last one seen in training using those of that
last step (sec. 4: "for t > T_max we use the population statistics of T_max").
Running estimates are tracked for t < ``tmax``. The gains start at 0.1 (sec. 5: "gamma
= 0.1 ... avoids vanishing gradients through the tanh and sigmoid saturation"), beta_c at 0.

How it fits the lab's layer interface:
  * the input term BN(W_x x_t) for all t at once in ``input_drive`` (per-step statistics
    over the batch dimension of (B, T, 4H));
  * ``step_at(t, ...)`` is one step with step t's statistics (the step path's loop calls
    it); ``forward`` is the step path (no fused kernel normalizes inside the recurrence),
    so fast = step exactly;
  * ``step`` without a time index (the Lyapunov loop's) normalizes with the running
    statistics of the last step seen in training, whatever the mode: a map of one
    sequence, the network's inference-mode dynamics (batch statistics would couple
    the rows of the loop's batch);
  * c_t is tapped before its BN, h_t after it is formed; both paths tap the same.
A model with batch norm needs batches of at least 2 in train mode (checked before a
run). The probe runs in train mode with batch statistics and leaves the running
statistics as it found them (``seqlab.probe.probe_mode``).

W_ih, W_hh and the biases are those of ``LSTMLayer`` (torch's layout and init knobs:
init, recurrent_gain, forget_bias, chrono).
"""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check, check_int, is_number
from .base import State, TapFn, no_tap
from .lstm import LSTMLayer


class TimeBatchNorm(nn.Module):
    """Batch norm with separate statistics at each time step t < tmax (Cooijmans et al. 2016).

    ``forward(z, t)``: z (B, F) at step t; ``forward(z)``: z (B, T, F), steps 0..T-1.
    Train mode: the batch's statistics at each step (biased variance), and the running
    estimates of steps < tmax updated with ``momentum`` (unbiased variance, as torch's
    BatchNorm). Eval mode: the running estimates, steps past the last one seen in
    training clamped to it. A batch of one sequence has no batch statistics: it gets the
    eval-mode normalization in either mode (training refuses batches < 2; the probe's
    one-sequence Lyapunov loop gets the inference-mode map).
    """

    batch_statistics = True  # needs >= 2 rows in train mode (``SequenceModel.min_batch_size``)

    def __init__(self, features: int, tmax: int, gamma: float = 0.1, shift: bool = False,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.tmax, self.eps, self.momentum = tmax, eps, momentum
        self.weight = nn.Parameter(torch.full((features,), float(gamma)))  # gamma
        self.bias = nn.Parameter(torch.zeros(features)) if shift else None  # beta (or fixed 0)
        self.register_buffer("running_mean", torch.zeros(tmax, features))
        self.register_buffer("running_var", torch.ones(tmax, features))
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))  # training steps tracked

    def _population_step(self, t: int | None) -> int:
        last = max(min(int(self.steps_seen), self.tmax) - 1, 0)
        return last if t is None else min(t, last)

    def forward(self, z: torch.Tensor, t: int | None = None) -> torch.Tensor:
        timed = z.dim() == 3  # (B, T, F): all steps at once; else (B, F) at step t
        if self.training and (timed or t is not None) and z.shape[0] > 1:
            var, mean = torch.var_mean(z, 0, unbiased=False)  # (T, F) or (F,)
            self._track(z, mean, var, t)
        elif timed:
            idx = torch.arange(z.shape[1], device=z.device).clamp(max=self._population_step(None))
            mean, var = self.running_mean[idx], self.running_var[idx]  # (T, F)
        else:  # eval mode at step t, or no time index (a one-sequence map): population statistics
            s = self._population_step(t)
            mean, var = self.running_mean[s], self.running_var[s]
        out = (z - mean) * torch.rsqrt(var + self.eps) * self.weight
        return out if self.bias is None else out + self.bias

    @torch.no_grad()
    def _track(self, z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, t: int | None) -> None:
        n = z.shape[0]
        first = 0 if t is None else t
        steps = (z.shape[1] if z.dim() == 3 else 1)
        stop = min(first + steps, self.tmax)
        if stop <= first:
            return
        m, v = mean.detach().reshape(-1, mean.shape[-1]), var.detach().reshape(-1, var.shape[-1])
        k = stop - first
        unbiased = v[:k] * (n / (n - 1)) if n > 1 else v[:k]
        self.running_mean[first:stop].lerp_(m[:k], self.momentum)
        self.running_var[first:stop].lerp_(unbiased, self.momentum)
        self.steps_seen.fill_(max(int(self.steps_seen), stop))


class BNLSTMLayer(LSTMLayer):
    """LSTM with recurrent batch normalization (Cooijmans et al. 2016), per time step."""

    def __init__(self, input_size: int, hidden_size: int, tmax: int = 200, gamma: float = 0.1,
                 init: str = "default", recurrent_gain: float = 1.0, forget_bias: float | None = None,
                 chrono: bool = False, chrono_tmax: float | None = None):
        super().__init__(input_size, hidden_size, init=init, recurrent_gain=recurrent_gain,
                         forget_bias=forget_bias, chrono=chrono, chrono_tmax=chrono_tmax)
        check_int("model.layer.tmax", tmax, 1)
        check(is_number(gamma), "model.layer.gamma", gamma, "must be a number")
        H = hidden_size
        self.bn_x = TimeBatchNorm(4 * H, tmax, gamma)  # BN(W_x x_t; gamma_x, 0)
        self.bn_h = TimeBatchNorm(4 * H, tmax, gamma)  # BN(W_h h_{t-1}; gamma_h, 0)
        self.bn_c = TimeBatchNorm(H, tmax, gamma, shift=True)  # BN(c_t; gamma_c, beta_c)

    def population_support(self) -> str | None:
        return "its batch norms keep running statistics per time step (buffers) with no member dimension"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_steps(x)  # no fused kernel normalizes inside the recurrence

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        m = self.lstm
        return self.bn_x(x @ m.weight_ih_l0.T) + m.bias_ih_l0 + m.bias_hh_l0  # (B, T, 4H)

    def step_at(self, t: int, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        return self._step(u_t, state, tap, t)

    def step(self, u_t: torch.Tensor, state: State, tap: TapFn = no_tap) -> State:
        """One step with no time index: population statistics (see the module docstring)."""
        return self._step(u_t, state, tap, None)

    def _step(self, u_t: torch.Tensor, state: State, tap: TapFn, t: int | None) -> State:
        h, c = state
        wh = self.bn_h(h @ self.lstm.weight_hh_l0.T, t)  # (B, 4H)
        i, f, g, o = (u_t + wh).chunk(4, dim=1)  # each (B, H)
        c = tap("c", torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g))
        h = tap("h", torch.sigmoid(o) * torch.tanh(self.bn_c(c, t)))
        return h, c
