"""A sweep as separate runs (the parallel launcher, 2 jobs) against the same sweep as populations
(``hydra/launcher=batched``, issue 20): wall time, throughput per member, peak memory.

    python benchmarks/population.py                         # every part at its default sizes
    python benchmarks/population.py --parts grid --grids small --ms 1 4 16 64 --repeats 3
    python benchmarks/population.py --parts preset --preset-steps 300 --preset-lens 20 40
    python benchmarks/population.py --quick                 # smoke run on tiny sizes (tests/test_benchmarks.py)

Each measurement is one fresh ``python -m seqlab -m ...`` process (as a user runs the sweep), timed from
launch to exit; the two launchers of one setting run back to back and their repeats are interleaved (one
round = both launchers, order alternating), so load from other processes hits both alike; the ratio is the
median of the per-round ratios. Threads are pinned: every job runs ``threads=1`` and the environment sets
OMP_NUM_THREADS=MKL_NUM_THREADS=1. The load average at the start and end of every measurement is recorded.

Parts:
  grid    an lr x seed grid of M jobs (2 learning rates x M/2 seeds; M = 1 is one job), one population
          for the batched launcher. Sizes: ``small`` = the trainability sweep's (delayed recall T=40, H=32,
          B=32, clip 1), ``long`` = the long-memory table's (adding T=200, H=64, B=64, clip 1), each with
          probe=none and one evaluation at the end, so the figures are the training loop's.
  preset  ``+experiment=trainability_boundary`` as it is (probe, evaluations, Lyapunov spectra), with
          ``--preset-steps`` updates (eval and probe cadence scaled to keep their number: 15 evaluations,
          3 probes + the last) at the lengths ``--preset-lens``; both launchers with n_jobs=2.

Reported per setting and launcher: wall time (s, median), member-steps per second (jobs x steps / wall),
the training throughput per member from the summaries (steps/s inside the loop, mean over members), and
peak RSS (the largest process of the sweep: the launcher's own or a worker's, from RUSAGE_CHILDREN).
Writes benchmarks/results/population-<device>-<cores>cores[-quick].json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqlab.files import write_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMMON = ["logger=none", "progress=false", "threads=1"]
GRIDS = {
    "small": dict(model="gru", overrides=["task=delayed_recall", "seq_len=40", "model.hidden_size=32", "batch_size=32",
                                         "grad_clip=1.0", "eval_size=256"], steps=200, lrs=("1e-3", "3e-3")),
    "long": dict(model="gru", overrides=["task=adding", "seq_len=200", "model.hidden_size=64", "batch_size=64",
                                        "grad_clip=1.0", "eval_size=256"], steps=60, lrs=("1e-3", "3e-3")),
}
QUICK_GRID = dict(model="gru", overrides=["task=adding", "seq_len=10", "model.hidden_size=8", "batch_size=8",
                                          "eval_size=32"], steps=5, lrs=("1e-3", "3e-3"))
# Runs a command and prints the largest RSS of its process tree (KB), as seen by this wrapper.
WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(r.returncode)")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_sweep(args: list[str], launcher: str, workdir: Path) -> dict:
    """One multirun in a fresh process: wall time, peak RSS, and the summaries it wrote."""
    sweep_dir = workdir / f"sweep-{launcher}-{time.monotonic_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", WRAP, sys.executable, "-m", "seqlab", "-m", *args, f"hydra/launcher={launcher}",
           "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"]
    load0, t0 = loadavg(), time.perf_counter()
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{launcher} sweep failed ({r.returncode}): {r.stderr[-2000:]}")
    rss = int(next(ln.split()[1] for ln in r.stderr.splitlines() if ln.startswith("MAXRSS_KB")))
    summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
    shutil.rmtree(sweep_dir, ignore_errors=True)
    steps = sum(s["steps"] for s in summaries)
    return {"wall_s": wall, "jobs": len(summaries), "member_steps_per_s": steps / wall,
            "train_steps_per_s_per_member": statistics.mean(s["steps_per_s"] for s in summaries),
            "peak_rss_mb": rss / 1024, "load": [load0, loadavg()]}


def compare(args: list[str], repeats: int, workdir: Path) -> dict:
    """Both launchers on the same sweep, interleaved repeats; medians and the median per-round ratio."""
    rounds = []
    for i in range(repeats):
        order = ("parallel", "batched") if i % 2 == 0 else ("batched", "parallel")
        rounds.append({launcher: run_sweep(args, launcher, workdir) for launcher in order})
    out = {"args": args, "rounds": rounds}
    for launcher in ("parallel", "batched"):
        out[launcher] = {k: statistics.median(r[launcher][k] for r in rounds)
                         for k in ("wall_s", "member_steps_per_s", "train_steps_per_s_per_member", "peak_rss_mb")}
    out["speedup"] = statistics.median(r["parallel"]["wall_s"] / r["batched"]["wall_s"] for r in rounds)
    return out


def grid_args(grid: dict, m: int) -> list[str]:
    lrs = grid["lrs"][:1] if m == 1 else grid["lrs"]
    seeds = ",".join(str(s) for s in range(max(m // len(lrs), 1)))
    steps = grid["steps"]
    return [*COMMON, f"model={grid['model']}", *grid["overrides"], f"steps={steps}", f"eval_every={steps}",
            f"log_every={steps}", "probe=none", f"optim.lr={','.join(lrs)}", f"seed={seeds}"]


def preset_args(steps: int, lens: list[int]) -> list[str]:
    return ["+experiment=trainability_boundary", *COMMON, f"steps={steps}", f"eval_every={max(steps // 15, 1)}",
            f"probe.every={max(steps // 3, 1)}", f"seq_len={','.join(map(str, lens))}"]


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| setting | jobs | parallel wall s | batched wall s | speed-up | member-steps/s parallel | "
             "batched | train steps/s per member, parallel | batched | peak RSS MB parallel | batched |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        p, b = r["parallel"], r["batched"]
        jobs = r["rounds"][0]["batched"]["jobs"]
        lines.append(f"| {name} | {jobs} | {p['wall_s']:.1f} | {b['wall_s']:.1f} | {r['speedup']:.2f}x | "
                     f"{p['member_steps_per_s']:.0f} | {b['member_steps_per_s']:.0f} | "
                     f"{p['train_steps_per_s_per_member']:.1f} | {b['train_steps_per_s_per_member']:.1f} | "
                     f"{p['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["grid", "preset"], choices=["grid", "preset"])
    ap.add_argument("--grids", nargs="+", default=["small", "long"], choices=sorted(GRIDS))
    ap.add_argument("--ms", nargs="+", type=int, default=[1, 4, 16, 64], help="jobs per grid (M)")
    ap.add_argument("--long-ms", nargs="+", type=int, default=[1, 4, 16], help="M for the long grid")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset-steps", type=int, default=300)
    ap.add_argument("--preset-lens", nargs="+", type=int, default=[20, 40])
    ap.add_argument("--preset-repeats", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    results = {"machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
               "quick": a.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "load_start": loadavg(), "grid": {}, "preset": None}
    import torch

    results["machine"]["torch"] = torch.__version__
    rows = []
    out = a.out or HERE / "results" / f"population-cpu-{os.cpu_count()}cores{'-quick' if a.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every measurement: a long run stopped early keeps what it measured
        results["load_end"], results["table"] = loadavg(), table(rows)
        write_text(out, json.dumps(results, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "grid" in a.parts:
            grids = {"quick": QUICK_GRID} if a.quick else {g: GRIDS[g] for g in a.grids}
            for name, grid in grids.items():
                ms = [1, 4] if a.quick else (a.long_ms if name == "long" else a.ms)
                for m in ms:
                    r = compare(grid_args(grid, m), 1 if a.quick else a.repeats, work)
                    results["grid"][f"{name}/M={m}"] = r
                    rows.append((f"{name} grid, M={m}", r))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
                    save()
        if "preset" in a.parts:
            steps, lens = (6, [20]) if a.quick else (a.preset_steps, a.preset_lens)
            extra = ["model.layer.recurrent_gain=0.5,1.0", "seed=0"] if a.quick else []
            r = compare(preset_args(steps, lens) + extra, 1 if a.quick else a.preset_repeats, work)
            results["preset"] = r
            rows.append((f"trainability_boundary, {steps} steps, T={','.join(map(str, lens))}", r))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            save()
    save()
    print(results["table"])
    print(f"written: {out}")
    return results


if __name__ == "__main__":
    main()
