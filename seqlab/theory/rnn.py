"""Mean-field signal propagation through time in a wide random vanilla RNN driven by inputs.

Setting (Chen, Pennington & Schoenholz 2018, "Dynamical Isometry and a Mean Field Theory of
RNNs", the vanilla RNN with inputs): h_t = phi(a_t), a_t = W h_{t-1} + U x_t + b, with
W_ij of variance sigma_w^2 / H (Gaussian, or sigma_w Q with Q orthogonal), U_ij of variance
sigma_u^2 / D, b_i of variance sigma_b^2, h_{-1} = 0, H -> infinity. The pre-activation
variance follows the length map with the input's power added at every step,

    q_t = sigma_w^2 E[phi(sqrt(q_{t-1}) z)^2] + sigma_u^2 P_t + sigma_b^2,   q_0 = sigma_u^2 P_0 + sigma_b^2,

where P_t = E ||x_t||^2 / D is the task's mean squared input entry at step t (its input
statistics enter only through P_t: U is zero-mean, so the input's mean and its power act alike).
The Jacobian dh_t/dh_{t-1} = diag(phi'(a_t)) W multiplies ||dL/dh||^2 by

    chi_t = sigma_w^2 E[phi'(sqrt(q_t) z)^2]

per step going back in time, so the predicted decay curve from a loss at step tau is
g(k) / g(0) = prod_{j < k} sqrt(chi_{tau - j}), and with a stationary input (P_t = P) the
per-step gain is sqrt(chi*) at the fixed point q* with timescale xi = -1 / ln chi* steps
(of the squared norm; the norm's is 2 xi). A linear RNN (phi = identity) has chi = sigma_w^2
exactly, whatever the input.

Gated cells: the LSTM and GRU are in ``seqlab.theory.gated`` (after Gilboa et al. 2019). Chen et
al.'s minimalRNN is not implemented here. The lab's minGRU, minLSTM and selective (S6) layers gate
on the input alone, so their Jacobian is the diagonal of the gates, a function of the data rather
than of a mean-field fixed point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .meanfield import activation, chi1, depth_scale, second_moment


def rnn_length_sequence(act: str, sigma_w2: float, sigma_u2: float, sigma_b2: float,
                        input_power: np.ndarray) -> np.ndarray:
    """(T,) q_t, the pre-activation variance at every step, for the per-step input power P_t (T,)."""
    activation(act)
    q = np.empty(len(input_power))
    prev = None
    for t, p in enumerate(np.asarray(input_power, dtype=np.float64)):
        drive = sigma_u2 * p + sigma_b2
        q[t] = drive if prev is None else sigma_w2 * second_moment(act, prev) + drive
        prev = q[t]
    return q


def rnn_step_chis(act: str, sigma_w2: float, q: np.ndarray) -> np.ndarray:
    """(T,) chi_t = sigma_w^2 E[phi'(sqrt(q_t) z)^2]."""
    return np.array([chi1(act, sigma_w2, float(qt)) for qt in q])


def lag_curve(chis: np.ndarray, tau: int, n_lags: int) -> np.ndarray:
    """(n_lags,) predicted g(k) / g(0) back from a loss at step ``tau``: prod_{j < k} sqrt(chi_{tau-j})
    (the Jacobian of step t maps dL/dh_t to dL/dh_{t-1}); nan past the start of the sequence."""
    from .gated import gated_lag_curve  # the same product, with per-step gains sqrt(chi_t)

    return gated_lag_curve(np.sqrt(np.asarray(chis, dtype=float)), tau, n_lags)


@dataclass(frozen=True)
class RNNPrediction:
    """The stationary numbers: input power P (mean over the steps), the fixed point and its gain."""

    activation: str
    sigma_w2: float
    sigma_u2: float
    sigma_b2: float
    input_power: float
    q_star: float
    chi: float       # per-step factor of the squared gradient norm at q*
    gain: float      # sqrt(chi): per-step factor of the norm (the probe's time gain)
    xi: float        # -1 / ln chi steps


def rnn_stationary(act: str, sigma_w2: float, sigma_u2: float, sigma_b2: float, input_power: float,
                   tol: float = 1e-12, max_iter: int = 100_000) -> RNNPrediction:
    """Fixed point of the RNN's length map under a constant input power, and its gain."""
    drive = sigma_u2 * input_power + sigma_b2
    if act == "identity":
        q = drive / (1 - sigma_w2) if sigma_w2 < 1 else math.inf
        c = sigma_w2
    else:
        q = drive
        for _ in range(max_iter):
            nxt = sigma_w2 * second_moment(act, q) + drive
            if not math.isfinite(nxt) or nxt > 1e12:
                q = math.inf
                break
            if abs(nxt - q) <= tol * max(1.0, q):
                q = nxt
                break
            q = nxt
        c = chi1(act, sigma_w2, q) if math.isfinite(q) else (chi1(act, sigma_w2, 1.0) if act in ("relu", "leaky_relu") else math.nan)
    return RNNPrediction(act, sigma_w2, sigma_u2, sigma_b2, float(input_power), q, c,
                         math.sqrt(c) if c == c else math.nan, depth_scale(c))
