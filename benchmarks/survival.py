"""Runs that survive: the adversarial round behind the README's "Runs that survive" counts.

    python benchmarks/survival.py [--kills 20] [--out survival.json]

Three experiments, each through the CLI as a user meets it (tiny runs, threads=1, logger=none):
  kills        SIGKILL a run at a random moment (uniform over an uninterrupted run's duration, start-up
               included), rerun the same command: identical = every metrics.jsonl row and every result
               in summary.json (timings aside) equal to the uninterrupted run's.
  corruptions  damage one file of a run directory killed mid-run, rerun: handled = exit 2 with one line
               naming the file and no traceback, the directory left as it was; or, where the file can be
               rebuilt from the checkpoint (summary.json, config.yaml), the rerun's results identical.
  divergence   configurations whose loss, gradient or evaluation turns non-finite: caught = exit 3 and
               summary.json status "diverged" (never "finished" with a non-finite number).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = ["task=adding", "model=gru", "seq_len=12", "model.hidden_size=8", "batch_size=8", "eval_size=32",
        "eval_every=50", "log_every=10", "checkpoint_every=25", "probe.every=100", "probe.batch_size=8",
        "probe.lyapunov_k=2", "probe.plots=false", "progress=false", "logger=none", "threads=1"]
TIMING = ("wall_time_s", "train_time_s", "steps_per_s", "probe_time_s", "resumed_from_step", "segments",
          "already_finished")


def seqlab(cwd: Path, *args: str, wait: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    cmd = [sys.executable, "-m", "seqlab", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def record(run_dir: Path) -> tuple[list, dict]:
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines() if r.strip()]
    summary = json.loads((run_dir / "summary.json").read_text())
    return rows, {k: v for k, v in summary.items() if k not in TIMING}


def kills(tmp: Path, n: int, rng: random.Random) -> dict:
    args = [*BASE, "steps=400"]
    t0 = time.perf_counter()
    r = seqlab(tmp, f"hydra.run.dir={tmp / 'ref'}", *args)
    duration = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    reference = record(tmp / "ref")
    identical, cases = 0, []
    for i in range(n):
        run_dir = tmp / f"kill{i}"
        at = rng.uniform(0, duration)
        p = seqlab(tmp, f"hydra.run.dir={run_dir}", *args, wait=False)
        time.sleep(at)
        p.send_signal(signal.SIGKILL)
        p.communicate()
        killed_with = json.loads((run_dir / "summary.json").read_text())["status"] \
            if (run_dir / "summary.json").exists() else "no summary"
        r = seqlab(tmp, f"hydra.run.dir={run_dir}", *args)
        same = r.returncode == 0 and record(run_dir) == reference
        identical += same
        cases.append({"kill_at_s": round(at, 2), "state_at_kill": killed_with, "rerun_exit": r.returncode,
                      "identical": same, "stderr": r.stderr.strip()[-300:]})
    return {"kills": n, "identical": identical, "reference_duration_s": round(duration, 1), "cases": cases}


def _evil(path: Path) -> None:
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {path.parent / 'PWNED'}",))

    torch.save({"format_version": 1, "loop": Evil()}, path)


def _structure(path: Path) -> None:
    import torch

    torch.save({"format_version": 1, "model": [1, 2, 3]}, path)


DAMAGE = {
    "checkpoint.pt truncated": ("checkpoint.pt", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),
    "checkpoint.pt empty": ("checkpoint.pt", lambda p: p.write_bytes(b"")),
    "checkpoint.pt garbage": ("checkpoint.pt", lambda p: p.write_bytes(os.urandom(4000))),
    "checkpoint.pt wrong structure": ("checkpoint.pt", _structure),
    "checkpoint.pt pickled callable": ("checkpoint.pt", _evil),
    "probe.npz truncated": ("probe.npz", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),
    "probe.npz empty": ("probe.npz", lambda p: p.write_bytes(b"")),
    "probe.npz garbage": ("probe.npz", lambda p: p.write_bytes(os.urandom(4000))),
    "probe.npz deleted": ("probe.npz", lambda p: p.unlink()),
    "metrics.jsonl garbage line": ("metrics.jsonl", lambda p: p.write_text("{oops\n" + p.read_text())),
    "metrics.jsonl binary": ("metrics.jsonl", lambda p: p.write_bytes(os.urandom(4000))),
    "metrics.jsonl deleted": ("metrics.jsonl", lambda p: p.unlink()),
    "metrics.jsonl empty": ("metrics.jsonl", lambda p: p.write_text("")),
    "metrics.jsonl early rows gone": ("metrics.jsonl", lambda p: p.write_text(p.read_text().split("\n", 2)[2])),
    "metrics.jsonl not objects": ("metrics.jsonl", lambda p: p.write_text("[1]\n\"x\"\n")),
    "summary.json garbage (rebuilt)": ("summary.json", lambda p: p.write_bytes(os.urandom(300))),
    "config.yaml deleted (rebuilt)": ("config.yaml", lambda p: p.unlink()),
}


def corruptions(tmp: Path) -> dict:
    short, full = [*BASE, "steps=150"], [*BASE, "steps=300"]
    r = seqlab(tmp, f"hydra.run.dir={tmp / 'cref'}", *full)
    assert r.returncode == 0, r.stderr
    reference = record(tmp / "cref")
    handled, cases = 0, []
    for i, (what, (name, damage)) in enumerate(DAMAGE.items()):
        run_dir = tmp / f"bad{i}"
        # a run that stopped at step 150 of 300 (finished with steps=150, then resumed with steps=300),
        # or, for the files a rerun rebuilds, a finished 300-step run
        rebuilt = "rebuilt" in what
        r = seqlab(tmp, f"hydra.run.dir={run_dir}", *(full if rebuilt else short))
        assert r.returncode == 0, r.stderr
        damage(run_dir / name)
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".seqlab.lock"}
        r = seqlab(tmp, f"hydra.run.dir={run_dir}", *full)
        after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".seqlab.lock"}
        lines = r.stderr.strip().splitlines()
        if rebuilt:
            ok = r.returncode == 0 and record(run_dir) == reference
        else:
            ok = (r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr and name in r.stderr
                  and after == before and not (run_dir / "PWNED").exists())
        handled += ok
        cases.append({"damage": what, "exit": r.returncode, "handled": ok, "stderr": r.stderr.strip()[-400:]})
    return {"corruptions": len(DAMAGE), "handled": handled, "cases": cases}


DIVERGING = {
    "identity RNN, orthogonal, SGD lr=50": ["model=rnn", "model.layer.activation=identity",
                                            "model.layer.init=orthogonal", "optim=sgd", "optim.lr=50"],
    "the same with on_nonfinite=skip": ["model=rnn", "model.layer.activation=identity", "model.layer.init=orthogonal",
                                        "optim=sgd", "optim.lr=50", "on_nonfinite=skip"],
    "identity RNN, recurrent gain 10, evaluation only (steps=0)": [
        "model=rnn", "model.layer.activation=identity", "model.layer.init=orthogonal",
        "model.layer.recurrent_gain=10", "seq_len=60", "steps=0"],
    "tanh RNN, SGD lr=1e30": ["model=rnn", "optim=sgd", "optim.lr=1e30"],
    "tanh RNN, SGD lr=1e30, on_nonfinite=skip": ["model=rnn", "optim=sgd", "optim.lr=1e30", "on_nonfinite=skip"],
    "ReLU RNN, recurrent gain 3, SGD lr=10": ["model=rnn", "model.layer.activation=relu",
                                             "model.layer.recurrent_gain=3", "optim=sgd", "optim.lr=10"],
    "LSTM, SGD lr=1e30": ["model=lstm", "optim=sgd", "optim.lr=1e30"],
    "GRU, SGD lr=1e30, on_nonfinite=skip": ["model=gru", "optim=sgd", "optim.lr=1e30", "on_nonfinite=skip"],
}


def divergence(tmp: Path) -> dict:
    caught, cases = 0, []
    for i, (what, extra) in enumerate(DIVERGING.items()):
        run_dir = tmp / f"div{i}"
        r = seqlab(tmp, f"hydra.run.dir={run_dir}", *BASE, "steps=60", "eval_every=5", *extra)
        status = json.loads((run_dir / "summary.json").read_text()).get("status") \
            if (run_dir / "summary.json").exists() else None
        ok = r.returncode == 3 and status == "diverged"
        caught += ok
        cases.append({"config": what, "exit": r.returncode, "status": status, "caught": ok,
                      "stderr": r.stderr.strip()[-300:]})
    return {"configs": len(DIVERGING), "caught": caught, "cases": cases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="survival.json")
    a = ap.parse_args()
    result = {"machine": "2 CPU cores shared with other jobs", "threads": 1}
    experiments = {"divergence": divergence, "corruptions": corruptions,
                   "kills": lambda tmp: kills(tmp, a.kills, random.Random(a.seed))}
    with tempfile.TemporaryDirectory() as d:
        for key, experiment in experiments.items():
            result[key] = experiment(Path(d))
            Path(a.out).write_text(json.dumps(result, indent=2) + "\n")  # after each, so a stop keeps the rest
    for key, r in result.items():
        if not isinstance(r, dict):
            continue
        counts = {k: v for k, v in r.items() if k != "cases"}
        print(key, counts)
        for c in r["cases"]:
            if not (c.get("identical") or c.get("handled") or c.get("caught")):
                print("   NOT:", c)


if __name__ == "__main__":
    main()
