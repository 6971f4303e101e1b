"""Per-member cost of a population's training step against its size M (issue 20): is a population of 16
slower per member than one of 4 at the long-memory sizes, and where does the time go?

    python benchmarks/population_sizes.py                               # long: GRU, adding T=200, H=64, B=64
    python benchmarks/population_sizes.py --sizes small --ms 1 4 16 64  # the trainability sweep's sizes
    python benchmarks/population_sizes.py --sizes small --model lstm    # another cell (extra overrides: --set)

One process, threads=1, members built as the loop builds them (``Member``), one training step timed as the
loop runs it (``population_parts.one_step``: forward + loss, backward, clipping, optimizer; median of
``--repeats`` after 2 warm-ups) for a lone run on its fused kernel and for populations of each M; the
sizes are interleaved round by round so that load from other processes hits them alike. Reports ms per
member-step for each part, the peak of the autograd graph's saved tensors (MB, from saved-tensor hooks)
and the per-member speed-up over the lone run. Writes --out (JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.config import build_model, build_task
from seqlab.files import write_text
from seqlab.population import Population, batchable
from seqlab.train import Member, RunInfo

HERE = Path(__file__).resolve().parent
import sys  # noqa: E402

sys.path.insert(0, str(HERE))
from population_parts import one_step  # noqa: E402

SIZES = {
    "long": ["model=gru", "task=adding", "seq_len=200", "model.hidden_size=64", "batch_size=64", "grad_clip=1.0"],
    "small": ["model=gru", "task=delayed_recall", "seq_len=40", "model.hidden_size=32", "batch_size=32",
              "grad_clip=1.0"],
}


def members(n: int, sizes: list[str], where: Path) -> list[Member]:
    base = ["logger=none", "progress=false", "threads=1", "probe=none", "eval_size=32", *sizes]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfgs = [compose(config_name="config", overrides=[*base, f"seed={i // 2}", f"optim.lr={(1e-3, 3e-3)[i % 2]}"])
                for i in range(n)]
    out = []
    for i, cfg in enumerate(cfgs):
        m = Member(cfg, RunInfo(run_dir=where / f"{n}-{i}", name=str(i)), batched=n > 1)
        m.open()
        out.append(m)
    return out


def saved_mb(ms: list[Member], population: Population | None) -> float:
    """MB of tensors autograd saves for the backward in one forward + loss (the graph's memory)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    batches = [m.task.make_batch(m.batch_size, m.data_gen, m.device) for m in ms]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if population is None:
            out = [ms[0].model(batches[0].inputs, steps=ms[0].task.loss_steps)]
        else:
            out = population([m.model for m in ms], torch.stack([b.inputs for b in batches]),
                             ms[0].task.loss_steps).unbind(0)
        sum(m.task.loss(o, b) for m, o, b in zip(ms, out, batches))
    return total / 2**20


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="long", choices=sorted(SIZES))
    ap.add_argument("--ms", nargs="+", type=int, default=[2, 4, 8, 16])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default="gru", choices=sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml")),
                    help="the cell (model=...) instead of the sizes' gru")
    ap.add_argument("--set", nargs="*", default=[], help="more overrides, e.g. model.layer.init=orthogonal")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [f"model={a.model}" if o.startswith("model=") else o for o in SIZES[a.sizes]] + a.set
    try:  # the sizes compose, build and train as a population, or one line says why not
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=sizes)
        with torch.device("meta"):
            build_model(cfg, build_task(cfg))  # a bad value: its one-line ConfigError (key, value, what is allowed)
    except Exception as e:  # noqa: BLE001 - hydra's override errors and the lab's ConfigError
        ap.error(f"--set {' '.join(a.set)}: {str(e).splitlines()[0]}")
    why = batchable(cfg)
    if why is not None:
        ap.error(f"{' '.join(['--model', a.model, *a.set])}: cannot train as a population: {why}")
    result = {"sizes": sizes, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "load_start": os.getloadavg(), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        setups = {"lone": (members(1, sizes, Path(tmp)), None)}
        for m in a.ms:
            ms = members(m, sizes, Path(tmp))
            setups[m] = (ms, Population([x.model for x in ms]))
        times = {k: [] for k in setups}
        for _ in range(2):
            for k, (ms, pop) in setups.items():
                one_step(ms, pop)
        for _ in range(a.repeats):
            for k, (ms, pop) in setups.items():
                times[k].append(one_step(ms, pop))
        lone = None
        for k, (ms, pop) in setups.items():
            parts = [statistics.median(t) * 1000 / len(ms) for t in zip(*times[k])]
            row = {"members": k, **{f"{n}_ms_per_member": round(v, 2) for n, v in
                                    zip(("forward", "backward", "clip", "optimizer"), parts)},
                   "step_ms_per_member": round(sum(parts), 2), "saved_mb": round(saved_mb(ms, pop), 1)}
            lone = lone or row["step_ms_per_member"]
            row["per_member_speedup"] = round(lone / row["step_ms_per_member"], 2)
            print(json.dumps(row), flush=True)
            result["rows"].append(row)
            for x in ms:
                x.close()
    result["load_end"] = os.getloadavg()
    if a.out:
        write_text(a.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
