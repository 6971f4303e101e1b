"""Where a population's time goes (issue 20): the trainability preset's 16 GRU members (gru and gru_chrono
x 4 recurrent gains x 2 seeds; 150 updates, T = 20, eval every 10, probe every 50) trained as one
population (``train_members``) against the same runs trained alone (``train``), in one process, imports
warmed by one run first; with the probe as the preset has it, without its Lyapunov spectra
(``probe.lyapunov_k=0``) and without a probe. Then one training step timed apart (median of 30):
forward, backward, clipping and the optimizer steps of the population against one lone run.

    python benchmarks/population_parts.py                 # ~6 min at load ~4 on 2 cores
    python benchmarks/population_parts.py --alone 2 --members 16 --variants full nolyap

Per member, the population's wall time over M against a lone run's (the first --alone runs, timed one
after the other). threads=1. Prints one JSON line per measurement and writes them with --out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.files import write_text
from seqlab.population import Population, clip_members, step_members
from seqlab.train import Member, RunInfo, train, train_members

VARIANTS = {"full": [], "nolyap": ["probe.lyapunov_k=0"], "noprobe": ["probe=none"]}


def configs(n: int, extra: list[str]) -> list:
    base = ["+experiment=trainability_boundary", "logger=none", "progress=false", "threads=1", "steps=150",
            "eval_every=10", "probe.every=50", "seq_len=20", *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return [compose(config_name="config", overrides=[*base, f"remedy={r}", f"model.layer.recurrent_gain={g}",
                                                           f"seed={s}"])
                for r in ("gru", "gru_chrono") for g in (0.5, 0.8, 1.0, 1.25) for s in (0, 1)][:n]


def timed_runs(cfgs: list, together: bool, where: Path) -> float:
    infos = [RunInfo(run_dir=where / str(i), name=f"r{i}") for i in range(len(cfgs))]
    t0 = time.perf_counter()
    if together:
        train_members(cfgs, infos)
    else:
        for cfg, info in zip(cfgs, infos):
            train(cfg, info)
    return time.perf_counter() - t0


def one_step(members: list, population: Population | None) -> tuple[float, float, float, float]:
    """(forward + loss, backward, clipping, optimizer) seconds of one training step, as the loop does it
    (a population: ``clip_members`` and ``step_members``, one pass over all members)."""
    batches = [m.task.make_batch(m.batch_size, m.data_gen, m.device) for m in members]
    steps = members[0].task.loss_steps
    t0 = time.perf_counter()
    if population is None:
        outputs = [members[0].model(batches[0].inputs, steps=steps)]
    else:
        outputs = population([m.model for m in members], torch.stack([b.inputs for b in batches]), steps).unbind(0)
    losses = [m.task.loss(out, b) for m, out, b in zip(members, outputs, batches)]
    for m in members:
        m.optimizer.zero_grad(set_to_none=True)
    t1 = time.perf_counter()
    (losses[0] if len(losses) == 1 else torch.stack(losses).sum()).backward()
    t2 = time.perf_counter()
    if population is None:
        torch.nn.utils.clip_grad_norm_(members[0].params, members[0].max_norm)
    else:  # as the loop does it: every member's own norm and update, all members at once
        clip_members([m.params for m in members], [m.max_norm for m in members])
    t3 = time.perf_counter()
    if population is None:
        members[0].optimizer.step()
    else:
        step_members([m.optimizer for m in members])
    return t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--alone", type=int, default=2, help="lone runs timed (their mean is the per-run figure)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train(configs(1, [])[0], RunInfo(run_dir=tmp / "warm", name="warm"))  # imports and first-call costs
        for variant in a.variants:
            cfgs = configs(a.members, VARIANTS[variant])
            load = os.getloadavg()[0]
            pop = timed_runs(cfgs, True, tmp / f"{variant}-pop")
            alone = timed_runs(cfgs[:a.alone], False, tmp / f"{variant}-alone")
            row = {"variant": variant, "members": len(cfgs), "population_s": round(pop, 2),
                   "population_per_member_s": round(pop / len(cfgs), 3), "alone_per_run_s": round(alone / a.alone, 3),
                   "per_core_speedup": round(alone / a.alone / (pop / len(cfgs)), 2), "load": load}
            print(json.dumps(row), flush=True)
            out.append(row)
        members = []
        for i, cfg in enumerate(configs(a.members, ["probe=none"])):
            m = Member(cfg, RunInfo(run_dir=tmp / "step" / str(i), name=str(i)), batched=True)
            m.open()
            members.append(m)
        population = Population([m.model for m in members])
        for who, ms, p in (("population", members, population), ("alone", members[:1], None)):
            for _ in range(5):
                one_step(ms, p)
            times = [one_step(ms, p) for _ in range(30)]
            row = {"step": who, "members": len(ms), **{k: round(1000 * statistics.median(t), 2) for k, t in
                   zip(("forward_ms", "backward_ms", "clip_ms", "optimizer_ms"), zip(*times))},
                   "load": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)
            out.append(row)
        for m in members:
            m.close()
        shutil.rmtree(tmp / "step", ignore_errors=True)
    if a.out:
        write_text(a.out, json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
