"""Where a run's start-up goes: wall time from launching ``python -m seqlab`` to its first optimizer step.

    python benchmarks/startup.py                       # this checkout, 5 repeats of each variant
    python benchmarks/startup.py --src /path/to/other/checkout --repeats 5   # e.g. the code before a change

Each repeat launches a fresh ``python`` that runs seqlab's own entry point (``seqlab.__main__.main``,
the quick-start run: adding, rnn, T=200) and stops the process at its first optimizer step. The child
marks, in seconds since the parent launched it, when each phase ended:

  entry         interpreter start and ``import seqlab.__main__`` (hydra, omegaconf)
  preflight     composing and validating the command line: imports torch and seqlab.config, and builds
                the optimizer, where torch.optim imports torch._dynamo (and sympy) on first use
  hydra         Hydra's own compose, the run directory, logging set-up, ``import seqlab.train``
  setup         validate again, threads/denormals, build task and model
  optimizer     build the optimizer
  tracker       W&B init (offline), or nothing with logger=none
  eval0         the step-0 evaluation (eval_size=1000 held-out sequences) and its probe batch
  probe0        the step-0 gradient probe with its Lyapunov spectrum (probe=default)
  first_step    the progress bar and the first batch, forward and backward

Variants: the checkout's defaults, ``probe=none``, ``logger=none``, both, ``threads=null`` (torch's
default, one thread per core: seqlab's default before issue 14) and ``threads=1``. Reported: the median
over repeats of each phase's duration and of the total, as wall time and as the process's CPU time
(under load the steadier measure of the work; it leaves out the W&B service process). Repeats are
interleaved over the variants, so load from other processes hits all alike; the load average is
recorded. ``--modules`` adds which heavy modules each phase imported (from ``sys.modules``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ("entry", "preflight", "hydra", "setup", "optimizer", "tracker", "eval0", "probe0", "first_step")
VARIANTS = {"default": [], "probe=none": ["probe=none"], "logger=none": ["logger=none"],
            "probe=none logger=none": ["probe=none", "logger=none"], "threads=null": ["threads=null"],
            "threads=1": ["threads=1"]}
HEAVY = ("torch", "torch._dynamo", "sympy", "wandb", "wandb.sdk.launch", "matplotlib", "matplotlib.pyplot",
         "scipy", "pandas", "hydra_plugins", "optuna", "joblib", "submitit", "tqdm")

# The child: wrap seqlab's phase functions (by module attribute, as the loop looks them up) and exit at
# the first optimizer step. Only marks and sys.modules are read; nothing of seqlab is changed.
CHILD = r"""
import json, os, sys, time
T0 = float(os.environ["SEQLAB_STARTUP_T0"])
HEAVY = json.loads(os.environ["SEQLAB_STARTUP_HEAVY"])
marks, cpu, mods = {}, {}, {}
def mark(name):
    if name not in marks:
        marks[name] = time.time() - T0
        cpu[name] = time.process_time()
        mods[name] = [m for m in HEAVY if m in sys.modules]
def wrap(module, attr, name):
    fn = getattr(module, attr, None)
    if fn is None:
        return
    def inner(*a, **k):
        out = fn(*a, **k)
        mark(name)
        return out
    setattr(module, attr, inner)

import importlib.abc, importlib.util
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "seqlab.train":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        real = spec.loader.exec_module
        def exec_module(module):
            real(module)
            import torch
            from torch.optim.optimizer import register_optimizer_step_pre_hook
            wrap(module, "setup", "setup")
            wrap(module, "build_optimizer", "optimizer")
            wrap(module, "_make_tracker", "tracker")
            ev = module.evaluate
            def evaluate(*a, **k):
                mark("tracker")  # logger=none: no tracker phase
                out = ev(*a, **k)
                mark("eval0")
                return out
            module.evaluate = evaluate
            wrap(module, "probe", "probe0")
            train = module.train
            def train_(*a, **k):
                mark("hydra")
                return train(*a, **k)
            module.train = train_
            def first_step(*_):
                mark("eval0"); mark("probe0"); mark("first_step")
                print("STARTUP " + json.dumps({"marks": marks, "cpu": cpu, "modules": mods}), flush=True)
                os._exit(0)
            register_optimizer_step_pre_hook(first_step)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Hook())

import seqlab.__main__ as entry
mark("entry")
pre = entry.preflight
def preflight(*a, **k):
    out = pre(*a, **k)
    mark("preflight")
    return out
entry.preflight = preflight
sys.argv = ["seqlab"] + sys.argv[1:]
entry.main()
"""


def launch(src: Path, overrides: list[str], run_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "WANDB_MODE": "offline", "SEQLAB_STARTUP_HEAVY": json.dumps(HEAVY)}
    env.pop("OMP_NUM_THREADS", None)  # threads=null must mean torch's own default (one per core)
    args = ["task=adding", "model=rnn", "seq_len=200", "progress=false",
            f"hydra.run.dir={run_dir}", *overrides]
    env["SEQLAB_STARTUP_T0"] = repr(time.time())
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env,
                          cwd=run_dir.parent, timeout=600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("STARTUP ")), None)
    if line is None:
        raise RuntimeError(f"no first step (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    got = json.loads(line[len("STARTUP "):])
    out = {"modules": got["modules"]}
    for kind in ("marks", "cpu"):
        marks, prev, phases = got[kind], 0.0, {}
        for p in PHASES:  # a phase that did not happen (no tracker, no probe) takes 0 s
            t = marks.get(p, prev)
            phases[p] = max(t - prev, 0.0)
            prev = max(prev, t)
        out["wall" if kind == "marks" else "cpu"] = {"total": marks["first_step"], **phases}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=HERE.parent, help="checkout whose seqlab is measured")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS)[:4], choices=list(VARIANTS))
    p.add_argument("--modules", action="store_true", help="print the heavy modules each phase imported")
    p.add_argument("--out", type=Path, help="results JSON")
    args = p.parse_args(argv)
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.repeats):
            order = args.variants[r % len(args.variants):] + args.variants[:r % len(args.variants)]
            for v in order:
                runs[v].append(launch(args.src.resolve(), VARIANTS[v], Path(d) / f"{r}-{list(VARIANTS).index(v)}"))
        load.append(os.getloadavg())
    res = {"src": str(args.src.resolve()), "repeats": args.repeats, "python": sys.version.split()[0],
           "load_start_end": [[round(x, 2) for x in la] for la in load], "date": time.strftime("%Y-%m-%d %H:%M"),
           "median_s": {kind: {v: {k: statistics.median(x[kind][k] for x in rs) for k in ("total", *PHASES)}
                               for v, rs in runs.items()} for kind in ("wall", "cpu")},
           "runs": runs}
    lines = []
    for kind, what in (("wall", "wall time"), ("cpu", "CPU time of the process (not its W&B service)")):
        lines += ["", f"{what}, s: median of {args.repeats}", "",
                  "| variant | total | " + " | ".join(PHASES) + " |", "|---|" + "---:|" * (len(PHASES) + 1)]
        for v, m in res["median_s"][kind].items():
            lines.append(f"| {v} | {m['total']:.2f} | " + " | ".join(f"{m[p]:.2f}" for p in PHASES) + " |")
    res["markdown"] = "\n".join(lines)
    print(f"{res['src']}: seconds to the first step; load average at start and end {res['load_start_end']}")
    print(res["markdown"])
    if args.modules:
        for v, rs in runs.items():
            print(v, json.dumps(rs[-1]["modules"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
