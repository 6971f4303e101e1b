"""The theory beside one probe: the ``theory`` block of summary.json, its W&B scalars and its
one-line text. The probe and the figures only read this block (``ProbeHistory.theory``).

    {"step": 0,
     "depth": {"gain": predicted, "measured_gain": ..., "relative_gap": measured / predicted - 1,
               "curve": [g(l) / g(last)], "chi_1": ..., ...}  or  {"absent": "why"},
     "time":  {... "curve": [g(k) / g(0)] ...}                   or  {"absent": "why"}}

Measured gains are the probe's own fits of the same probe (depth: 'depth_h_lag0', time:
'h_l0'); predicted gains are the same fits of the predicted curves (``predict``).
"""
from __future__ import annotations

import math

from .predict import absent, theory_block

TRAINED = "trained weights (step {step}): mean-field theory describes random weights at init"


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(float(x)) else None


def beside_probe(model, model_cfg: dict | None, task, batch, settings, result, step: int) -> dict:
    """The ``theory`` block for the probe ``result`` of ``model`` at training ``step``; only a model at
    init (step 0) gets predictions. Never raises: a failure becomes an absent prediction with its reason."""
    if step != 0:
        reason = TRAINED.format(step=step)
        return {"step": step, "depth": absent(reason), "time": absent(reason)}
    try:
        from ..probe.gradient import probe_loss_steps

        loss_steps = probe_loss_steps(task, settings.max_loss_steps)
        depth = result.depth.get("h_lag0")
        g_top = float(depth[-1]) if depth is not None and depth[-1] > 0 else 1.0
        block = theory_block(model, model_cfg or {}, batch.inputs, loss_steps, len(result.curves.lags), g_top)
    except Exception as e:  # noqa: BLE001 - the probe's numbers stand without the theory
        reason = f"not computed ({type(e).__name__}: {e})".splitlines()[0]
        return {"step": step, "depth": absent(reason), "time": absent(reason)}
    measured = {"depth": result.depth_fits.get("h_lag0", {}).get("gain"),
                "time": result.fits.get("h_l0", {}).get("gain") if len(result.curves.lags) > 1 else None}
    for axis, pred in block.items():
        m, p = _finite(measured[axis]), _finite(pred.get("gain"))
        if m is not None or "absent" not in pred:
            pred["measured_gain"] = m  # beside an absent prediction too: what was measured stays on record
        if "absent" not in pred:
            pred["relative_gap"] = m / p - 1 if m is not None and p else None
    return {"step": step, **block}


def theory_scalars(block: dict | None, prefix: str = "theory/") -> dict[str, float]:
    """Flat scalars for a tracker: '{prefix}{axis}_gain', '..._measured_gain', '..._relative_gap'."""
    out = {}
    for axis in ("depth", "time"):
        pred = (block or {}).get(axis) or {}
        for name, key in (("gain", "gain"), ("measured_gain", "measured_gain"), ("relative_gap", "relative_gap")):
            value = _finite(pred.get(key))
            if value is not None:
                out[f"{prefix}{axis}_{name}"] = value
    return out


def theory_line(block: dict | None, axis: str, unit: str) -> str:
    """'mean-field: 0.571 per step (measured 0.567, -0.7%)' or 'mean-field: absent (reason)'."""
    pred = (block or {}).get(axis)
    if not pred:
        return ""
    if "absent" in pred:
        return f"mean-field: absent ({pred['absent']})"
    gain, meas, gap = _finite(pred.get("gain")), _finite(pred.get("measured_gain")), _finite(pred.get("relative_gap"))
    text = f"mean-field at init: {gain:.4g} per {unit}" if gain is not None else "mean-field at init: no gain"
    if meas is not None and gap is not None:
        text += f" (measured {meas:.4g}, gap {100 * gap:+.1f}%)"
    return text
