"""One thread or one per core: seqlab's training speed alone on the machine and next to a competing process.

    python benchmarks/threads.py                          # rnn and lstm, the quick-start sizes
    python benchmarks/threads.py --models rnn lstm gru --repeats 5 --steps 60
    python benchmarks/threads.py --quick                  # smoke run on tiny sizes (tests)

Why: with torch's default (one intra-op thread per core) a run slows down many times over as soon as
another process wants a core, because every operation waits for its slowest thread; seqlab's default is
therefore ``threads: 1`` (conf/config.yaml). This measures that choice, on one machine in one run:

  for each round, model and condition (``alone``: nothing started by this script; ``competing``: one
  single-threaded CPU-bound process started next to it), the training step of seqlab's loop (its
  model, task and optimizer from the composed config: adding T=200, B=64, H=128, Adam; see
  ``steps_per_s``) at threads=1 and at threads=cores, for at most --steps steps or --seconds seconds
  (a 2-thread step under load can take seconds). Rounds are interleaved (order rotated),
  and every figure is a median over rounds; the ratios are medians of per-round ratios, each taken
  between runs that sat next to each other in time. "alone" means alone as far as this script knows:
  the load average at the start and end is recorded, and on a shared machine it is not zero.

Prints a markdown table and writes benchmarks/results/threads-<device>-<cores>cores[-quick].json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPIN = "import time\nwhile True:\n    pass\n"  # one core, busy, no threads


def compose_cfg(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from seqlab.__main__ import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def steps_per_s(model: str, threads: int, a) -> float:
    """Training steps/s of seqlab's model, task and optimizer at ``threads``: the step of seqlab's loop
    (batch, forward read out at the loss steps, loss, backward, pre-clip norm, one host sync, update),
    after one warm-up step, for ``a.steps`` steps or ``a.seconds`` seconds, whichever comes first (with
    2 threads under load one step can take seconds)."""
    import torch

    from seqlab.config import build_optimizer, setup

    cfg = compose_cfg([f"model={model}", "task=adding", f"seq_len={a.seq_len}", f"batch_size={a.batch}",
                       f"model.hidden_size={a.hidden}", f"threads={threads}", "logger=none", "probe=none",
                       "device=cpu"])
    device, task, net = setup(cfg)  # sets torch's threads from cfg.threads
    optimizer = build_optimizer(cfg, net)
    params = list(net.parameters())
    gen = torch.Generator().manual_seed(cfg.seed)

    def step() -> None:
        batch = task.make_batch(cfg.batch_size, gen, device)
        loss = task.loss(net(batch.inputs, steps=task.loss_steps), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        torch.stack([loss.detach(), norm]).tolist()
        optimizer.step()

    step()
    n, t0 = 0, time.perf_counter()
    while n < a.steps and (n == 0 or time.perf_counter() - t0 < a.seconds):
        step()
        n += 1
    return n / (time.perf_counter() - t0)


def median(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["rnn", "lstm"])
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per timed run (at most)")
    p.add_argument("--seconds", type=float, default=10.0, help="time per timed run (at most; >= 1 step)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    p.add_argument("--competitors", type=int, default=1, help="busy single-threaded processes in 'competing'")
    p.add_argument("--seq-len", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke run")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.seconds, a.repeats, a.seq_len, a.batch, a.hidden = 4, 2.0, 1, 10, 4, 8
    import torch

    cores = os.cpu_count() or 1
    many = max(cores, 2)
    conditions = ("alone", "competing")
    sps = {m: {c: {t: [] for t in (1, many)} for c in conditions} for m in a.models}
    load = {"start": [round(x, 2) for x in os.getloadavg()]}
    t0 = time.perf_counter()
    for r in range(a.repeats):
        for m in a.models:
            for c in (conditions if r % 2 == 0 else conditions[::-1]):
                procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(a.competitors)] \
                    if c == "competing" else []
                try:
                    time.sleep(0.2 * bool(procs))  # let the competitor get going
                    for t in ((1, many) if r % 2 == 0 else (many, 1)):
                        sps[m][c][t].append(steps_per_s(m, t, a))
                finally:
                    for proc in procs:
                        proc.kill()
                        proc.wait()
                print(f"  round {r} {m} {c}: " + ", ".join(f"threads={t} {v[-1]:.2f}" for t, v in sps[m][c].items())
                      + f" steps/s; load {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    torch.set_num_threads(1)
    load["end"] = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for m in a.models:
        row = {"model": m, "steps_per_s": {c: {t: median(v) for t, v in sps[m][c].items()} for c in conditions},
               "all_steps_per_s": sps[m],
               # per-round ratios between neighbouring runs
               "many_over_one": {c: median([x / y for x, y in zip(sps[m][c][many], sps[m][c][1])])
                                 for c in conditions},
               "competing_over_alone": {t: median([x / y for x, y in zip(sps[m]["competing"][t], sps[m]["alone"][t])])
                                        for t in (1, many)}}
        rows.append(row)
    res = {"command": "python benchmarks/threads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M"), "cores": cores, "many": many, "torch": torch.__version__,
           "python": sys.version.split()[0], "sizes": {"seq_len": a.seq_len, "batch": a.batch, "hidden": a.hidden,
                                                        "steps": a.steps, "seconds": a.seconds, "repeats": a.repeats,
                                                        "competitors": a.competitors},
           "load_average": load, "duration_s": time.perf_counter() - t0, "rows": rows}
    lines = [f"adding T={a.seq_len}, B={a.batch}, H={a.hidden}; steps/s, median of {a.repeats} interleaved rounds "
             f"of up to {a.steps} steps or {a.seconds:g} s; competing = {a.competitors} busy single-threaded process(es); {cores} cores; "
             f"load average {load['start']} -> {load['end']}", "",
             f"| model | alone, 1 thread | alone, {many} threads | {many} / 1 alone | competing, 1 thread "
             f"| competing, {many} threads | {many} / 1 competing | competing / alone, 1 thread "
             f"| competing / alone, {many} threads |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        s, r1, r2 = row["steps_per_s"], row["many_over_one"], row["competing_over_alone"]
        lines.append(f"| {row['model']} | {s['alone'][1]:.2f} | {s['alone'][many]:.2f} | {r1['alone']:.2f} | "
                     f"{s['competing'][1]:.2f} | {s['competing'][many]:.2f} | {r1['competing']:.2f} | "
                     f"{r2[1]:.2f} | {r2[many]:.2f} |")
    res["markdown"] = "\n".join(lines)
    out = a.out or HERE / "results" / f"threads-cpu-{cores}cores{'-quick' if a.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print("\n" + res["markdown"] + f"\n\nresults: {out} ({res['duration_s']:.0f} s)")
    return res


if __name__ == "__main__":
    main()
