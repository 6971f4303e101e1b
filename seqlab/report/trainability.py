"""Does the gradient at initialization predict whether a run will learn? (issue 13)

For every run with an outcome (finished or diverged) and a probe at step 0, the
step-0 statistics of the curve (default ``h_l0``) at the task's lag:

  log10 g(lag)/g(0)   the gradient that remains at the task's lag (measured, not fitted)
  horizon / lag       memory horizon (largest lag with g >= the probe's floor) over the lag
  lag x log10 gain    log10 gain^lag: the fitted per-step gain carried over the lag
  half-life / lag     ln 2 / -ln gain over the lag (capped at 1e3: infinite when gain >= 1)
  λ1                  the top Lyapunov exponent of layer 0

For each: ROC AUC over all runs (larger value -> solved; below 0.5 the other way), the
best single threshold (either direction) and its accuracy on all runs, and the
accuracy / AUC of that threshold rule fitted on the training folds and scored on the
held-out fold (stratified k-fold, repeated). Then a small classifier over the five
(standardized logistic regression), and trivial predictors that know only the cell
family, only T, both, or the whole setting but the seed (the training folds' solve rate
per value), and always the majority class: the probe's added value is what it gains over
those. Within each cell family with both outcomes, each statistic's AUC again (the family
predicts nothing there).

"Solved" is the task's own bar reached at any evaluation (summary.json ``solved``).
Runs without a step-0 probe, failed or unfinished runs are left out (counted).
The analysis refuses, with one line, a set with fewer than ``MIN_RUNS`` usable runs or
fewer than ``MIN_PER_CLASS`` in either outcome.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seqlab.files import save_figure
from seqlab.report.runs import DEFAULT_CURVE, Run, setting_of
from seqlab.report.stats import curve_key

MIN_RUNS = 10
MIN_PER_CLASS = 3
FOLDS = 5
REPEATS = 10
HALF_LIFE_CAP = 1e3          # half-life / lag when the gradient does not decay (gain >= 1)
LOG_G_FLOOR = -45.0          # log10 g(lag)/g(0) below float32's smallest values (the curve hit the floor)
OUTCOME_STATUSES = ("finished", "diverged")
STATISTICS = [  # key, label
    ("log_g_lag", "log10 g(lag)/g(0)"),
    ("horizon_over_lag", "horizon / lag"),
    ("log_gain_lag", "lag × log10 gain"),
    ("half_life_over_lag", "half-life / lag"),
    ("lyapunov_max", "λ1"),
]
TRIVIAL = [("cell", "cell family alone"), ("T", "T alone"), ("cell_T", "cell family and T"),
           ("setting", "the setting: every knob but the seed")]


class Refused(ValueError):
    """The set of runs cannot answer the question; the message is the one line to show."""


@dataclass
class RunPoint:
    """One run's step-0 statistics and outcome."""

    run: Run
    cell: str
    T: Any
    solved: bool
    loss_over_baseline: float
    solved_step: int | None
    stats: dict[str, float] = field(default_factory=dict)
    setting: str = ""                 # every knob but the seed (seqlab.report.runs.setting_of)


def _cell(run: Run) -> str:
    choices = run.config.get("choices") or {}
    return str(choices.get("model") or run.summary.get("model") or "?")


def step0_statistics(run: Run, curve: str = DEFAULT_CURVE) -> dict[str, float] | None:
    """The five statistics from ``run``'s probe at step 0, or None when it has none."""
    p = run.probe
    if p is None or "steps" not in p or "task_lag" not in p:
        return None
    idx = np.flatnonzero(np.asarray(p["steps"]) == 0)
    key = curve_key(p, curve)
    if idx.size == 0 or key is None or f"mean_{key}" not in p:
        return None
    i, lag = int(idx[0]), int(p["task_lag"])
    g = np.asarray(p[f"mean_{key}"][i], dtype=np.float64)
    if lag < 1 or lag >= g.size or not g[0] > 0:
        return None
    with np.errstate(divide="ignore"):
        log_g = float(np.log10(g[lag] / g[0])) if g[lag] > 0 else -math.inf
    fit = lambda name: float(p[f"{name}_{key}"][i]) if f"{name}_{key}" in p else math.nan  # noqa: E731
    gain, half_life = fit("gain"), fit("half_life")
    lyap = p.get("lyapunov_l0")
    return {
        "log_g_lag": max(log_g, LOG_G_FLOOR),
        "horizon_over_lag": fit("horizon") / lag,
        "log_gain_lag": lag * math.log10(gain) if gain > 0 else math.nan if math.isnan(gain) else LOG_G_FLOOR,
        "half_life_over_lag": min(half_life / lag, HALF_LIFE_CAP) if not math.isnan(half_life) else math.nan,
        "lyapunov_max": float(lyap[i][0]) if lyap is not None and lyap.ndim == 2 and lyap.shape[1] else math.nan,
    }


