"""The default run uses one torch thread per process (robust when other processes share the cores);
``threads=null`` leaves torch's own default and ``threads=N`` sets N. benchmarks/threads.py (which
measures the choice) runs end to end on tiny sizes."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from seqlab.__main__ import CONF_DIR
from seqlab.config import setup


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["model.hidden_size=4", "seq_len=3", *overrides])


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("overrides, expected", [((), 1), (("threads=null",), 2), (("threads=3",), 3)])
def test_default_run_uses_one_thread(two_threads, overrides, expected):
    setup(compose_cfg(*overrides))
    assert torch.get_num_threads() == expected


def test_threads_benchmark_quick(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "seqlab_benchmark_threads", Path(__file__).resolve().parents[1] / "benchmarks" / "threads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "threads.json"
    res = module.main(["--quick", "--models", "rnn", "--out", str(out)])
    torch.set_num_threads(1)
    saved = json.loads(out.read_text())
    assert saved["rows"][0]["model"] == "rnn" and res["markdown"] == saved["markdown"]
    for cond in ("alone", "competing"):
        for v in saved["rows"][0]["steps_per_s"][cond].values():
            assert math.isfinite(v) and v > 0


def test_startup_benchmark_reaches_the_first_step_without_plotting_or_wandb(tmp_path):
    """benchmarks/startup.py on the lightest variant: every phase measured, and what the README says is
    not imported before the first step (matplotlib; W&B with logger=none) is not."""
    spec = importlib.util.spec_from_file_location(
        "seqlab_benchmark_startup", Path(__file__).resolve().parents[1] / "benchmarks" / "startup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    res = module.main(["--variants", "probe=none logger=none", "--repeats", "1", "--out", str(tmp_path / "s.json")])
    (run,) = res["runs"]["probe=none logger=none"]
    assert run["wall"]["total"] > 0 and all(run["cpu"][p] >= 0 for p in module.PHASES)
    assert "torch" in run["modules"]["first_step"]
    assert not {"matplotlib", "wandb", "scipy"} & set(run["modules"]["first_step"])
