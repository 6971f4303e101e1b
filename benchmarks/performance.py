"""seqlab's performance against the loops a researcher writes by hand (issue 7).

    python benchmarks/performance.py             # docs/benchmarks.md's tables (~14 minutes on 2 idle CPU cores)
    python benchmarks/performance.py --parts train --threads 2 --merge   # add 2-thread rows to that JSON
    python benchmarks/performance.py --quick     # smoke run on tiny sizes (tests/test_benchmarks.py)

Run it on an otherwise idle machine: other processes on the cores change every figure, the sweep's
most of all (the load average at the start and end of every part is recorded with the results).

One run measures, on one machine (adding task, T=200, H=128, B=64 unless told):

  train    training throughput of seqlab's own loop, ``seqlab.train.train`` with a composed config
           (logger=none, probe=none, progress=false; steps/s from its summary, which leaves out the
           evaluations; one thread unless --threads), against, on the very same batches (``task.make_batch`` with the same seeded
           generator), the same initial weights and the same Adam:
             bare fused      a minimal hand-written loop over nn.RNN/LSTM/GRU + nn.Linear on the
                             last step, flush_denormal on as seqlab sets it
             no flush        the same loop with float32 denormals left on (torch's default)
             cell loop       nn.RNNCell/LSTMCell/GRUCell unrolled in Python, as published reference
                             code does it
           Repeats are interleaved (one round = every loop once, order rotated), so load from other
           processes hits all alike; the ratio is the median of the per-round ratios. The mean train
           loss of seqlab and of the bare fused loop are compared, to show that they did the same work.
           Also: the share of a default run's wall time spent in evaluation (eval_size=1000 every
           250 steps) and checkpoints (every 1000 steps), which the steps/s figures leave out.
  datagen  one batch of every task at B=64, T=200 and T=5000 (vectorized; on the run's device).
  probe    one probe against one training step, with benchmarks/probe_cost.py's step and model
           (the gradient probe alone, and the full probe of conf/probe/default.yaml with its Lyapunov
           spectrum), interleaved; and the same measured inside train() (probe_time_s per probe,
           including the probe.npz write, against 1/steps_per_s).
  scaling  time per step and peak memory of a seqlab run against T (200, 1000, 5000), each size in a
           fresh process: peak RSS (VmHWM; CUDA: max_memory_allocated) minus the RSS after the
           imports, with a linear fit over T. LSTM at T=5000 is also run with the default eval set
           (1000 sequences), the peak a user meets.
  sweep    wall time of a 2-job multirun, ``python -m seqlab -m hydra/launcher=parallel`` (joblib,
           one thread per worker) against the basic launcher running the same jobs one after the
           other with threads=1 (median of interleaved repeats), and once with torch's default threads.

Prints markdown tables and writes benchmarks/results/<device>-<cores>cores[-quick].json (machine,
settings, every repeat, the tables). No GPU: the CUDA columns are absent; on a GPU the same command
runs there (device=auto picks CUDA; the fused path is cuDNN) and names the device.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import probe_cost  # noqa: E402  (the colleague's probe benchmark: its model builder and train step)

from seqlab import checkpoint  # noqa: E402
from seqlab.__main__ import CONF_DIR  # noqa: E402
from seqlab.config import build_model, build_optimizer, build_probe, build_task, resolve_device  # noqa: E402
from seqlab.probe import gradient_curves, probe  # noqa: E402
from seqlab.tasks import Adding, Copy, DelayedRecall  # noqa: E402
from seqlab.train import RunInfo, evaluate, train  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = ("rnn", "lstm", "gru")
FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
LOOPS = ("seqlab", "bare_fused", "bare_no_flush", "bare_cell")


@dataclass
class Sizes:
    seq_len: int = 200
    batch: int = 64
    hidden: int = 128
    train_steps: int = 60          # optimizer steps per timed run (one-time costs amortized as in a long run)
    repeats: int = 4               # interleaved rounds
    threads: tuple[int, ...] = (1,)   # --threads 1 2 adds torch's two threads (slow and erratic under load)
    models: tuple[str, ...] = MODELS
    probe_repeats: int = 7
    probe_every: int = 5           # probe inside train(): probes at 0, every, 2*every
    probe_lyapunov_steps: int | None = None   # None: conf/probe/default.yaml's (the smoke run: 0, along the batch)
    scaling_lens: tuple[int, ...] = (200, 1000, 5000)
    scaling_steps: dict = field(default_factory=lambda: {200: 10, 1000: 5, 5000: 3})
    scaling_models: tuple[str, ...] = MODELS
    default_eval_size: int = 1000  # conf/config.yaml's eval_size, for the eval share and the LSTM T_max peak
    datagen_lens: tuple[int, ...] = (200, 5000)
    sweep_model: str = "lstm"
    sweep_steps: int = 300
    sweep_repeats: int = 3
    start_repeats: int = 3         # fresh processes timing the start-up cost (median)


QUICK = Sizes(seq_len=20, batch=8, hidden=16, train_steps=5, repeats=2, threads=(1,), probe_repeats=2,
              probe_every=2, probe_lyapunov_steps=0, scaling_lens=(20, 40, 80),
              scaling_steps={20: 3, 40: 3, 80: 3},
              scaling_models=("lstm",), default_eval_size=64, datagen_lens=(20,), sweep_model="rnn",
              sweep_steps=5, sweep_repeats=1, start_repeats=1)


# --- helpers ---------------------------------------------------------------------------------------

def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def current_rss() -> int:
    """Resident set size now, bytes (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def peak_rss() -> int:
    """Peak resident set size of this process image, bytes: Linux's VmHWM (ru_maxrss would carry
    the parent's RSS over fork + exec, and cannot be reset); elsewhere ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb if sys.platform == "darwin" else kb * 1024  # macOS reports bytes, Linux KiB


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0), so import-time transients do not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    info = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_default_threads": torch.get_num_threads(), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "git_commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    return info


# --- the hand-written loops -----------------------------------------------------------------------

class BareFused(nn.Module):
    """What a researcher writes: a fused recurrent layer and a linear readout of the last step."""

    def __init__(self, kind: str, input_size: int, hidden: int, output_size: int):
        super().__init__()
        self.rnn = FUSED[kind](input_size, hidden, batch_first=True)
        self.readout = nn.Linear(hidden, output_size)

    def forward(self, x):  # (B, T, D) -> (B, O)
        return self.readout(self.rnn(x)[0][:, -1])


class BareCell(nn.Module):
    """The step-by-step loop of published reference code: a cell called T times in Python."""

    def __init__(self, kind: str, input_size: int, hidden: int, output_size: int):
        super().__init__()
        self.kind, self.hidden = kind, hidden
        self.cell = CELLS[kind](input_size, hidden)
        self.readout = nn.Linear(hidden, output_size)

    def forward(self, x):  # (B, T, D) -> (B, O)
        h = x.new_zeros(x.shape[0], self.hidden)
        state = (h, h) if self.kind == "lstm" else h
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return self.readout(state[0] if self.kind == "lstm" else state)


def bare_model(loop: str, kind: str, seqlab_model: nn.Module, task, hidden: int) -> nn.Module:
    """A bare model holding exactly seqlab's initial weights (same seed, same init)."""
    cls = BareCell if loop == "bare_cell" else BareFused
    model = cls(kind, task.input_size, hidden, task.output_size)
    layer = seqlab_model.layers[0]
    fused = getattr(layer, kind)  # layer.rnn / layer.lstm / layer.gru
    weights = {k: v for k, v in fused.state_dict().items()}
    if cls is BareCell:
        weights = {k.removesuffix("_l0"): v for k, v in weights.items()}
    (model.cell if cls is BareCell else model.rnn).load_state_dict(weights)
    model.readout.load_state_dict(seqlab_model.readout.state_dict())
    return model.to(next(seqlab_model.parameters()).device)


def run_bare(loop: str, cfg, kind: str, steps: int, device: torch.device) -> tuple[float, float]:
    """(steps/s, mean train loss over the last log window) of a bare loop on seqlab's batches."""
    torch.set_flush_denormal(loop != "bare_no_flush")
    task = build_task(cfg)
    torch.manual_seed(cfg.seed)
    model = bare_model(loop, kind, build_model(cfg, task), task, cfg.model.hidden_size)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    losses = []
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        batch = task.make_batch(cfg.batch_size, gen, device)
        pred = model(batch.inputs)  # (B, 1)
        loss = ((pred[:, 0] - batch.targets[:, 0]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    sync(device)
    elapsed = time.perf_counter() - t0
    torch.set_flush_denormal(True)
    window = losses[((steps - 1) // cfg.log_every) * cfg.log_every:]
    return steps / elapsed, float(torch.stack(window).mean())


def run_seqlab(cfg, tmp: Path) -> tuple[float, float]:
    """(steps/s, mean train loss over the last log window) of seqlab.train.train."""
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    summary = train(cfg, RunInfo(run_dir=run_dir, name="bench"))
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary["steps_per_s"], rows[-1]["train/loss"]


def train_overrides(kind: str, s: Sizes, threads: int, device: str, extra=(), probe="none") -> list[str]:
    return [f"model={kind}", "task=adding", f"seq_len={s.seq_len}", f"batch_size={s.batch}",
            f"model.hidden_size={s.hidden}", f"steps={s.train_steps}", f"threads={threads}",
            f"log_every={min(50, s.train_steps)}", f"eval_size={s.batch}", f"device={device}",
            "logger=none", f"probe={probe}", "progress=false", *extra]


def part_train(s: Sizes, device: torch.device, tmp: Path) -> list[dict]:
    rows = []
    for threads in s.threads:
        for kind in s.models:
            cfg = compose_cfg(train_overrides(kind, s, threads, str(device)))
            torch.set_num_threads(threads)
            # denormals-on is a finding about the machine, not about seqlab: one thread is enough
            loops = LOOPS if threads == 1 else tuple(x for x in LOOPS if x != "bare_no_flush")
            sps = {loop: [] for loop in loops}
            losses = {loop: [] for loop in loops}
            load_before = loadavg()
            for r in range(s.repeats):
                order = loops[r % len(loops):] + loops[:r % len(loops)]
                for loop in order:
                    if loop == "seqlab":
                        v, loss = run_seqlab(cfg, tmp)
                        torch.set_num_threads(threads)
                    else:
                        v, loss = run_bare(loop, cfg, kind, s.train_steps, device)
                    sps[loop].append(v)
                    losses[loop].append(loss)
            ratios = [a / b for a, b in zip(sps["seqlab"], sps["bare_fused"])]
            row = {"threads": threads, "model": kind, "steps": s.train_steps, "repeats": s.repeats,
                   "steps_per_s": {k: median(v) for k, v in sps.items()},
                   "sequences_per_s": {k: median(v) * s.batch for k, v in sps.items()},
                   "all_steps_per_s": sps,
                   "seqlab_over_bare_fused": median(ratios), "per_round_ratios": ratios,
                   "cell_over_fused": median([a / b for a, b in zip(sps["bare_cell"], sps["bare_fused"])]),
                   "no_flush_over_fused": median([a / b for a, b in zip(sps.get("bare_no_flush", []), sps["bare_fused"])]),
                   "train_loss": {k: v[0] for k, v in losses.items()},
                   "loss_diff_seqlab_vs_bare": abs(losses["seqlab"][0] - losses["bare_fused"][0]),
                   "load_before": load_before, "load_after": loadavg()}
            row.update(default_run_overheads(cfg, kind, s, device, 1.0 / row["steps_per_s"]["seqlab"], tmp))
            rows.append(row)
            print(f"  train threads={threads} {kind}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in row["steps_per_s"].items())
                + f" steps/s; seqlab/bare {row['seqlab_over_bare_fused']:.3f}; load {loadavg()}", flush=True)
    return rows


def default_run_overheads(cfg, kind, s: Sizes, device, step_s: float, tmp: Path) -> dict:
    """Evaluation (eval_size at every eval_every) and checkpoint (every checkpoint_every) as shares of
    a default run's wall time: the steps/s above leave them out."""
    task = build_task(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, task).to(device)
    opt = build_optimizer(cfg, model)
    eval_batch = task.make_batch(s.default_eval_size, torch.Generator().manual_seed(1234)).to(device)
    evaluate(model, task, eval_batch)  # warm-up
    t_eval = median([_timed(lambda: evaluate(model, task, eval_batch), device) for _ in range(3)])
    path = tmp / "ckpt.pt"
    state = lambda: {"model": model.state_dict(), "optimizer": opt.state_dict()}  # noqa: E731
    t_ckpt = median([_timed(lambda: checkpoint.save(path, state()), device) for _ in range(3)])
    defaults = compose_cfg([])
    per_1000 = 1000 * step_s
    eval_share = (1000 / defaults.eval_every) * t_eval
    ckpt_share = (1000 / defaults.checkpoint_every) * t_ckpt
    return {"eval_s": t_eval, "eval_size": s.default_eval_size, "checkpoint_s": t_ckpt,
            "eval_share": eval_share / (per_1000 + eval_share + ckpt_share),
            "checkpoint_share": ckpt_share / (per_1000 + eval_share + ckpt_share)}


def _timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


# --- data generation ------------------------------------------------------------------------------

def part_datagen(s: Sizes, device: torch.device) -> list[dict]:
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    for T in s.datagen_lens:
        for task in (Adding(T), Copy(T), DelayedRecall(T)):
            task.make_batch(s.batch, gen, device)
            t = median([_timed(lambda: task.make_batch(s.batch, gen, device), device) for _ in range(20)])
            rows.append({"task": task.name, "seq_len": T, "batch": s.batch, "ms": 1e3 * t})
    return rows


# --- probe ----------------------------------------------------------------------------------------

def part_probe(s: Sizes, device: torch.device, tmp: Path) -> list[dict]:
    threads = s.threads[0]
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    rows = []
    lyapunov = [] if s.probe_lyapunov_steps is None else [f"probe.lyapunov_steps={s.probe_lyapunov_steps}"]
    for kind in s.models:
        cfg = compose_cfg(train_overrides(kind, s, threads, str(device), [f"probe.batch_size={s.batch}", *lyapunov],
                                          "default"))
        settings = build_probe(cfg)  # conf/probe/default.yaml (the smoke run: its spectrum along the batch)
        task = build_task(cfg)
        model = probe_cost.build(kind, task, s.hidden).to(device)
        batch = task.make_batch(s.batch, torch.Generator().manual_seed(0)).to(device)
        fns = {"train_step": probe_cost.train_step_fn(model, task, batch),
               "gradient_probe": partial(gradient_curves, model, task, batch, settings.max_loss_steps),
               "full_probe": partial(probe, model, task, batch, settings)}
        for fn in fns.values():
            fn()  # warm-up
        times = {k: [] for k in fns}
        for r in range(s.probe_repeats):
            names = list(fns)[r % 3:] + list(fns)[:r % 3]
            for k in names:
                times[k].append(_timed(fns[k], device))
        row = {"model": kind, "threads": threads, "repeats": s.probe_repeats,
               **{f"{k}_ms": 1e3 * median(v) for k, v in times.items()},
               "gradient_over_step": median([g / t for g, t in zip(times["gradient_probe"], times["train_step"])]),
               "full_over_step": median([f / t for f, t in zip(times["full_probe"], times["train_step"])])}
        # inside train(): probes at 0, every, 2*every (probe_time_s includes writing probe.npz)
        cfg = compose_cfg(train_overrides(kind, s, threads, str(device), [
            f"probe.batch_size={s.batch}", f"probe.every={s.probe_every}", "probe.plots=false", *lyapunov,
            f"steps={2 * s.probe_every}", f"log_every={s.probe_every}"], "default"))
        run_dir = Path(tempfile.mkdtemp(dir=tmp))
        summary = train(cfg, RunInfo(run_dir=run_dir, name="probe"))
        torch.set_num_threads(threads)
        row["in_train_probe_ms"] = 1e3 * summary["probe_time_s"] / 3
        row["in_train_step_ms"] = 1e3 / summary["steps_per_s"]
        row["in_train_ratio"] = row["in_train_probe_ms"] / row["in_train_step_ms"]
        rows.append(row)
        print(f"  probe {kind}: step {row['train_step_ms']:.1f} ms, full probe {row['full_probe_ms']:.1f} ms "
              f"({row['full_over_step']:.2f}x); in train() {row['in_train_ratio']:.2f}x", flush=True)
    return rows


# --- scaling in T (each size in a fresh process) --------------------------------------------------

def scaling_child(spec: dict) -> dict:
    """Run in a fresh process: one seqlab run of ``steps`` steps at ``seq_len``; peak memory, time/step."""
    cfg = compose_cfg([f"model={spec['model']}", "task=adding", f"seq_len={spec['seq_len']}",
                       f"batch_size={spec['batch']}", f"model.hidden_size={spec['hidden']}",
                       f"steps={spec['steps']}", f"threads={spec['threads']}", f"eval_size={spec['eval_size']}",
                       f"device={spec['device']}", "logger=none", "probe=none", "progress=false"])
    device = resolve_device(spec["device"])
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch imports torch._dynamo here: baseline
    base = current_rss()
    reset_peak_rss()
    with tempfile.TemporaryDirectory() as d:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        summary = train(cfg, RunInfo(run_dir=Path(d), name="scaling"))
        r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    # kernel share of the CPU time: at long T it is page faults, the allocator handing the big
    # activation buffers back to the OS after every step and faulting them in again
    out = {**spec, "baseline_rss_mb": base / 2**20, "peak_rss_mb": peak_rss() / 2**20,
           "peak_over_baseline_mb": (peak_rss() - base) / 2**20, "step_ms": 1e3 / summary["steps_per_s"],
           "wall_s": wall, "kernel_cpu_share": (r1.ru_stime - r0.ru_stime) / max(
               r1.ru_stime - r0.ru_stime + r1.ru_utime - r0.ru_utime, 1e-9),
           "minor_faults": r1.ru_minflt - r0.ru_minflt}
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _child(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child-scaling", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scaling child {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_scaling(s: Sizes, device: torch.device) -> dict:
    threads = s.threads[0]
    runs = []
    for kind in s.scaling_models:
        for T in s.scaling_lens:
            spec = {"model": kind, "seq_len": T, "batch": s.batch, "hidden": s.hidden,
                    "steps": s.scaling_steps[T], "threads": threads, "eval_size": s.batch,
                    "device": str(device)}
            r = _child(spec)
            r["load"] = loadavg()
            runs.append(r)
            print(f"  scaling {kind} T={T}: {r['step_ms']:.0f} ms/step, peak +{r['peak_over_baseline_mb']:.0f} MB",
                  flush=True)
    fits = {}
    for kind in s.scaling_models:
        rs = [r for r in runs if r["model"] == kind]
        T = np.array([r["seq_len"] for r in rs], float)
        fits[kind] = {"memory": _linfit(T, [r["peak_over_baseline_mb"] for r in rs]),
                      "time": _linfit(T, [r["step_ms"] for r in rs])}
    # the peak a user meets: LSTM at the longest T with the default eval set (1000 sequences)
    T_max = max(s.scaling_lens)
    spec = {"model": "lstm", "seq_len": T_max, "batch": s.batch, "hidden": s.hidden, "steps": 1,
            "threads": threads, "eval_size": s.default_eval_size, "device": str(device)}
    with_eval = _child(spec)
    print(f"  scaling lstm T={T_max} with eval_size={s.default_eval_size}: peak "
          f"+{with_eval['peak_over_baseline_mb']:.0f} MB", flush=True)
    return {"threads": threads, "runs": runs, "fits": fits, "lstm_with_default_eval": with_eval}


def _linfit(x: np.ndarray, y) -> dict:
    """y = a + b x by least squares; b per 1000 steps of T, R^2, worst relative residual."""
    y = np.asarray(y, float)
    b, a = np.polyfit(x, y, 1)
    pred = a + b * x
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    return {"intercept": float(a), "slope_per_1000": float(1000 * b),
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
            "max_rel_residual": float(np.max(np.abs(y - pred) / np.maximum(np.abs(y), 1e-9)))}


# --- 2-job sweep: joblib vs one after the other ---------------------------------------------------

PAR, SEQ1, SEQ = ("parallel (joblib, 2 jobs, 1 thread each)", "basic, one after the other, threads=1",
                  "basic, one after the other, torch's default threads")


def part_sweep(s: Sizes, tmp: Path) -> dict:
    """The same 2 jobs through the joblib launcher and through the basic one (threads=1, the share a
    joblib worker gets), interleaved; then once with torch's default threads, which a busy machine
    can make very slow (cut off at twice the threads=1 time)."""
    base = ["-m", f"model={s.sweep_model}", "seed=0,1", f"steps={s.sweep_steps}", f"seq_len={s.seq_len}",
            f"batch_size={s.batch}", f"model.hidden_size={s.hidden}", "logger=none", "probe=none",
            "progress=false"]
    if s.sweep_steps < 250:
        base.append(f"eval_size={s.batch}")
    variants = {PAR: ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"], SEQ1: ["threads=1"], SEQ: []}
    walls = {k: [] for k in variants}
    loads = {k: [] for k in variants}
    job_steps_per_s = {k: [] for k in variants}
    timed_out = {}

    def launch(name: str, tag: str, timeout: float | None = None) -> None:
        out = tmp / f"sweep_{tag}"
        loads[name].append(loadavg())
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "seqlab", *base, *variants[name], f"hydra.sweep.dir={out}"],
                                  capture_output=True, text=True, cwd=tmp, timeout=timeout,
                                  env={**os.environ, "WANDB_MODE": "offline"})
        except subprocess.TimeoutExpired:
            timed_out[name] = timeout
            print(f"  sweep {name}: stopped after {timeout:.0f} s (load {loads[name][-1]})", flush=True)
            return
        walls[name].append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"sweep {name} failed:\n{proc.stderr[-3000:]}")
        summaries = [json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))]
        if len(summaries) != 2 or any(x["status"] != "finished" for x in summaries):
            raise RuntimeError(f"sweep {name}: expected 2 finished jobs in {out}")
        job_steps_per_s[name].append([x["steps_per_s"] for x in summaries])
        print(f"  sweep {name}: {walls[name][-1]:.1f} s (load {loads[name][-1]})", flush=True)

    for r in range(s.sweep_repeats):
        for name in ([PAR, SEQ1] if r % 2 == 0 else [SEQ1, PAR]):
            launch(name, f"{r}_{name[:3]}")
    launch(SEQ, "default", timeout=2 * max(walls[SEQ1]) + 30)
    med = {k: median(v) for k, v in walls.items() if v}
    # training time alone (no process start, no evaluation): what a sweep of long jobs approaches
    train_s = {k: median([(sum if k != PAR else max)(s.sweep_steps / x for x in jobs) for jobs in v])
               for k, v in job_steps_per_s.items() if v}
    return {"model": s.sweep_model, "steps": s.sweep_steps, "repeats": s.sweep_repeats,
            "command": "python -m seqlab " + " ".join(base) + " [hydra/launcher=parallel hydra.launcher.n_jobs=2 "
                       "| threads=1 | nothing]",
            "wall_s": med, "all_wall_s": walls, "timed_out_s": timed_out, "load_before": loads,
            "job_steps_per_s": job_steps_per_s,
            "speedup": {k: med[k] / med[PAR] for k in med if k != PAR},
            "training_time_s": train_s,
            "training_time_speedup": {k: train_s[k] / train_s[PAR] for k in train_s if k != PAR},
            "process_start": process_start_cost(s.start_repeats)}


def process_start_cost(repeats: int = 3) -> dict:
    """What every Python process of a run pays before its first step (median of ``repeats`` fresh processes):
    import torch, import seqlab, and the first optimizer (torch imports torch._dynamo there)."""
    code = ("import time; t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); "
            "import seqlab.train, seqlab.__main__; t2 = time.perf_counter(); "
            "torch.optim.Adam([torch.zeros(1, requires_grad=True)]); t3 = time.perf_counter(); "
            "print(t1 - t0, t2 - t1, t3 - t2)")
    runs = [[float(v) for v in subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True).stdout.split()] for _ in range(repeats)]
    keys = ("import_torch_s", "import_seqlab_s", "first_optimizer_s")
    return {k: median([r[i] for r in runs]) for i, k in enumerate(keys)}


# --- report ---------------------------------------------------------------------------------------

def markdown(res: dict) -> str:
    m, out = res["machine"], []
    out.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}, torch "
               f"{m['torch']}; device {m['device']}{' (' + m['gpu'] + ')' if m['gpu'] else ''}. Load average "
               "(1/5/15 min) at the start and end of each part: " + "; ".join(
                   f"{k} {v['load_start']} -> {v['load_end']} ({v['date']})" for k, v in res["parts"].items()) + ".")
    s = res["sizes"]
    if "train" in res:
        out += ["", f"Training throughput, adding T={s['seq_len']}, B={s['batch']}, H={s['hidden']}, Adam; "
                f"steps/s, median of {'/'.join(sorted({str(r['repeats']) for r in res['train']}))} interleaved "
                f"rounds of {s['train_steps']} steps "
                "(evaluation excluded)", "",
                "| threads | model | seqlab | bare fused | seqlab / bare | bare, denormals on | bare cell loop "
                "| seqlab seq/s | eval + ckpt share of a default run |",
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["train"]:
            v = r["steps_per_s"]
            no_flush = f"{v['bare_no_flush']:.2f}" if "bare_no_flush" in v else "-"
            out.append(f"| {r['threads']} | {r['model']} | {v['seqlab']:.2f} | {v['bare_fused']:.2f} | "
                       f"{r['seqlab_over_bare_fused']:.3f} | {no_flush} | {v['bare_cell']:.2f} | "
                       f"{r['sequences_per_s']['seqlab']:.0f} | "
                       f"{100 * r['eval_share']:.1f}% + {100 * r['checkpoint_share']:.2f}% |")
    if "datagen" in res:
        out += ["", f"Data generation, one batch of B={s['batch']} (ms)", "", "| task | T | ms |", "|---|---:|---:|"]
        out += [f"| {r['task']} | {r['seq_len']} | {r['ms']:.3f} |" for r in res["datagen"]]
    if "probe" in res:
        out += ["", f"One probe vs one training step (adding T={s['seq_len']}, B={s['batch']}, "
                "conf/probe/default.yaml"
                + ("" if s.get("probe_lyapunov_steps") is None else f", probe.lyapunov_steps={s['probe_lyapunov_steps']}")
                + f"; threads={res['probe'][0]['threads']})", "",
                "| model | train step (ms) | gradient probe (ms) | ratio | full probe (ms) | ratio "
                "| in train(): probe / step |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in res["probe"]:
            out.append(f"| {r['model']} | {r['train_step_ms']:.1f} | {r['gradient_probe_ms']:.1f} | "
                       f"{r['gradient_over_step']:.2f} | {r['full_probe_ms']:.1f} | {r['full_over_step']:.2f} | "
                       f"{r['in_train_probe_ms']:.1f} / {r['in_train_step_ms']:.1f} ms = {r['in_train_ratio']:.2f} |")
    if "scaling" in res:
        sc = res["scaling"]
        out += ["", f"Scaling in T (B={s['batch']}, H={s['hidden']}, threads={sc['threads']}; each size a fresh "
                "process; memory = peak RSS minus RSS after imports)", "",
                "| model | T | ms / step | ms / step / 1000 T | CPU time in the kernel | peak memory over baseline (MB) |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in sc["runs"]:
            out.append(f"| {r['model']} | {r['seq_len']} | {r['step_ms']:.0f} | {1e3 * r['step_ms'] / r['seq_len']:.0f} | "
                       f"{100 * r['kernel_cpu_share']:.0f}% | {r['peak_over_baseline_mb']:.0f} |")
        out += ["", "| model | memory: MB per 1000 steps of T | R^2 | time: ms per 1000 steps of T | R^2 |",
                "|---|---:|---:|---:|---:|"]
        for k, f in sc["fits"].items():
            out.append(f"| {k} | {f['memory']['slope_per_1000']:.0f} | {f['memory']['r2']:.4f} | "
                       f"{f['time']['slope_per_1000']:.0f} | {f['time']['r2']:.4f} |")
        w = sc["lstm_with_default_eval"]
        out += ["", f"LSTM at T={w['seq_len']} with the default eval set ({w['eval_size']} sequences): peak "
                f"{w['peak_over_baseline_mb']:.0f} MB over baseline ({w['peak_rss_mb']:.0f} MB RSS in all)."]
    if "sweep" in res:
        sw = res["sweep"]
        out += ["", f"2-job sweep ({sw['model']}, {sw['steps']} steps each, seeds 0,1), wall time of the whole "
                f"command, median of {sw['repeats']} interleaved (torch's default threads: once)", "",
                "| launcher | wall (s) | speedup of parallel | training time (s) | speedup |", "|---|---:|---:|---:|---:|"]
        for k in (PAR, SEQ1, SEQ):
            if k in sw["timed_out_s"]:
                out.append(f"| {k} | > {sw['timed_out_s'][k]:.0f} (stopped) | > {sw['timed_out_s'][k] / sw['wall_s'][PAR]:.1f}x | | |")
                continue
            sp, tsp = sw["speedup"].get(k), sw["training_time_speedup"].get(k)
            out.append(f"| {k} | {sw['wall_s'][k]:.1f} | {'' if sp is None else f'{sp:.2f}x'} | "
                       f"{sw['training_time_s'][k]:.1f} | {'' if tsp is None else f'{tsp:.2f}x'} |")
        ps = sw["process_start"]
        out += ["", f"Training time = the jobs' own steps/s (no process start, no evaluation): sum over the "
                f"jobs one after the other, the longer job in parallel. Every process pays "
                f"{sum(ps.values()):.1f} s before its first step (import torch {ps['import_torch_s']:.1f} s, "
                f"seqlab {ps['import_seqlab_s']:.1f} s, first optimizer {ps['first_optimizer_s']:.1f} s: "
                "torch imports torch._dynamo there); a parallel sweep pays it in the main process "
                "(preflight) and again in each worker."]
    if res.get("targets"):
        out += ["", "Targets:", ""]
        out += [f"- {t['name']}: {t['value']} -> {'met' if t['met'] else 'MISSED'}" for t in res["targets"]]
    return "\n".join(out)


def targets(res: dict) -> list[dict]:
    t = []
    if "train" in res:
        worst = min(res["train"], key=lambda r: r["seqlab_over_bare_fused"])
        t.append({"name": "training throughput >= 0.95x the bare fused loop",
                  "value": f"worst {worst['seqlab_over_bare_fused']:.3f} ({worst['model']}, "
                           f"threads={worst['threads']})", "met": worst["seqlab_over_bare_fused"] >= 0.95})
    if "probe" in res:
        worst = max(res["probe"], key=lambda r: r["full_over_step"])
        t.append({"name": "one probe <= 2x one training step",
                  "value": f"worst full probe {worst['full_over_step']:.2f}x ({worst['model']})",
                  "met": worst["full_over_step"] <= 2})
    if "scaling" in res:
        sc = res["scaling"]
        # linear = no faster than linear: the cost per extra step between the two longest T is no more
        # than between the two shortest (+25% slack for allocator noise); R^2 of the straight line besides
        growth = {}
        for kind in sc["fits"]:
            rs = sorted((r["seq_len"], r["peak_over_baseline_mb"]) for r in sc["runs"] if r["model"] == kind)
            first = (rs[1][1] - rs[0][1]) / (rs[1][0] - rs[0][0])
            last = (rs[-1][1] - rs[-2][1]) / (rs[-1][0] - rs[-2][0])
            growth[kind] = last / first if first > 0 else float("inf")
        r2 = min(f["memory"]["r2"] for f in sc["fits"].values())
        worst = max(growth, key=growth.get)
        t.append({"name": "memory grows linearly in T (no faster)",
                  "value": f"MB per step between the longest T / between the shortest: worst {growth[worst]:.2f} "
                           f"({worst}); worst R^2 of a straight line {r2:.4f}", "met": growth[worst] <= 1.25})
        lstm = [r for r in sc["runs"] if r["model"] == "lstm" and r["seq_len"] == max(res["sizes"]["scaling_lens"])]
        key = "cuda_peak_mb" if "cuda_peak_mb" in sc["lstm_with_default_eval"] else "peak_rss_mb"
        peak = max([sc["lstm_with_default_eval"][key]] + [r[key] for r in lstm])
        t.append({"name": f"LSTM at T={max(res['sizes']['scaling_lens'])} fits in 4 GB",
                  "value": f"peak {'CUDA memory' if key == 'cuda_peak_mb' else 'RSS'} {peak:.0f} MB (whole process)",
                  "met": peak <= 4096})
    if "sweep" in res:
        sw = res["sweep"]
        sp, tsp = sw["speedup"][SEQ1], sw["training_time_speedup"][SEQ1]
        t.append({"name": "2-job parallel sweep >= 1.7x sequential",
                  "value": f"{sp:.2f}x wall time ({tsp:.2f}x in training time, without process start and "
                           "evaluation)", "met": sp >= 1.7})
    return t


def write(res: dict, out: Path) -> None:
    res["targets"] = targets(res)
    res["markdown"] = markdown(res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run")
    p.add_argument("--parts", nargs="+", default=["train", "datagen", "probe", "scaling", "sweep"],
                   choices=["train", "datagen", "probe", "scaling", "sweep"])
    p.add_argument("--threads", type=int, nargs="+", help="torch threads to measure the training loops at")
    p.add_argument("--repeats", type=int, help="interleaved rounds of the training loops")
    p.add_argument("--models", nargs="+", choices=MODELS, help="models of the train and probe parts (default all)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    p.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/<device>-<cores>cores.json)")
    p.add_argument("--merge", action="store_true", help="keep the other parts already in --out, replace these")
    p.add_argument("--child-scaling", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_scaling:
        print(json.dumps(scaling_child(json.loads(args.child_scaling))))
        return {}

    s = Sizes() if not args.quick else Sizes(**asdict(QUICK))
    if args.threads:
        s.threads = tuple(args.threads)
    if args.repeats:
        s.repeats = args.repeats
    if args.models:
        s.models = tuple(args.models)
    device = resolve_device(args.device)
    os.environ.setdefault("WANDB_MODE", "offline")
    out = args.out or HERE / "results" / (f"{device.type}-{os.cpu_count()}cores{'-quick' if args.quick else ''}.json")
    command = "python benchmarks/performance.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res = {"machine": machine_info(device), "sizes": asdict(s), "quick": args.quick, "parts": {}}
    if args.merge and out.exists():  # re-measure some parts (e.g. when the machine is quieter), keep the rest
        res = {**json.loads(out.read_text()), "machine": res["machine"]}
    print(f"{command}\nload average at start {loadavg()}", flush=True)
    runners = {"train": lambda: part_train(s, device, tmp), "datagen": lambda: part_datagen(s, device),
               "probe": lambda: part_probe(s, device, tmp), "scaling": lambda: part_scaling(s, device),
               "sweep": lambda: part_sweep(s, tmp)}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for part in args.parts:
            info = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": loadavg(), "command": command}
            t_part = time.perf_counter()
            new = runners[part]()
            if part == "train" and args.merge:  # keep the rows of other thread counts
                new = [r for r in res.get("train", []) if r["threads"] not in s.threads] + new
            res[part] = new
            key = part if part != "train" else f"train, threads={'/'.join(map(str, s.threads))}"
            res["parts"][key] = {**info, "load_end": loadavg(), "duration_s": time.perf_counter() - t_part}
            write(res, out)  # after every part: a run stopped half-way keeps what it measured
    res["duration_s"] = time.perf_counter() - t0
    write(res, out)
    print("\n" + res["markdown"])
    print(f"\nresults: {out} ({res['duration_s']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