def collect(runs: Sequence[Run], curve: str = DEFAULT_CURVE) -> tuple[list[RunPoint], dict[str, int]]:
    """Usable runs, and how many were left out and why."""
    points, left_out = [], {"without an outcome (failed, unfinished, preempted)": 0, "without a step-0 probe": 0}
    for run in runs:
        if run.status not in OUTCOME_STATUSES:
            left_out["without an outcome (failed, unfinished, preempted)"] += 1
            continue
        stats = step0_statistics(run, curve)
        if stats is None:
            left_out["without a step-0 probe"] += 1
            continue
        s = run.summary
        lob = s.get("loss_over_baseline")
        if lob is None and run.metrics:  # a diverged run: its last evaluation
            evals = [m for m in run.metrics if "eval/loss_over_baseline" in m]
            lob = evals[-1]["eval/loss_over_baseline"] if evals else None
        points.append(RunPoint(run, _cell(run), run.seq_len, bool(s.get("solved")),
                               float(lob) if lob is not None else math.nan, s.get("solved_step"), stats,
                               " ".join(f"{k}={v}" for k, v in sorted(setting_of(run).items()))))
    return points, {k: v for k, v in left_out.items() if v}


def check_answerable(points: Sequence[RunPoint]) -> None:
    """Raise ``Refused`` (one line) unless there are enough runs of both outcomes."""
    n, solved = len(points), sum(p.solved for p in points)
    if n < MIN_RUNS or min(solved, n - solved) < MIN_PER_CLASS:
        what = "a single outcome" if solved in (0, n) else "too few runs"
        raise Refused(f"trainability: not computed ({what}): {n} runs with a step-0 probe and an outcome, "
                      f"{solved} solved and {n - solved} not; needs >= {MIN_RUNS} runs with >= {MIN_PER_CLASS} "
                      f"of each outcome")


# ----------------------------------------------------------------------------- predictors

