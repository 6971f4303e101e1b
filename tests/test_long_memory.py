"""The long-memory table (conf/experiment/long_memory.yaml, seqlab.report.long_memory) and the
loop-vs-scan benchmark (benchmarks/scan_paths.py), end to end on tiny sizes."""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.report import long_memory
from seqlab.report.runs import load_runs
from seqlab.train import RunInfo, train

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scan_paths.py"


def cfg_for(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["+experiment=long_memory", "logger=none", *overrides])


def test_the_experiment_sweeps_every_cell_preset_on_three_tasks_with_one_budget():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+experiment=long_memory"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    cells = params.remedy.split(",")
    remedies = {p.stem for p in (Path(CONF_DIR) / "remedy").glob("*.yaml")}
    assert set(cells) <= remedies and len(cells) == 12
    assert {"mingru", "minlstm", "cornn", "selective", "lstm_chrono", "lstm_forget1", "irnn"} <= set(cells)
    assert params.task.split(",") == ["adding", "copy", "delayed_recall"]
    lengths = [int(t) for t in str(params.seq_len).split(",")]
    assert lengths == sorted(lengths) and len(lengths) >= 3
    for cell in cells:  # every preset composes under the experiment with the same budget and probe at 0
        c = cfg_for(f"remedy={cell}")
        assert c.steps * c.batch_size == 128_000 and c.probe.every == c.steps and c.model.hidden_size == 64


def test_largest_length_solved_and_gaps():
    rows = [{"cell": "a", "task": "adding", "seq_len": T, "solved": s, "examples_to_solve": e}
            for T, s, e in [(50, True, 6400), (100, False, None), (200, True, 64000)]]
    rows += [{"cell": "b", "task": "adding", "seq_len": 50, "solved": False, "examples_to_solve": None}]
    grid = long_memory.largest_solved(rows)
    assert grid["a", "adding"]["length"] == 200 and grid["a", "adding"]["examples_at_length"] == 64000
    assert grid["a", "adding"]["gaps"] == [100]  # solved at 200 but not at 100: marked
    assert grid["b", "adding"]["length"] is None


def test_report_on_real_runs(tmp_path, capsys):
    """Two tiny runs: the table counts examples as batch x the solving step, reads the step-0 probe."""
    for cell in ("gru", "cornn"):
        cfg = cfg_for(f"remedy={cell}", "task=adding", "seq_len=5", "steps=60", "eval_every=20", "eval_size=32",
                      "model.hidden_size=8", "batch_size=16", "optim.lr=0.01", "probe.batch_size=8",
                      "probe.lyapunov_k=2", "probe.lyapunov_steps=0", "probe.plots=false")
        train(cfg, RunInfo(run_dir=tmp_path / "sweep" / cell, name=cell,
                           choices={"remedy": cell, "task": "adding", "model": cfg.model.layer._target_}))
    runs = load_runs([tmp_path / "sweep"])
    written = long_memory.write(runs, tmp_path / "out")
    data = json.loads(written["json"].read_text())
    by_cell = {r["cell"]: r for r in data["runs"]}
    assert set(by_cell) == {"gru", "cornn"}
    for cell, r in by_cell.items():
        summary = json.loads((tmp_path / "sweep" / cell / "summary.json").read_text())
        assert r["solved"] == summary["solved"]
        assert r["examples_to_solve"] == (None if summary["solved_step"] is None else summary["solved_step"] * 16)
        assert r["budget_examples"] == 60 * 16
        assert math.isclose(r["loss_over_baseline"], summary["loss_over_baseline"])
        assert math.isfinite(r["init_gain"]) and math.isfinite(r["init_lyapunov_max"])
    assert by_cell["cornn"]["probe_curve"] == "y_l0"  # coRNN's first state, y
    md = written["markdown"].read_text()
    assert "| gru |" in md and "| cornn |" in md and written["figure"].stat().st_size > 0
    assert long_memory.main([str(tmp_path / "nowhere")]) == 2
    (tmp_path / "a_file").write_text("")  # -o that cannot be a folder: one line, exit 2, no traceback
    assert long_memory.main([str(tmp_path / "sweep"), "-o", str(tmp_path / "a_file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"seqlab.report.long_memory: error: -o {tmp_path / 'a_file'}: cannot write there")


def test_scan_benchmark_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("seqlab_benchmark_scan_paths", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        res = module.main(["--quick", "--out", str(tmp_path / "q.json")])
    finally:
        sys.modules.pop(spec.name, None)
    saved = json.loads((tmp_path / "q.json").read_text())
    assert {r["cell"] for r in saved["paths"]} == {"mingru", "minlstm", "selective", "lru"}
    for r in saved["paths"]:
        assert r["over_loop"]["loop"] == 1.0 and all(v > 0 for v in r["ms"].values())
        assert ("log" in r["ms"]) == (r["cell"] in ("mingru", "minlstm"))
    for r in saved["train"]:  # the bare loops did the same work as seqlab's: the same losses
        assert r["loss_diff"] < 1e-4, r
    assert res["markdown"] == saved["markdown"]


def test_pick_keeps_the_most_complete_copy_of_a_run():
    from seqlab.report.runs import Run

    def run(status, T=200, path="a"):
        return Run(path=Path(path), status=status, config={"choices": {"remedy": "gru", "task": "copy"},
                                                            "seq_len": T, "seed": 0}, overrides=[], summary={},
                   metrics=[])
    picked = long_memory.pick([run("preempted", path="device"), run("finished", path="local"), run("unfinished", 100)])
    assert sorted((r.seq_len, r.status, str(r.path)) for r in picked) == [(100, "unfinished", "a"),
                                                                          (200, "finished", "local")]
