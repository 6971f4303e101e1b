"""Runs that survive: the adversarial round behind docs/guide.md's "Runs that survive" counts.

    python benchmarks/survival.py [--kills 20] [--out survival.json]

Five experiments, each through the CLI as a user meets it (tiny runs, threads=1, logger=none):
  kills        SIGKILL a run at a random moment (uniform over an uninterrupted run's duration, start-up
               included), rerun the same command: identical = every metrics.jsonl row and every result
               in summary.json (timings aside) equal to the uninterrupted run's.
  corruptions  damage one file of a run directory killed mid-run, rerun: handled = exit 2 with one line
               naming the file and no traceback, the directory left as it was; or, where the file can be
               rebuilt from the checkpoint (summary.json, config.yaml), the rerun's results identical.
  divergence   configurations whose loss, gradient or evaluation turns non-finite: caught = exit 3 and
               summary.json status "diverged" (never "finished" with a non-finite number).
  trust        (issue 22) a stored config naming torch.load / numpy.load / builtins.open / os.system,
               through the probe CLI, resume, the report and the claims; --experimental-rerun; every file
               a run and the report write, linked to an outside file first; the probe CLI into a training
               run's directory; two runs started together into one directory (3 times). handled = one
               line, exit 2, nothing run, no outside file changed, the winner's files untouched.
  one_line     (issue 22) the traceback families (sweeps of nothing, unresolvable hydra dirs, optimizer
               options that fail at the first step, -sc, probe output dirs, demo --seed, claims --root/--out,
               a damaged sweep read by the report and the claims, two signals within 5 ms) and the cases
               that were accepted but wrong: handled = one line and exit 2, or accepted correctly.

    python benchmarks/survival.py --only trust one_line --out benchmarks/results/survival.json
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


# --- issue 22: a shared directory is safe to open; the last traceback families ----------------------

TINY = ["task=adding", "seq_len=5", "model.hidden_size=4", "batch_size=4", "eval_size=8", "log_every=1",
        "eval_every=1", "checkpoint_every=1", "probe.every=1", "probe.batch_size=2", "probe.lyapunov_k=1",
        "probe.lyapunov_steps=0", "probe.plots=false", "progress=false", "logger=none", "threads=1"]
PAYLOADS = ("torch.load", "numpy.load", "builtins.open", "os.system")


def cli(cwd: Path, module: str, *args: str, wait: bool = True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", module, *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def one_line(r, *words) -> bool:
    lines = r.stderr.strip().splitlines()
    return (r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
            and all(w in lines[0] for w in words))


def _bait(tmp: Path) -> tuple[dict, callable]:
    import pickle

    marker, victim = tmp / "PWNED", tmp / "victim.txt"
    victim.write_text("keep me\n")

    class Shell:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp / "payload.pkl").write_bytes(pickle.dumps(Shell()))
    nodes = {"torch.load": {"_target_": "torch.load", "f": str(tmp / "payload.pkl"), "weights_only": False},
             "numpy.load": {"_target_": "numpy.load", "file": str(tmp / "payload.pkl"), "allow_pickle": True},
             "builtins.open": {"_target_": "builtins.open", "file": str(victim), "mode": "w"},
             "os.system": {"_target_": "os.system", "command": f"touch {marker}"}}
    return nodes, lambda: not marker.exists() and victim.read_text() == "keep me\n"


def _real_config(tmp: Path) -> tuple[dict, dict]:
    import torch
    import yaml

    r = cli(tmp, "seqlab", *TINY, "steps=1", f"hydra.run.dir={tmp / 'real'}")
    assert r.returncode == 0, r.stderr
    return yaml.safe_load((tmp / "real" / "config.yaml").read_text()), \
        torch.load(tmp / "real" / "checkpoint.pt", weights_only=True)


def trust(tmp: Path) -> dict:
    """Every entry point that reads a config from disk, with each payload of the issue; every file a run
    and the report write, with a link to an outside file placed first."""
    import torch
    import yaml

    tmp = tmp / "trust"
    tmp.mkdir()
    nodes, intact = _bait(tmp)
    config, ckpt = _real_config(tmp)
    cases = []

    def case(what, ok, r=None):
        cases.append({"case": what, "handled": bool(ok), "exit": getattr(r, "returncode", None),
                      "stderr": (r.stderr.strip()[-300:] if r is not None else "")})

    for i, payload in enumerate(PAYLOADS):
        evil = {**config, "task": nodes[payload]}
        torch.save({"model": ckpt["model"], "config": evil}, tmp / f"p{i}.pt")
        r = cli(tmp, "seqlab.probe", f"checkpoint=p{i}.pt", f"hydra.run.dir=probe{i}", "logger=none")
        case(f"probe CLI, stored config {payload}", one_line(r, payload) and intact()
             and not (tmp / f"probe{i}").exists(), r)
        (tmp / f"res{i}").mkdir()
        torch.save({**ckpt, "config": {**ckpt["config"], "task": nodes[payload]}}, tmp / f"res{i}" / "checkpoint.pt")
        r = cli(tmp, "seqlab", *TINY, "steps=2", f"resume=res{i}")
        case(f"resume, stored config {payload}", one_line(r, payload) and intact()
             and sorted(p.name for p in (tmp / f"res{i}").iterdir()) == [".seqlab.lock", "checkpoint.pt"], r)
        for tool, root, args in (("seqlab.report", f"rep{i}", ["-o", f"rep{i}/out"]),
                                 ("seqlab.claims", f"cl{i}", ["decay", "--root", f"cl{i}", "--out", f"cl{i}/figs"])):
            d = tmp / root / ("claim_decay_depth" if tool == "seqlab.claims" else "") / "0"
            d.mkdir(parents=True)
            (d / "config.yaml").write_text(yaml.safe_dump(evil))
            (d / "summary.json").write_text(json.dumps({"status": "finished", "final_loss": 0.1}))
            r = cli(tmp, tool, *([root] if tool == "seqlab.report" else []), *args)
            case(f"{tool.split('.')[1]}, config.yaml {payload}", one_line(r, payload) and intact()
                 and not (tmp / root / "out").exists() and not (tmp / root / "figs").exists(), r)
    r = cli(tmp, "seqlab", "--experimental-rerun", "payload.pkl")
    case("--experimental-rerun a pickle", one_line(r, "--experimental-rerun") and intact(), r)

    outside = tmp / "outside.txt"
    outside.write_text("not yours\n")
    names = ["config.yaml", "metrics.jsonl", "summary.json", "probe.npz", "probe_curves.png", "probe_heatmap.png"]
    for name in [".seqlab.lock", ".hydra", *names]:
        d = tmp / f"link_{name.strip('.')}"
        d.mkdir()
        (d / name).symlink_to(outside)
        r = cli(tmp, "seqlab", *TINY, "steps=2", "probe.plots=true", f"hydra.run.dir={d}")
        refused = name in (".seqlab.lock", ".hydra")
        ok = (one_line(r, name, "symbolic link") if refused else r.returncode == 0 and not (d / name).is_symlink())
        case(f"run, {name} linked outside", ok and outside.read_text() == "not yours\n", r)
    rep = tmp / "rep_links"
    (rep / "out").mkdir(parents=True)
    for name in ("report.md", "report.html", "report.json"):
        (rep / "out" / name).symlink_to(outside)
    r = cli(tmp, "seqlab.report", str(tmp / "real"), "-o", str(rep / "out"))
    case("report, outputs under -o linked outside", r.returncode == 0 and outside.read_text() == "not yours\n"
         and not any((rep / "out" / n).is_symlink() for n in ("report.md", "report.html", "report.json")), r)
    # ownership: the probe CLI into a training run's directory; two runs started together into one directory
    before = {p.name: p.read_bytes() for p in (tmp / "real").iterdir() if p.is_file() and p.name != ".seqlab.lock"}
    r = cli(tmp, "seqlab.probe", "checkpoint=real/checkpoint.pt", "hydra.run.dir=real", "logger=none")
    case("probe CLI into a training run's directory", one_line(r, "another run's results") and before == {
        p.name: p.read_bytes() for p in (tmp / "real").iterdir() if p.is_file() and p.name != ".seqlab.lock"}, r)
    for k in range(3):
        procs = [cli(tmp, "seqlab", *TINY, "steps=30", f"seed={s}", f"hydra.run.dir=race{k}", wait=False) for s in (1, 2)]
        outs = [(p.wait(), p.communicate()[1]) for p in procs]
        codes = [c for c, _ in outs]
        ok = sorted(codes) == [0, 2]
        if ok:
            winner = (1, 2)[codes.index(0)]
            d = tmp / f"race{k}"
            ok = (f"seed={winner}" in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
                  and yaml.safe_load((d / "config.yaml").read_text())["seed"] == winner)
        cases.append({"case": f"two runs started together ({k + 1})", "handled": ok, "exit": codes,
                      "stderr": " | ".join(e.strip()[-150:] for _, e in outs)})
    return {"cases_run": len(cases), "handled": sum(c["handled"] for c in cases), "cases": cases}


def one_line_families(tmp: Path) -> dict:
    """The traceback families and the accepted-but-wrong cases: one line and exit 2, or accepted correctly."""
    import numpy as np
    import yaml

    tmp = tmp / "families"
    tmp.mkdir()
    (tmp / "afile").write_text("x")
    cases = []

    def refused(what, module, *args, words=()):
        r = cli(tmp, module, *args)
        cases.append({"case": what, "handled": one_line(r, *words), "exit": r.returncode,
                      "stderr": r.stderr.strip()[-300:]})

    for what, args in (("range with a zero step", ["-m", "seed=range(0,10,0)"]),
                       ("an empty range", ["-m", "seed=range(5,1)"]),
                       ("a glob matching no option", ["-m", "model=glob(zzz*)"]),
                       ("hydra.run.dir from an unset variable", ["hydra.run.dir=${oc.env:SEQLAB_UNSET_VAR}"]),
                       ("hydra.sweep.dir from an unset variable", ["-m", "seed=0,1",
                                                                   "hydra.sweep.dir=${oc.env:SEQLAB_UNSET_VAR}"]),
                       ("+optim.capturable=true on CPU", ["+optim.capturable=true"]),
                       ("+optim.differentiable=true", ["+optim.differentiable=true"]),
                       ("-sc with a bad value", ["-sc", "bogus"]),
                       ("--experimental-rerun of a missing file", ["--experimental-rerun", "missing.pkl"]),
                       ("~optim.lr", ["~optim.lr"]),
                       ("an empty hydra.run.dir", ["hydra.run.dir="]),
                       ("hydra.mode=MULTIRUN with resume", ["hydra.mode=MULTIRUN", "resume=somewhere"])):
        refused(what, "seqlab", *args, *TINY)
    refused("an over-long W&B project", "seqlab", *[o for o in TINY if o != "logger=none"], "logger.project=" + "p" * 200)
    refused("an unknown joblib backend", "seqlab", "-m", "hydra/launcher=parallel", "hydra.launcher.backend=bogus",
            "seed=0,1", *TINY)
    refused("probe CLI output inside a file", "seqlab.probe", *TINY, "hydra.run.dir=afile/out")
    refused("probe CLI output under /proc", "seqlab.probe", *TINY, "hydra.run.dir=/proc/seqlab")
    refused("demo --seed beyond 64 bits", "seqlab.demo", "--seed", str(2**70))
    refused("claims --root a file", "seqlab.claims", "decay", "--root", "afile")
    refused("claims --out a file", "seqlab.claims", "decay", "--root", "r", "--out", "afile/x")
    refused("report --title too long", "seqlab.report", "afile", "--title", "t" * 1000)

    # a damaged sweep read by the report and the claims: accepted, every damage flagged, no traceback
    good = {"steps": np.array([0, 2]), "lags": np.arange(3), "task_lag": np.array(2), "curves": np.array(["h_l0"]),
            "mean_h_l0": np.ones((2, 3)), **{f"{k}_h_l0": np.ones(2) for k in ("gain", "half_life", "horizon",
                                                                              "attenuation_decades")}}
    damaged = {"nan final loss": ({"final_loss": float("nan")}, good), "inf final loss": ({"final_loss": 1e999}, good),
               "int beyond float range": ({"final_loss": 10**400}, good), "seq_len a dict": ({"seq_len": {"a": 1}}, good),
               "status a number": ({"status": 7}, good), "all-NaN probe": ({}, {**good, "mean_h_l0": np.full((2, 3), np.nan)}),
               "probe of mismatched lengths": ({}, {**good, "mean_h_l0": np.ones((5, 3))}),
               "probe of another layout": ({}, {"steps": np.zeros((2, 2)), "x": np.ones(3)})}
    for i, (what, (summary, probe)) in enumerate(damaged.items()):
        for preset in ("claim_decay_depth", "claim_decay_time"):
            d = tmp / "sweep" / preset / str(i)
            d.mkdir(parents=True)
            (d / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "seq_len": 5,
                                                           "choices": {"task": "adding", "model": "rnn"}}))
            (d / "summary.json").write_text(json.dumps({"status": "finished", "final_loss": 0.5, "steps": 2,
                                                        "seq_len": 5, **summary}))
            (d / "metrics.jsonl").write_text('{"step": 2, "eval/loss": 0.5}\n')
            np.savez(d / "probe.npz", **probe)
    r = cli(tmp, "seqlab.report", "sweep/claim_decay_depth", "-o", "rep")
    md = (tmp / "rep" / "report.md").read_text() if (tmp / "rep" / "report.md").exists() else ""
    flags = ["final_loss is nan", "final_loss is inf", "beyond float range", "seq_len of the wrong type",
             "status of the wrong type", "every probe curve is NaN", "probe.npz of another layout (mean_h_l0",
             "probe.npz of another layout (no steps"]
    for what, flag in zip(damaged, flags):
        cases.append({"case": f"report on a damaged run: {what}", "handled": r.returncode == 0 and flag in md,
                      "exit": r.returncode, "stderr": r.stderr.strip()[-200:]})
    r = cli(tmp, "seqlab.claims", "decay", "--root", "sweep", "--out", "figs")
    cases.append({"case": "claims on the damaged sweep", "handled": r.returncode == 0 and "Traceback" not in r.stderr,
                  "exit": r.returncode, "stderr": r.stderr.strip()[-200:]})
    # two signals within a few ms
    for first in (signal.SIGINT, signal.SIGTERM):
        d = tmp / f"sig{int(first)}"
        p = cli(tmp, "seqlab", *[o for o in TINY if not o.startswith("probe.")], "steps=100000", "checkpoint_every=50", "eval_every=1000", "probe=none",
                f"hydra.run.dir={d}", wait=False)
        while not (d / "checkpoint.pt").exists() and p.poll() is None:
            time.sleep(0.2)
        p.send_signal(first)
        time.sleep(0.005)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate()
        status = json.loads((d / "summary.json").read_text()).get("status") if (d / "summary.json").exists() else None
        cases.append({"case": f"{first.name} then SIGINT 5 ms later", "exit": p.returncode,
                      "handled": "Traceback" not in err and len(err.strip().splitlines()) == 1
                      and status in ("preempted", "interrupted"), "stderr": err.strip()[-200:]})
    # accepted but wrong, now accepted correctly
    r = cli(tmp, "seqlab", *TINY, "steps=2", "hydra.run.dir=tmpfiles")
    (tmp / "tmpfiles" / ".checkpoint.pt.k1ll3d00.tmp").write_bytes(b"half")
    r = cli(tmp, "seqlab", *TINY, "steps=3", "hydra.run.dir=tmpfiles")
    cases.append({"case": "a temp file a kill left is removed by the rerun", "exit": r.returncode,
                  "handled": r.returncode == 0 and not (tmp / "tmpfiles" / ".checkpoint.pt.k1ll3d00.tmp").exists(),
                  "stderr": r.stderr.strip()[-200:]})
    r = cli(tmp, "seqlab", *[o for o in TINY if not o.startswith("probe.")], "steps=40", "model=rnn", "optim=sgd",
            "optim.lr=1e30", "on_nonfinite=skip", "probe=none", "eval_every=1000", "log_every=1000",
            "hydra.run.dir=skipdiv")  # no evaluation before the end: it diverges past skip_limit, by its skips
    s = json.loads((tmp / "skipdiv" / "summary.json").read_text())
    cases.append({"case": "diverged under on_nonfinite=skip records skipped_updates", "exit": r.returncode,
                  "handled": r.returncode == 3 and s.get("status") == "diverged" and s.get("skipped_updates", 0) >= 10,
                  "stderr": r.stderr.strip()[-200:]})
    r = cli(tmp, "seqlab.probe", *TINY, "probe.lags=[1,100]", "hydra.run.dir=lags")
    s = json.loads((tmp / "lags" / "summary.json").read_text()) if (tmp / "lags" / "summary.json").exists() else {}
    cases.append({"case": "a probe lag beyond T is recorded as NaN, not dropped", "exit": r.returncode,
                  "handled": r.returncode == 0 and s["probe"]["h_l0"].get("g_lag100") == "nan",
                  "stderr": r.stderr.strip()[-200:]})
    return {"cases_run": len(cases), "handled": sum(c["handled"] for c in cases), "cases": cases}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="survival.json")
    ap.add_argument("--only", nargs="+", default=None, metavar="EXPERIMENT",
                    help="run only these (divergence corruptions kills trust one_line); the others' results "
                         "already in --out are kept")
    a = ap.parse_args()
    result = {"machine": "2 CPU cores shared with other jobs", "threads": 1}
    if a.only and Path(a.out).exists():
        result = {**json.loads(Path(a.out).read_text()), **result}
    experiments = {"divergence": divergence, "corruptions": corruptions,
                   "kills": lambda tmp: kills(tmp, a.kills, random.Random(a.seed)),
                   "trust": trust, "one_line": one_line_families}
    with tempfile.TemporaryDirectory() as d:
        for key, experiment in experiments.items():
            if a.only and key not in a.only:
                continue
            result[key] = experiment(Path(d))
            Path(a.out).write_text(json.dumps(result, indent=2) + "\n")  # after each, so a stop keeps the rest
    for key, r in result.items():
        if not isinstance(r, dict):
            continue
        counts = {k: v for k, v in r.items() if k != "cases"}
        print(key, counts)
        for c in r["cases"]:
            if not (c.get("identical") or c.get("handled") or c.get("caught")):  # noqa: SIM102
                print("   NOT:", c)


if __name__ == "__main__":
    main()