def _best_threshold(x: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
    """The threshold and direction (+1: x >= t -> solved; -1: x <= t -> solved) of best accuracy."""
    xs = np.unique(x)
    cands = np.concatenate([[xs[0] - 1.0], (xs[:-1] + xs[1:]) / 2, [xs[-1] + 1.0]]) if xs.size else np.array([0.0])
    best = (-1.0, 0.0, 1)
    for t in cands:
        pred = x >= t
        for sign, p in ((1, pred), (-1, ~pred)):
            acc = float(np.mean(p == y))
            if acc > best[0] + 1e-12:
                best = (acc, float(t), sign)
    return best[1], best[2], best[0]


def _lookup_scores(train_keys, y_train, test_keys) -> np.ndarray:
    """Training solve rate per category (unseen: the overall rate)."""
    overall = float(np.mean(y_train))
    rates = {}
    for k in set(train_keys):
        m = np.array([tk == k for tk in train_keys])
        rates[k] = float(np.mean(y_train[m]))
    return np.array([rates.get(k, overall) for k in test_keys])


def _classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def _auc(y, score) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if len(set(y.tolist())) == 2 else math.nan


def analyze(points: Sequence[RunPoint]) -> dict:
    """Every predictor's AUC and accuracy (all runs, and over repeated stratified folds)."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    check_answerable(points)
    y = np.array([p.solved for p in points])
    n_min = int(min(y.sum(), (~y).sum()))
    folds = min(FOLDS, n_min)
    X = {key: np.array([p.stats[key] for p in points], dtype=np.float64) for key, _ in STATISTICS}
    usable = [key for key, _ in STATISTICS if np.isfinite(X[key]).all()]
    cats = {"cell": [p.cell for p in points], "T": [str(p.T) for p in points],
            "cell_T": [f"{p.cell}|{p.T}" for p in points], "setting": [p.setting for p in points]}
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=REPEATS, random_state=0)
    per_fold: dict[str, dict[str, list[float]]] = {}
    oof_wrong = np.zeros(len(points), dtype=int)  # the classifier's out-of-fold misses per run
    oof_seen = np.zeros(len(points), dtype=int)

    def add(name, acc, auc):
        d = per_fold.setdefault(name, {"accuracy": [], "auc": []})
        d["accuracy"].append(acc)
        d["auc"].append(auc)

    for train, test in splitter.split(np.zeros(len(y)), y):
        ytr, yte = y[train], y[test]
        majority = bool(ytr.mean() >= 0.5)
        add("majority", float(np.mean(yte == majority)), 0.5)
        for key in usable:
            t, sign, _ = _best_threshold(X[key][train], ytr)
            pred = (X[key][test] >= t) if sign > 0 else (X[key][test] <= t)
            add(key, float(np.mean(pred == yte)), _auc(yte, sign * X[key][test]))
        for name, keys in cats.items():
            score = _lookup_scores([keys[i] for i in train], ytr, [keys[i] for i in test])
            add(name, float(np.mean((score >= 0.5) == yte)), _auc(yte, score))
        if usable:
            feats = np.stack([X[k] for k in usable], axis=1)
            clf = _classifier().fit(feats[train], ytr)
            pred = clf.predict(feats[test])
            add("classifier", float(np.mean(pred == yte)), _auc(yte, clf.predict_proba(feats[test])[:, 1]))
            oof_wrong[test] += pred != yte
            oof_seen[test] += 1

    rows = []
    labels = dict(STATISTICS) | dict(TRIVIAL) | {
        "classifier": f"probe classifier (logistic regression on {len(usable)} statistics)",
        "majority": "majority class"}
    for name in ["majority", *dict(TRIVIAL), *usable, "classifier"]:
        if name not in per_fold:
            continue
        row = {"predictor": name, "label": labels[name], "kind": "probe" if name in X or name == "classifier"
               else "trivial",
               "cv_accuracy": _ms(per_fold[name]["accuracy"]), "cv_auc": _ms(per_fold[name]["auc"])}
        if name in X:
            t, sign, acc = _best_threshold(X[name], y)
            row.update(auc=_auc(y, X[name]), threshold=t, direction=">=" if sign > 0 else "<=", accuracy=acc)
        elif name in cats:
            row.update(auc=_auc(y, _lookup_scores(cats[name], y, cats[name])))
        rows.append(row)
    misses = [{"path": str(points[i].run.path), "cell": points[i].cell, "T": points[i].T,
               "solved": bool(y[i]), "missed_fraction": float(oof_wrong[i] / oof_seen[i])}
              for i in range(len(points)) if oof_seen[i] and oof_wrong[i] / oof_seen[i] > 0.5]
    within = []  # does the probe separate runs within one cell family (where the family says nothing)?
    for cell in sorted({p.cell for p in points}):
        m = np.array([p.cell == cell for p in points])
        ym = y[m]
        if ym.sum() and (~ym).sum():
            within.append({"cell": cell, "runs": int(m.sum()), "solved": int(ym.sum()),
                           "auc": {key: _auc(ym, X[key][m]) for key in usable},
                           "accuracy": {key: _best_threshold(X[key][m], ym)[2] for key in usable}})
    return {"runs": len(points), "solved": int(y.sum()), "folds": folds, "repeats": REPEATS,
            "statistics_used": usable, "predictors": rows, "misses": misses, "within_cell": within,
            "misses_by_group": _group_misses(misses, points)}


def _ms(xs: Sequence[float]) -> tuple[float, float, int]:
    a = np.asarray([x for x in xs if not math.isnan(x)], dtype=np.float64)
    return (float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan, int(a.size)) if a.size else \
        (math.nan, math.nan, 0)


def _group_misses(misses: list[dict], points: Sequence[RunPoint]) -> list[dict]:
    """Where the classifier fails: misses per (cell, T), next to how many runs that group has."""
    total: dict[tuple, list[int]] = {}
    for p in points:
        total.setdefault((p.cell, p.T), [0, 0])[0] += 1
        total[(p.cell, p.T)][1] += p.solved
    out: dict[tuple, dict] = {}
    for m in misses:
        g = out.setdefault((m["cell"], m["T"]), {"cell": m["cell"], "T": m["T"], "missed": 0,
                                                  "runs": total[(m["cell"], m["T"])][0],
                                                  "solved": total[(m["cell"], m["T"])][1]})
        g["missed"] += 1
    return sorted(out.values(), key=lambda g: (-g["missed"], g["cell"], str(g["T"])))


# ----------------------------------------------------------------------------- output

def trainability(runs: Sequence[Run], curve: str = DEFAULT_CURVE) -> dict:
    """The analysis as a plain dict; ``{"refused": line}`` when the runs cannot answer it."""
    points, left_out = collect(runs, curve)
    try:
        result = analyze(points)
    except Refused as e:
        return {"refused": str(e), "left_out": left_out}
    result["left_out"] = left_out
    result["curve"] = curve
    return _plain(result)


def _plain(x):
    """JSON-safe: tuples -> lists, NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _f(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}g}"


def _pm(stat) -> str:
    mean, std, n = stat
    if n == 0 or mean is None:
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


TABLE_HEADER = ["predictor", "AUC (all runs)", "best threshold", "its accuracy (all runs)",
                "CV accuracy", "CV AUC"]


def table_rows(result: dict) -> list[list[str]]:
    rows = []
    for r in result["predictors"]:
        thr = f"solved if {r['direction']} {_f(r['threshold'])}" if "threshold" in r else "—"
        rows.append([r["label"], _f(r.get("auc")), thr, _f(r.get("accuracy")), _pm(r["cv_accuracy"]),
                     _pm(r["cv_auc"]) if r["predictor"] != "majority" else "0.5"])
    return rows


