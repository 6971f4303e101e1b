"""Summaries of one decay curve g(k) = mean ||dL_tau/ds_(tau-k)||, k = 0 .. K-1.

  gain gamma     exp(slope) of a least-squares line through log g(k) over the lags
                 where g stands above float noise (see ``noise_floor``): the
                 per-step factor by which the gradient shrinks (< 1) or grows (> 1)
  half_life      ln 2 / -ln gamma steps; inf when gamma >= 1 (no decay)
  attenuation    log10 g(0) / g(K-1), in decades, lag 0 to the longest lag (negative:
                 growth); when the curve has left the float range before K-1, what the
                 data say: below the noise floor, at least log10 g(0) / floor; above the
                 ceiling (overflow), a growth of at least log10 ceiling / g(0), i.e. an
                 attenuation of at most log10 g(0) / ceiling < 0 (``fit_lags`` < K says it
                 is a bound; ``decades_text`` words it), never the fitted line
                 extrapolated past the float range. The gain is fitted over the lags
                 inside the range, decaying or growing alike
  horizon        the largest lag k with g(j) / g(0) >= ``horizon_floor`` for every
                 j <= k (K-1 when the curve never falls that far)
  g_lag{k}       g at a few fixed lags, and at the task's own lag (g_task_lag)
  n_lags         K (1: a task without time, whose only "curve" is g(0))

A linear RNN with W = rho * Q gives g(k) = rho^k g(0) exactly, so gamma = rho to
float precision (tests/test_probe.py).

``fit_depth`` fits the same line along the other axis of the grid, the depth
curve g(l) (layer 0 next to the input), counting layers down from the loss: a
linear stack whose layer maps are rho * Q gives g(l) = rho g(l+1) and a gain of
rho (tests/test_probe_depth.py).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch

# Float noise here is underflow, not rounding: a product of Jacobians keeps its
# relative precision, but entries below the smallest normal number (float32:
# 1.2e-38) are flushed to zero (train.py sets flush_denormal). A norm over H
# entries of unequal size is trustworthy well above that; 1e5 * tiny leaves five
# decades for the spread of the entries.
NOISE_FLOOR_OVER_TINY = 1e5


def noise_floor(dtype: torch.dtype = torch.float32) -> float:
    """Smallest g(k) the fits trust for a model computed in ``dtype`` (float32: 1.2e-33)."""
    return NOISE_FLOOR_OVER_TINY * torch.finfo(dtype).tiny


def ceiling(dtype: torch.dtype = torch.float32) -> float:
    """Largest g(k) the fits trust (float32: 3.4e33): the floor's margin below the overflow to inf, where
    a growing backward pass ends (inf, then nan) and no later lag is measured."""
    return torch.finfo(dtype).max / NOISE_FLOOR_OVER_TINY


def decades_text(attenuation: float, bound: bool) -> str:
    """'12.3 decades' | 'at least 33 decades' (fell below the floor) | 'a growth of 37.8 decades' |
    'a growth of at least 33 decades' (overflowed): ``bound`` = the curve left the float range."""
    if not math.isfinite(attenuation):
        return "n/a decades"
    if attenuation < 0:
        return f"a growth of {'at least ' if bound else ''}{-attenuation:.3g} decades"
    return f"{'at least ' if bound else ''}{attenuation:.3g} decades"


def fit_curve(g: np.ndarray, *, horizon_floor: float = 1e-3, lags: Iterable[int] = (),
              task_lag: int | None = None, floor: float | None = None, ceil: float | None = None) -> dict[str, float]:
    """Summaries of one curve ``g`` (K,), lag 0 first; plain floats (nan where undefined)."""
    g = np.asarray(g, dtype=np.float64)
    K = len(g)
    floor = noise_floor() if floor is None else floor
    ceil = ceiling() if ceil is None else ceil
    inside = (g > floor) & (g < ceil)  # nan and inf are outside
    n_fit = K if inside.all() else int(np.argmin(inside))  # the prefix of lags inside the float range
    # the curve left the range upwards (overflow: above the ceiling, or nan after a growing prefix)
    grew = n_fit < K and n_fit > 0 and (g[n_fit] >= ceil or (np.isnan(g[n_fit]) and g[n_fit - 1] > g[0]))
    k = np.arange(K, dtype=np.float64)
    gain, intercept = math.nan, math.nan
    if n_fit >= 2:
        slope, intercept = np.polyfit(k[:n_fit], np.log(g[:n_fit]), 1)
        gain = math.exp(slope)
    if math.isnan(gain):
        half_life = math.nan
    elif gain >= 1.0:
        half_life = math.inf
    else:
        half_life = math.log(2.0) / -math.log(gain)
    g0 = float(g[0]) if K else math.nan
    if not floor < g0 < ceil:
        attenuation = math.nan
    elif n_fit == K:
        attenuation = math.log10(g0 / g[-1])
    elif grew:  # overflowed at lag n_fit: a growth of at least this much, and no further is measured
        attenuation = math.log10(g0 / ceil)
    else:  # the curve fell below the floor at lag n_fit: at least this far, and no further is measured
        attenuation = math.log10(g0 / floor)
    if 0 < g0 < math.inf:
        below = np.flatnonzero(~(g / g0 >= horizon_floor))  # nan (a diverged model) counts as below
        horizon = int(below[0]) - 1 if below.size else K - 1
        if grew:  # it never fell, but nothing past the overflow is measured
            horizon = min(horizon, n_fit - 1)
    else:
        horizon = -1
    out = {"g0": g0, "gain": gain, "log_gain": math.log(gain) if gain > 0 else math.nan,
           "half_life": half_life, "attenuation_decades": float(attenuation), "horizon": horizon,
           "fit_lags": n_fit, "n_lags": K}
    for lag in lags:  # a lag the curve does not reach (beyond T) is there, as NaN: asked for, not measurable
        out[f"g_lag{lag}"] = float(g[lag]) if 0 <= lag < K else math.nan
    if task_lag is not None and 0 <= task_lag < K:
        out["g_task_lag"] = float(g[task_lag])
    return out


def fit_depth(g: np.ndarray, *, horizon_floor: float = 1e-3, floor: float | None = None) -> dict[str, float]:
    """Summaries of one depth curve ``g`` (NL,), indexed by layer l = 0 (first, next to the input)
    .. NL-1 (last, next to the loss): the lag-axis fits with the distance from the loss,
    d = NL-1-l, in place of the lag.

      gain               exp(slope) of log g against d: the factor per layer going down,
                         g(l)/g(l+1) for an exponential curve (< 1: vanishing towards the input)
      attenuation_decades  log10 g(NL-1)/g(0), last layer to first (at least log10 g(NL-1)/floor when a
                         layer is below the floor: fit_layers < NL)
      underflow_layer    the first layer, going down from the last, whose g is at or below the
                         float noise floor (``noise_floor``); -1 when none is
      reach_layer        the lowest layer l with g(j)/g(NL-1) >= ``horizon_floor`` for every j >= l
      g_first, g_last    g at layer 0 and at layer NL-1; fit_layers: layers the fit used
    """
    g = np.asarray(g, dtype=np.float64)
    NL = len(g)
    floor = noise_floor() if floor is None else floor
    fit = fit_curve(g[::-1], horizon_floor=horizon_floor, floor=floor)
    below = np.flatnonzero(~(g[::-1] > floor))  # nan counts as below
    return {"gain": fit["gain"], "log_gain": fit["log_gain"], "attenuation_decades": fit["attenuation_decades"],
            "underflow_layer": int(NL - 1 - below[0]) if below.size else -1,
            "reach_layer": int(NL - 1 - fit["horizon"]) if fit["horizon"] >= 0 else NL,
            "g_first": float(g[0]) if NL else math.nan, "g_last": float(g[-1]) if NL else math.nan,
            "fit_layers": fit["fit_lags"]}
