"""The mean-field prediction as a line beside a measured decay curve, drawn only where a measurement
could follow it.

The probe measures g in float32 with denormals flushed (``flush_denormal``): a gradient norm below
float32's smallest normal number (1.2e-38) is 0, and once the backward pass has underflowed it stays 0
further back; above float32's largest number it is inf. The prediction is a formula and goes on
forever (a tanh RNN at torch's default loses 48 decades over 199 lags), so a line drawn to its end
would show what no float32 run can measure. ``measurable`` stops it there.

    curve, why = run_theory(run, "time")       # g(k)/g(0) predicted for a run's probe at init, or the reason
    shown = measurable(curve, g_ref=g0)        # nan from the first lag whose g0 * curve leaves float32's range
"""
from __future__ import annotations

import json
from typing import Iterable

import numpy as np

FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # 1.18e-38: the smallest normal float32
FLOAT32_MAX = float(np.finfo(np.float32).max)    # 3.4e38
LABEL = "mean-field at init"
CAPTION = ("dashed, no markers: the mean-field prediction at init, in the setting's colour;\n"
           "stopped where float32 can no longer measure (g below 1.2e-38 or above 3.4e38)")
NO_BLOCK = "no theory block (a run from before seqlab.theory, or no probe)"


def measurable(curve: Iterable[float], g_ref, *, from_end: bool = False, tiny: float = FLOAT32_TINY,
               huge: float = FLOAT32_MAX) -> np.ndarray:
    """``curve`` (a prediction normalized to its reference point, lag 0 or the last layer) with nan from
    the first point, walking away from the reference, where ``g_ref * curve`` leaves [tiny, huge].

    ``g_ref``: the measured g at the reference point, one number or one per seed (the line stops where
    the first seed's measurement would: the floor at the smallest ``g_ref``, the ceiling at the largest).
    ``from_end``: the reference is the last point (a depth curve g(l)/g(last layer), walked from the
    loss down to the input); else the first (a lag curve g(k)/g(0))."""
    c = np.array(list(curve), dtype=np.float64)
    refs = np.atleast_1d(np.asarray(g_ref, dtype=np.float64))
    refs = refs[np.isfinite(refs) & (refs > 0)]
    if not refs.size:
        return np.full_like(c, np.nan)
    lo, hi = tiny / refs.min(), huge / refs.max()
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(c) & (c >= lo) & (c <= hi)
    order = np.arange(len(c))[::-1] if from_end else np.arange(len(c))
    bad = np.flatnonzero(~ok[order])
    if bad.size:
        c[order[bad[0]:]] = np.nan
    return c


def theory_block_of(run) -> dict | None:
    """A run's theory block: summary.json's ``theory``, else probe.npz's ``theory_json`` (None: neither)."""
    block = (getattr(run, "summary", None) or {}).get("theory")
    if isinstance(block, dict):
        return block
    p = getattr(run, "probe", None)
    if p is not None and "theory_json" in p:
        try:
            block = json.loads(str(p["theory_json"]))
        except ValueError:
            return None
        return block if isinstance(block, dict) else None
    return None


def run_theory(run, axis: str) -> tuple[np.ndarray | None, str]:
    """(the predicted normalized curve of ``run``'s probe at step 0 on ``axis`` ('time': g(k)/g(0) of
    h_l0; 'depth': g(l)/g(last layer) at lag 0), '') or (None, why there is none)."""
    block = theory_block_of(run)
    if block is None:
        return None, NO_BLOCK
    if block.get("step", 0) != 0:
        return None, f"the theory block is for step {block.get('step')}, not the probe at init"
    pred = block.get(axis)
    if not isinstance(pred, dict):
        return None, f"no {axis} entry in the theory block"
    if "absent" in pred:
        return None, str(pred["absent"])
    if "curve" not in pred:
        return None, f"the {axis} prediction has no curve"
    p = getattr(run, "probe", None)
    if p is None or "steps" not in p or not (np.asarray(p["steps"]) == 0).any():
        return None, "no probe at step 0"
    return np.array([x if isinstance(x, (int, float)) else np.nan for x in pred["curve"]], dtype=np.float64), ""


def geometric_mean(curves: list[np.ndarray]) -> np.ndarray | None:
    """Geometric mean of predicted curves of one length (seeds differ only by their probe batch)."""
    curves = [c for c in curves if c is not None]
    if not curves or len({len(c) for c in curves}) != 1:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(np.mean(np.log(np.stack(curves)), axis=0))