def notes(result: dict) -> list[str]:
    """The paragraph(s) above the table (or the one-line refusal)."""
    left = "; ".join(f"{n} {why}" for why, n in result.get("left_out", {}).items())
    if "refused" in result:
        return [result["refused"] + (f" (left out: {left})" if left else "")]
    return [f"{result['runs']} runs with a step-0 probe and an outcome, {result['solved']} solved"
            + (f" (left out: {left})" if left else "") + f"; curve `{result['curve']}`. "
            f"AUC (all runs): larger value → solved (below 0.5: the other way). Best threshold and its "
            f"accuracy: fitted on all runs (optimistic). CV: the threshold rule, lookup table or classifier "
            f"fitted on the training folds and scored on the held-out fold, {result['folds']}-fold stratified, "
            f"repeated {result['repeats']} times: mean ± std over the {result['folds'] * result['repeats']} folds. "
            f"Trivial predictors know only the cell family and/or T, or the whole setting but the seed (the training "
            f"folds' solve rate per value; the setting is the ceiling of what the configuration alone tells)."]


def misses_lines(result: dict) -> list[str]:
    if "refused" in result:
        return []
    out = []
    if result.get("within_cell"):
        labels = dict(STATISTICS)
        keys = result["statistics_used"]
        out += ["Within one cell family (the runs of a family with both outcomes; the family itself "
                "predicts nothing there): AUC / best-threshold accuracy, on all of the family's runs:", "",
                "| cell | runs | solved | " + " | ".join(labels[k] for k in keys) + " |",
                "|---|---|---|" + "---|" * len(keys)]
        for w in result["within_cell"]:
            out.append(f"| {w['cell']} | {w['runs']} | {w['solved']} | "
                       + " | ".join(f"{_f(w['auc'][k])} / {_f(w['accuracy'][k])}" for k in keys) + " |")
        out.append("")
    if not result["misses_by_group"]:
        return out
    out += ["Where the probe classifier fails (runs it misclassified in more than half of their held-out folds), "
           "per cell and T:", ""]
    for g in result["misses_by_group"]:
        out.append(f"- {g['cell']}, T = {g['T']}: {g['missed']} of {g['runs']} runs ({g['solved']} of them solved)")
    return out


def plot_trainability(runs: Sequence[Run], path: Path, curve: str = DEFAULT_CURVE, title: str = "",
                      result: dict | None = None) -> Path | None:
    """Each statistic (x) against the outcome (y: loss / baseline at the end, log), colour = cell,
    o = solved, x = not; the best threshold dashed."""
    from seqlab.report.figures import _pyplot

    points, _ = collect(runs, curve)
    if not points:
        return None
    plt = _pyplot()
    cells = sorted({p.cell for p in points})
    cmap = plt.get_cmap("tab10")
    color = {c: cmap(i % 10) for i, c in enumerate(cells)}
    thresholds = {r["predictor"]: r.get("threshold") for r in (result or {}).get("predictors", [])}
    fig, axes = plt.subplots(1, len(STATISTICS), figsize=(3.3 * len(STATISTICS), 3.4), sharey=True)
    for ax, (key, label) in zip(axes, STATISTICS):
        for c in cells:
            for solved, marker in ((True, "o"), (False, "x")):
                pts = [p for p in points if p.cell == c and p.solved == solved and np.isfinite(p.stats[key])]
                if pts:
                    ax.scatter([p.stats[key] for p in pts], [max(p.loss_over_baseline, 1e-4) for p in pts],
                               marker=marker, s=18, color=color[c], alpha=0.75, linewidths=1.0,
                               facecolors=color[c] if solved else None,
                               label=f"{c} ({'solved' if solved else 'not solved'})")
        xs = [p.stats[key] for p in points if np.isfinite(p.stats[key])]
        t = thresholds.get(key)
        if t is not None and xs and min(xs) <= t <= max(xs):  # not for a rule that puts every run on one side
            ax.axvline(t, color="0.4", ls="--", lw=0.9)
        ax.set_xlabel(label + (" (log)" if key == "half_life_over_lag" else ""))
        if key == "half_life_over_lag":  # from ~0.01 to the cap (no decay) 1e3
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("final eval loss / baseline")
    seen = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    fig.legend(list(seen.values()), list(seen.keys()), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)
    fig.suptitle((title + ": " if title else "") + "step-0 probe statistics against the outcome "
                 "(o solved, x not; dashed: best threshold)", fontsize=10)
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=110, bbox_inches="tight")  # atomically, never through a link
    finally:
        plt.close(fig)
    return path
