"""Issue 20's done-when check: a multirun of 8 seeds x 2 learning rates of a small GRU on adding, run with
the batched launcher (one population of 16) and the same 16 jobs run separately (the basic launcher: each
job its own run on the lone path), compared job by job.

    python benchmarks/population_equality.py            # writes benchmarks/results/population-equality.json
    python benchmarks/population_equality.py --steps 40 --seeds 2 --out /tmp/eq.json   # smaller

Reported per job and as the maximum over jobs (relative difference |a - b| / max(|a|, |b|)):
  * every float of every metrics.jsonl row (eval loss and accuracy, train loss and grad norm, per-layer
    gradient and weight norms; the per-layer update ratios are reported apart: a ratio of two small
    differences, it carries the parameters' rounding most);
  * the summary's final loss (and whether status, solved step, final accuracy and the summary's keys agree);
  * probe.npz: the gradient curves (mean_, q25_/q50_/q75_, total_, gain_ keys), elements above 1e-12 in
    size (below that the float32 noise floor of the curve, docs/probe.md), and the Lyapunov spectra
    (all exponents at step 0, the largest at every probe);
  * W&B: each job's own run id, its offline run directory present.
Both sweeps run with threads=1, W&B offline, in fresh processes (python -m seqlab -m ...).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from seqlab.files import write_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CURVES = ("mean_", "q25_", "q50_", "q75_", "total_", "gain_")


def rel(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(scale > 0, np.abs(a - b) / scale, 0.0)
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
    return np.where(both_nan | same_inf, 0.0, np.where(np.isfinite(r), r, np.inf))


def compare(alone: Path, member: Path) -> dict:
    out: dict = {}
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (alone, member)]
    out["metrics_rows_same_steps"] = [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]]
    metrics, ratios = [0.0], [0.0]
    for ra, rb in zip(*rows):
        for k, v in ra.items():
            if isinstance(v, float) and k in rb:
                (ratios if k.startswith("train/update_ratio") else metrics).append(float(rel(v, rb[k])))
    out["metrics_max_rel"], out["update_ratio_max_rel"] = max(metrics), max(ratios)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (alone, member))
    out["status"] = [sa["status"], sb["status"]]
    out["final_loss"] = [sa.get("final_loss"), sb.get("final_loss")]
    out["final_loss_rel"] = float(rel(sa["final_loss"], sb["final_loss"]))
    out["same_solved_step_accuracy_keys"] = (sa["solved_step"] == sb["solved_step"] and
                                             sa["final_accuracy"] == sb["final_accuracy"] and set(sa) == set(sb))
    pa, pb = np.load(alone / "probe.npz"), np.load(member / "probe.npz")
    curves, lyap0, lyap_top = [0.0], [0.0], [0.0]
    for k in pa.files:
        if k.startswith(CURVES):
            a, b = pa[k].astype(np.float64), pb[k].astype(np.float64)
            big = np.maximum(np.abs(a), np.abs(b)) > 1e-12
            curves.append(float(rel(a[big], b[big]).max()) if big.any() else 0.0)
        elif k.startswith("lyapunov_l"):
            lyap0.append(float(rel(pa[k][0], pb[k][0]).max()))
            lyap_top.append(float(rel(pa[k][:, 0], pb[k][:, 0]).max()))
    out["probe_files_equal"] = pa.files == pb.files
    out["probe_curves_max_rel"], out["lyapunov_step0_max_rel"], out["lyapunov_top_max_rel"] = (
        max(curves), max(lyap0), max(lyap_top))
    out["wandb_run"] = sb.get("wandb_run")
    out["wandb_offline_dir"] = bool(sb.get("wandb_run")) and any((member / "wandb").glob(f"offline-run-*-{sb['wandb_run']}"))
    return out


def sweep(launcher: str, args: list[str], where: Path) -> tuple[float, list[Path]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "seqlab", "-m", *args, f"hydra/launcher={launcher}",
                        f"hydra.sweep.dir={where}"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{launcher} sweep failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall, sorted((d for d in where.iterdir() if d.name.isdigit()), key=lambda d: int(d.name))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "population-equality.json")
    a = ap.parse_args(argv)
    every = max(a.steps // 4, 1)
    args = ["model=gru", "task=adding", "seq_len=30", "model.hidden_size=16", "batch_size=32", f"steps={a.steps}",
            f"eval_every={every}", f"log_every={max(every // 2, 1)}", "eval_size=256", f"probe.every={every * 2}",
            "probe.lyapunov_steps=500", "probe.lyapunov_warmup=100", "probe.plots=false", "logger=wandb",
            "progress=false", "threads=1", "optim.lr=1e-3,3e-3", f"seed={','.join(map(str, range(a.seeds)))}"]
    result = {"command": "python -m seqlab -m " + " ".join(args) + " hydra/launcher=batched|basic",
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        wall_b, batched = sweep("batched", args, Path(tmp) / "batched")
        wall_s, alone = sweep("basic", args, Path(tmp) / "separate")
        assert [d.name for d in batched] == [d.name for d in alone], "the two sweeps wrote different jobs"
        jobs = {d.name: compare(s, d) for s, d in zip(alone, batched)}
    result.update(load_end=os.getloadavg(), jobs_batched=len(batched), jobs_separate=len(alone),
                  wall_s={"batched": wall_b, "separate_basic_launcher": wall_s}, jobs=jobs)
    keys = ("metrics_max_rel", "update_ratio_max_rel", "final_loss_rel", "probe_curves_max_rel",
            "lyapunov_step0_max_rel", "lyapunov_top_max_rel")
    result["max"] = {k: max(j[k] for j in jobs.values()) for k in keys}
    result["all"] = {
        "finished": all(j["status"] == ["finished", "finished"] for j in jobs.values()),
        "same_solved_step_accuracy_keys": all(j["same_solved_step_accuracy_keys"] for j in jobs.values()),
        "same_metric_steps_and_probe_files": all(j["metrics_rows_same_steps"] and j["probe_files_equal"]
                                                 for j in jobs.values()),
        "own_wandb_runs": len({j["wandb_run"] for j in jobs.values()}) == len(jobs) and
                          all(j["wandb_offline_dir"] for j in jobs.values()),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(a.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("jobs_batched", "wall_s", "max", "all")}, indent=2))
    print(f"written: {a.out}")
    return result


if __name__ == "__main__":
    main()
