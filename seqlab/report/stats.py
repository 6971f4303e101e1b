"""The numbers of a setting: mean +- std over seeds of the end-of-training results and the probe's fits."""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from seqlab.report.runs import DEFAULT_CURVE, Run, Setting, _num

# ----------------------------------------------------------------------------- numbers

def mean_std(values: Iterable[Any]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1; nan for one value) of the finite or inf numbers."""
    xs = np.asarray([_num(v) for v in values if v is not None], dtype=np.float64)
    xs = xs[~np.isnan(xs)]
    if xs.size == 0:
        return math.nan, math.nan, 0
    if np.isinf(xs).any():  # e.g. a half-life of a curve that does not decay
        return float(np.mean(xs)) if len(set(np.sign(xs[np.isinf(xs)]))) == 1 else math.nan, math.nan, xs.size
    return float(xs.mean()), float(xs.std(ddof=1)) if xs.size > 1 else math.nan, int(xs.size)


def curve_key(probe: dict[str, np.ndarray], curve: str = DEFAULT_CURVE) -> str | None:
    """The probe curve the numbers and figures use: ``curve`` itself, or None when this probe lacks it.
    Only the default (h_l0) falls back, to the model's first curve (a cell without an h, e.g. coRNN's
    y_l0); a curve asked for by name is never replaced by another (an RNN has no c_l0)."""
    keys = [str(k) for k in probe.get("curves", [])]
    if curve in keys:
        return curve
    return keys[0] if keys and curve == DEFAULT_CURVE else None


def curves_in(runs: Iterable[Run]) -> list[str]:
    """Every probe curve any of ``runs`` measured (sorted)."""
    return sorted({str(k) for r in runs if r.probe is not None for k in r.probe.get("curves", [])})


def setting_curves(s: Setting, curve: str = DEFAULT_CURVE) -> list[str]:
    """The curves that stand for ``curve`` in this setting's probes ([] when none has it)."""
    return sorted({k for r in s.runs if r.probe is not None and (k := curve_key(r.probe, curve)) is not None})



def probe_index(p, at: str) -> int | None:
    """Index of the step-0 probe (``at="init"``; None if the run has none) or of the last probe (any other
    ``at``) in a run's probe.npz."""
    steps = np.asarray(p["steps"])
    if at != "init":
        return len(steps) - 1
    idx = np.flatnonzero(steps == 0)
    return int(idx[0]) if idx.size else None

def probe_numbers(run: Run, curve: str = DEFAULT_CURVE, at: str = "final") -> dict[str, float]:
    """gain, half_life, horizon, attenuation and top Lyapunov exponent of one probe of a run.

    ``at="init"``: the probe at step 0; ``"final"``: the last probe (of a finished run).
    """
    p = run.probe
    out = {k: math.nan for k in ("gain", "half_life", "horizon", "attenuation_decades", "lyapunov_max")}
    if p is None or "steps" not in p or len(p["steps"]) == 0:
        return out
    key = curve_key(p, curve)
    i = probe_index(p, at)
    if i is None:
        return out
    if key is not None:
        for name in ("gain", "half_life", "horizon", "attenuation_decades"):
            if f"{name}_{key}" in p:
                out[name] = float(p[f"{name}_{key}"][i])
    if "lyapunov_l0" in p and p["lyapunov_l0"].ndim == 2 and p["lyapunov_l0"].shape[1] > 0:
        out["lyapunov_max"] = float(p["lyapunov_l0"][i][0])
    return out


def setting_row(s: Setting, curve: str = DEFAULT_CURVE) -> dict[str, Any]:
    """The table row of one setting: {column: (mean, std, n)} plus counts."""
    fin = s.finished
    row: dict[str, Any] = {"label": s.label, "seq_len": s.seq_len, "task": s.task,
                           "runs": len(s.runs), "finished": len(fin),
                           "status": _status_counts(s.runs),
                           "baseline": next((r.summary.get("baseline") for r in s.runs if "baseline" in r.summary), None),
                           "solved": sum(bool(r.summary.get("solved")) for r in fin),
                           "seeds": sorted(r.seed for r in s.runs if r.seed is not None),
                           "probed": any(r.probe is not None for r in s.runs), "curves": setting_curves(s, curve)}
    row["final_loss"] = mean_std(r.summary.get("final_loss") for r in fin)
    row["loss_over_baseline"] = mean_std(r.summary.get("loss_over_baseline") for r in fin)
    row["solved_step"] = mean_std(r.summary.get("solved_step") for r in fin if r.summary.get("solved"))
    final = [probe_numbers(r, curve, "final") for r in fin]
    init = [probe_numbers(r, curve, "init") for r in s.runs]
    for name in ("half_life", "gain", "horizon", "lyapunov_max", "attenuation_decades"):
        row[name] = mean_std(n[name] for n in final)
        row[f"{name}_init"] = mean_std(n[name] for n in init)
    return row


def _status_counts(runs: Sequence[Run]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        out[r.status] = out.get(r.status, 0) + 1
    return out
