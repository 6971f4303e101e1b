"""benchmarks/performance.py runs end to end on tiny sizes and writes its tables and JSON.

No timing assertions: the figures depend on the machine and its load; only that every part
ran, measured something and reported it.
"""
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "performance.py"


@pytest.fixture(scope="module")
def performance():
    spec = importlib.util.spec_from_file_location("seqlab_benchmark_performance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def finite_positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_quick_train_datagen_probe(performance, tmp_path, capsys):
    out = tmp_path / "quick.json"
    res = performance.main(["--quick", "--parts", "train", "datagen", "probe", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["quick"] and saved["machine"]["torch"] and saved["machine"]["cores"] >= 1
    assert [r["model"] for r in saved["train"]] == ["rnn", "lstm", "gru"]
    for row in saved["train"]:
        assert all(finite_positive(v) for v in row["steps_per_s"].values())
        assert set(row["steps_per_s"]) == {"seqlab", "bare_fused", "bare_no_flush", "bare_cell"}
        # the bare fused loop did the very same work as seqlab's loop: same batches, weights, losses
        assert row["loss_diff_seqlab_vs_bare"] < 1e-4
    assert {r["task"] for r in saved["datagen"]} == {"adding", "copy", "delayed_recall"}
    for row in saved["probe"]:
        assert finite_positive(row["full_over_step"]) and finite_positive(row["in_train_ratio"])
    assert {t["name"] for t in saved["targets"]} >= {"training throughput >= 0.95x the bare fused loop",
                                                      "one probe <= 2x one training step"}
    assert "conf/probe/default.yaml, probe.lyapunov_steps=0;" in saved["markdown"]  # the smoke run says so
    printed = capsys.readouterr().out
    assert "| threads | model | seqlab | bare fused |" in printed and saved["markdown"] in printed
    assert res["markdown"] == saved["markdown"]


@pytest.mark.slow
def test_quick_scaling_and_sweep(performance, tmp_path, capsys):
    # fresh processes for every size and every sweep (the script itself runs in this one)
    out = tmp_path / "quick.json"
    res = performance.main(["--quick", "--parts", "scaling", "sweep", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert res["markdown"] == saved["markdown"] and saved["markdown"] in capsys.readouterr().out
    assert set(saved["sweep"]["process_start"]) == {"import_torch_s", "import_seqlab_s", "first_optimizer_s"}
    assert all(finite_positive(v) for v in saved["sweep"]["process_start"].values())
    runs = saved["scaling"]["runs"]
    assert [r["seq_len"] for r in runs] == saved["sizes"]["scaling_lens"]
    assert all(r["peak_rss_mb"] > 0 and r["step_ms"] > 0 for r in runs)
    assert "memory" in saved["scaling"]["fits"]["lstm"]
    sweep = saved["sweep"]
    assert set(sweep["wall_s"]) | set(sweep["timed_out_s"]) == {
        "parallel (joblib, 2 jobs, 1 thread each)", "basic, one after the other, threads=1",
        "basic, one after the other, torch's default threads"}
    assert all(finite_positive(v) for v in saved["sweep"]["speedup"].values())
    assert "2-job sweep" in saved["markdown"] and "Scaling in T" in saved["markdown"]


@pytest.fixture(scope="module")
def population_sizes():
    path = SCRIPT.parent / "population_sizes.py"
    spec = importlib.util.spec_from_file_location("seqlab_benchmark_population_sizes", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.mark.parametrize("argv, says", [
    (["--model", "bogus"], "argument --model: invalid choice: 'bogus' (choose from 'bnlstm', 'cornn'"),
    (["--model", "bnlstm"], "--model bnlstm: cannot train as a population: BNLSTMLayer: its batch norms keep running"),
    (["--model", "selective"], "--model selective: cannot train as a population: SelectiveLayer: no faster"),
    (["--set", "model.layer.init=bogus"], "--set model.layer.init=bogus: model.layer.init='bogus': must be one of"),
    (["--set", "nokey=3"], "--set nokey=3: Could not override 'nokey'."),
])
def test_population_sizes_refuses_bad_input_in_one_line(population_sizes, argv, says, capsys):
    """benchmarks/population_sizes.py: a cell that does not batch, a bad value or an unknown key ends in one
    line naming it (argparse's exit 2), before anything is built or timed."""
    with pytest.raises(SystemExit) as e:
        population_sizes.main(["--sizes", "small", "--ms", "2", "--repeats", "1", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert ": error: " in last and says in last, last  # (argparse names the program by sys.argv[0])
