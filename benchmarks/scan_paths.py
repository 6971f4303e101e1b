"""Loop or scan: the fastest path of the input-gated cells per device, and the new cells' training
step against hand-written PyTorch (issue 12).

    python benchmarks/scan_paths.py                         # CPU, one thread: both parts (~10 min idle)
    python benchmarks/scan_paths.py --parts paths --device cuda   # the GPU side
    python benchmarks/scan_paths.py --quick                 # smoke run on tiny sizes (tests)

paths  One forward + backward (loss = mean of the layer's output) of a single layer, for minGRU,
       minLSTM, the selective SSM and the LRU, at T = 200, 1000, 5000, by every fast path the cell
       has (seqlab.models.scan: loop, chunked, parallel, log): B = 64, H = 128 (the selective SSM:
       B = 16, H = 64, N = 8, its state is N times wider). Repeats are interleaved (one round = every
       path once, order rotated), so load from other processes hits all alike; reported: the median
       time of each path and the median over rounds of its ratio to the loop. The fastest path per
       device is what ``scan: auto`` picks (seqlab.models.scan.AUTO).
train  A CPU training step (adding, T = 200, B = 64, H = 128, Adam) of every new cell: seqlab's own
       loop, ``seqlab.train.train`` (logger/probe off; its steps/s leave evaluation out), against a
       bare hand-written PyTorch loop of the same math on the same batches from the same initial
       weights: minGRU with ``torch.lerp`` over ``unbind``-ed steps (the issue's fastest measured),
       minLSTM with ``addcmul``, the SSM as mamba-minimal writes its sequential scan, coRNN as the
       published cell (``Linear`` over ``cat(x, z, y)`` per step) and with the input term
       precomputed (the faster of the two is the yardstick). Same loss at the end = same work.
       Target: seqlab's step <= 1.1x the fastest bare loop.

Threads are pinned (``torch.set_num_threads``; one by default). Writes
benchmarks/results/scan_paths-<device>[-quick].json (machine, sizes, every repeat, the tables).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from performance import compose_cfg, loadavg, machine_info, median, sync  # noqa: E402

from seqlab.config import build_model, build_task, resolve_device  # noqa: E402
from seqlab.models import LRULayer, MinGRULayer, MinLSTMLayer, SelectiveLayer  # noqa: E402
from seqlab.models import scan as scans  # noqa: E402
from seqlab.train import RunInfo, train  # noqa: E402

HERE = Path(__file__).resolve().parent

# cell -> (layer factory, its paths, (B, H) of the paths part); AUTO_OF: its scan: auto rule
AUTO_OF = {"mingru": MinGRULayer.auto, "minlstm": MinLSTMLayer.auto, "selective": SelectiveLayer.auto,
           "lru": LRULayer.auto}
PATH_CELLS = {
    "mingru": (lambda H: MinGRULayer(1, H), scans.METHODS, (64, 128)),
    "minlstm": (lambda H: MinLSTMLayer(1, H), scans.METHODS, (64, 128)),
    "selective": (lambda H: SelectiveLayer(1, H, state_size=8), scans.LINEAR, (16, 64)),
    "lru": (lambda H: LRULayer(1, H), scans.LINEAR, (64, 128)),
}
TRAIN_CELLS = ("mingru", "minlstm", "selective", "cornn")


def set_path(layer: nn.Module, method: str) -> None:
    if isinstance(layer, LRULayer):
        layer.scan_choice = method
    else:
        layer.scan = method


# --- part 1: loop vs scan -------------------------------------------------------------------------

def part_paths(lens, repeats: int, device: torch.device, quick: bool, on_row: list | None = None,
               save=lambda: None, cells=tuple(PATH_CELLS)) -> list[dict]:
    rows = [] if on_row is None else on_row
    for cell in cells:
        make, methods, (B, H) = PATH_CELLS[cell]
        if quick:
            B, H = 4, 8
        torch.manual_seed(0)
        layer = make(H).to(device)
        params = list(layer.parameters())
        for T in lens:
            x = torch.randn(B, T, 1, device=device)

            def run(method):
                set_path(layer, method)
                for p in params:
                    p.grad = None
                sync(device)
                t0 = time.perf_counter()
                layer(x).mean().backward()
                sync(device)
                return time.perf_counter() - t0

            for m in methods:
                run(m)  # warm-up (allocator, CUDA kernels)
            times = {m: [] for m in methods}
            for r in range(repeats):
                for m in methods[r % len(methods):] + methods[:r % len(methods)]:
                    times[m].append(run(m))
            ms = {m: 1e3 * median(v) for m, v in times.items()}
            ratio = {m: median([a / b for a, b in zip(times[m], times["loop"])]) for m in methods}
            best = min(ms, key=ms.get)
            rows.append({"cell": cell, "seq_len": T, "batch": B, "hidden": H, "repeats": repeats, "ms": ms,
                         "over_loop": ratio, "fastest": best, "all_s": times, "load": loadavg()})
            save()
            print(f"  {cell} T={T}: " + ", ".join(f"{m} {v:.1f} ms ({ratio[m]:.2f}x)" for m, v in ms.items())
                  + f"; fastest {best}; load {loadavg()}", flush=True)
    return rows


# --- part 2: seqlab's training step vs a bare loop -------------------------------------------------

def g(v):
    return torch.where(v >= 0, v.clamp_min(0) + 0.5, torch.sigmoid(v))


class BareMinGRU(nn.Module):
    def __init__(self, layer, readout):
        super().__init__()
        self.linear, self.readout = layer.linear, readout

    def forward(self, x):  # (B, T, D) -> (B, O) at the last step
        k, v = self.linear(x).chunk(2, dim=-1)
        z, hh = torch.sigmoid(k), g(v)
        h = torch.zeros_like(hh[:, 0])
        for z_t, hh_t in zip(z.unbind(1), hh.unbind(1)):
            h = torch.lerp(h, hh_t, z_t)
        return self.readout(h)


class BareMinLSTM(nn.Module):
    def __init__(self, layer, readout):
        super().__init__()
        self.linear, self.readout = layer.linear, readout

    def forward(self, x):
        k_f, k_i, v = self.linear(x).chunk(3, dim=-1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        fp, ib = f / (f + i), i / (f + i) * g(v)
        h = torch.zeros_like(fp[:, 0])
        for f_t, b_t in zip(fp.unbind(1), ib.unbind(1)):
            h = torch.addcmul(b_t, f_t, h)
        return self.readout(h)


class BareSelective(nn.Module):
    """johnma2006/mamba-minimal's selective_scan (its sequential loop), ``unbind`` for the steps."""

    def __init__(self, layer, readout):
        super().__init__()
        self.l, self.readout = layer, readout

    def forward(self, x):
        l = self.l
        u = F.silu(l.in_proj(x))  # (B, T, H)
        r, Bm, C = l.x_proj(u).split([l.R, l.N, l.N], dim=-1)
        delta = F.softplus(l.dt_proj(r))
        A = -torch.exp(l.A_log)
        dA = torch.exp(torch.einsum("bth,hn->bthn", delta, A))
        dBu = torch.einsum("bth,btn,bth->bthn", delta, Bm, u)
        s = torch.zeros_like(dA[:, 0])
        for a_t, b_t in zip(dA.unbind(1), dBu.unbind(1)):
            s = a_t * s + b_t
        y = torch.einsum("bhn,bn->bh", s, C[:, -1]) + l.D * u[:, -1]
        return self.readout(y)


class BareCoRNNPublished(nn.Module):
    """tk-rusch/coRNN's cell: Linear over cat(x, z, y) at every step."""

    def __init__(self, layer, readout):
        super().__init__()
        self.l, self.readout = layer, readout

    def forward(self, x):
        l = self.l
        hy = x.new_zeros(x.shape[0], l.hidden_size)
        hz = hy
        for x_t in x.unbind(1):
            hz = hz + l.dt * (torch.tanh(l.i2h(torch.cat((x_t, hz, hy), 1))) - l.gamma * hy - l.epsilon * hz)
            hy = hy + l.dt * hz
        return self.readout(hy)


class BareCoRNNPrecomputed(nn.Module):
    """The same, with V u + b for all t in one matmul and one (H, 2H) matmul per step."""

    def __init__(self, layer, readout):
        super().__init__()
        self.l, self.readout = layer, readout

    def forward(self, x):
        l, D = self.l, self.l.input_size
        w = l.i2h.weight
        drive = F.linear(x, w[:, :D], l.i2h.bias)  # (B, T, H)
        W_zy = w[:, D:]
        hy = x.new_zeros(x.shape[0], l.hidden_size)
        hz = hy
        for u_t in drive.unbind(1):
            hz = hz + l.dt * (torch.tanh(u_t + torch.cat((hz, hy), 1) @ W_zy.T) - l.gamma * hy - l.epsilon * hz)
            hy = hy + l.dt * hz
        return self.readout(hy)


BARE = {"mingru": {"bare": BareMinGRU}, "minlstm": {"bare": BareMinLSTM}, "selective": {"bare": BareSelective},
        "cornn": {"bare_published": BareCoRNNPublished, "bare_precomputed": BareCoRNNPrecomputed}}


def run_bare(cls, cfg, steps: int, device) -> tuple[float, float]:
    """(steps/s, mean train loss over seqlab's last log window) of a bare loop on seqlab's batches and init."""
    task = build_task(cfg)
    torch.manual_seed(cfg.seed)
    seq = build_model(cfg, task).to(device)  # the very weights seqlab starts from
    model = cls(seq.layers[0], seq.readout)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    losses = []
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        batch = task.make_batch(cfg.batch_size, gen, device)
        loss = ((model(batch.inputs)[:, 0] - batch.targets[:, 0]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    sync(device)
    window = losses[((steps - 1) // cfg.log_every) * cfg.log_every:]  # the steps of seqlab's last log row
    return steps / (time.perf_counter() - t0), float(torch.stack(window).mean())


def run_seqlab(cfg, tmp: Path) -> tuple[float, float]:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    summary = train(cfg, RunInfo(run_dir=run_dir, name="bench"))
    rows = [json.loads(r) for r in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary["steps_per_s"], rows[-1]["train/loss"]


def part_train(T: int, B: int, H: int, steps: int, repeats: int, threads: int, device, tmp: Path,
               quick: bool, cells=TRAIN_CELLS, on_row: list | None = None, save=lambda: None,
               selective_state: int = 16) -> list[dict]:
    rows = [] if on_row is None else on_row
    for cell in cells:
        extra = [f"model.layer.state_size={4 if quick else selective_state}"] if cell == "selective" else []
        cfg = compose_cfg([f"model={cell}", "task=adding", f"seq_len={T}", f"batch_size={B}",
                           f"model.hidden_size={H}", f"steps={steps}", f"threads={threads}", "log_every=10",
                           f"eval_size={B}", f"device={device}", "logger=none", "probe=none", "progress=false",
                           *extra])
        loops = ("seqlab", *BARE[cell])
        sps = {k: [] for k in loops}
        loss = {}
        for r in range(repeats):
            for k in loops[r % len(loops):] + loops[:r % len(loops)]:
                torch.set_num_threads(threads)
                v, loss[k] = run_seqlab(cfg, tmp) if k == "seqlab" else run_bare(BARE[cell][k], cfg, steps, device)
                sps[k].append(v)
        bare = [k for k in loops if k != "seqlab"]
        fastest = max(bare, key=lambda k: median(sps[k]))
        # time ratio seqlab / fastest bare = bare steps/s over seqlab steps/s, per round
        ratio = median([b / s for s, b in zip(sps["seqlab"], sps[fastest])])
        row = {"cell": cell if cell != "selective" else f"selective (N={4 if quick else selective_state})",
               "seq_len": T, "batch": B, "hidden": H, "threads": threads, "steps": steps,
               "repeats": repeats, "steps_per_s": {k: median(v) for k, v in sps.items()}, "all_steps_per_s": sps,
               "fastest_bare": fastest, "seqlab_time_over_fastest_bare": ratio, "train_loss": loss,
               "loss_diff": abs(loss["seqlab"] - loss[bare[0]]), "load": loadavg()}
        rows.append(row)
        save()
        print(f"  train {cell}: " + ", ".join(f"{k} {v:.2f}" for k, v in row["steps_per_s"].items())
              + f" steps/s; seqlab time / {fastest} {ratio:.3f}; loss diff {row['loss_diff']:.2e}; load {loadavg()}",
              flush=True)
    return rows


# --- report ---------------------------------------------------------------------------------------

def markdown(res: dict) -> str:
    m = res["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}; device {m['device']}"
           f"{' (' + m['gpu'] + ')' if m['gpu'] else ''}; threads {res['threads']}; {m['date']}. "
           f"Load average at start {res['load_start']}, end {res.get('load_end')}."]
    if res.get("paths"):
        out += ["", "One forward + backward of one layer, ms (median of interleaved rounds; in brackets: "
                "time / the loop's, median over rounds)", "",
                "| cell | B x H | T | loop | chunked | parallel | log | fastest |", "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in res["paths"]:
            cells = [f"{r['ms'][k]:.1f} ({r['over_loop'][k]:.2f}x)" if k in r["ms"] else "-" for k in scans.METHODS]
            out.append(f"| {r['cell']} | {r['batch']} x {r['hidden']} | {r['seq_len']} | " + " | ".join(cells)
                       + f" | {r['fastest']} |")
    if res.get("train"):
        out += ["", "Training step, adding, steps/s (median of interleaved rounds); seqlab's time over the "
                "fastest bare loop's (median over rounds)", "",
                "| cell | T | B | H | seqlab | bare loop(s) | seqlab / fastest bare | same loss |",
                "|---|---:|---:|---:|---:|---|---:|---:|"]
        for r in res["train"]:
            bare = ", ".join(f"{k} {v:.2f}" for k, v in r["steps_per_s"].items() if k != "seqlab")
            out.append(f"| {r['cell']} | {r['seq_len']} | {r['batch']} | {r['hidden']} | "
                       f"{r['steps_per_s']['seqlab']:.2f} | {bare} | {r['seqlab_time_over_fastest_bare']:.3f} | "
                       f"{r['loss_diff']:.1e} |")
    for t in res.get("targets", []):
        out.append(f"\n- {t['name']}: {t['value']} -> {'met' if t['met'] else 'MISSED'}")
    return "\n".join(out)


def targets(res: dict) -> list[dict]:
    out = []
    if res.get("train"):
        worst = max(res["train"], key=lambda r: r["seqlab_time_over_fastest_bare"])
        out.append({"name": "each new cell's training step <= 1.1x the fastest bare loop",
                    "value": f"worst {worst['seqlab_time_over_fastest_bare']:.3f} ({worst['cell']})",
                    "met": worst["seqlab_time_over_fastest_bare"] <= 1.1})
    if res.get("paths"):
        device = res["machine"]["device"].split(":")[0]
        worst, misses = 1.0, []
        for r in res["paths"]:
            x = torch.zeros(1, r["seq_len"], 1, device="meta")
            auto = scans.resolve("auto", x, {"meta": AUTO_OF[r["cell"]].get(device, scans.AUTO["cpu"])})
            ratio = r["ms"][auto] / r["ms"][r["fastest"]]
            worst = max(worst, ratio)
            if auto != r["fastest"]:
                misses.append(f"{r['cell']} T={r['seq_len']}: auto {auto} {ratio:.2f}x the fastest ({r['fastest']})")
        out.append({"name": f"scan: auto on {device} within 1.1x of the fastest path measured, every cell and T",
                    "value": f"worst {worst:.2f}x" + (f"; not the fastest: {'; '.join(misses)}" if misses else ""),
                    "met": worst <= 1.1})
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["paths", "train"], choices=["paths", "train"])
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lens", type=int, nargs="+", default=[200, 1000, 5000])
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the paths part")
    p.add_argument("--train-repeats", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--cells", nargs="+", choices=TRAIN_CELLS, default=list(TRAIN_CELLS), help="cells of the train part")
    p.add_argument("--selective-state", type=int, default=16, help="N of the selective SSM in the train part")
    p.add_argument("--paths-cells", nargs="+", choices=list(PATH_CELLS), default=list(PATH_CELLS),
                   help="cells of the paths part")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke run")
    p.add_argument("--out", type=Path)
    p.add_argument("--rewrite", type=Path, help="recompute the targets and tables of a saved results JSON "
                   "(after changing a cell's scan: auto rule) and exit")
    args = p.parse_args(argv)
    if args.rewrite:
        res = json.loads(args.rewrite.read_text())
        res["targets"] = targets(res)
        res["markdown"] = markdown(res)
        args.rewrite.write_text(json.dumps(res, indent=1) + "\n")
        print(res["markdown"])
        return res
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    os.environ.setdefault("WANDB_MODE", "offline")
    lens = [8, 20] if args.quick else args.lens
    out = args.out or HERE / "results" / f"scan_paths-{device.type}{'-quick' if args.quick else ''}.json"
    res = {"machine": machine_info(device), "threads": args.threads, "quick": args.quick, "load_start": loadavg(),
           "command": "python benchmarks/scan_paths.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(res["command"], flush=True)
    def save():  # after every row: a run stopped half-way keeps what it measured
        res["load_end"] = loadavg()
        res["targets"] = targets(res)
        res["markdown"] = markdown(res)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")

    with tempfile.TemporaryDirectory() as d:
        if "train" in args.parts:  # first: the 1.1x target
            res["train"] = []
            if args.quick:
                part_train(10, 4, 8, 3, 1, args.threads, device, Path(d), True, on_row=res["train"], save=save)
            else:
                part_train(200, 64, 128, args.train_steps, args.train_repeats, args.threads, device, Path(d), False,
                           args.cells, on_row=res["train"], save=save, selective_state=args.selective_state)
        if "paths" in args.parts:
            res["paths"] = []
            part_paths(lens, 1 if args.quick else args.repeats, device, args.quick, on_row=res["paths"], save=save,
                       cells=args.paths_cells)
    save()
    print("\n" + res["markdown"] + f"\n\nresults: {out}")
    return res


if __name__ == "__main__":
    main()
