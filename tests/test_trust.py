"""A shared run directory is safe to open (issue 22).

* No config read from disk reaches ``instantiate`` with a callable outside the lab's own: the three
  payloads that ran code or emptied a file through the probe CLI (``torch.load`` with
  ``weights_only: False``, ``numpy.load`` with ``allow_pickle: True``, ``builtins.open`` with
  ``mode: w``) and ``os.system``, through every entry point that reads a config from disk: the probe
  CLI (a checkpoint's stored config), resume (a checkpoint's stored config), the report and the
  claims (a run directory's config.yaml). Nothing runs; one line; exit 2.
* ``--experimental-rerun`` (Hydra's, which unpickles a file) is refused in one line.
* No file the lab writes follows a link it did not create: each is linked to an outside file, and
  the outside file is unchanged afterwards.
"""
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqlab import checkpoint
from seqlab.__main__ import CONF_DIR
from seqlab.checks import ConfigError
from seqlab.config import build_model, build_task
from seqlab.files import LinkedFile, append_text, open_own, save_figure, write_json, write_text
from seqlab.probe.from_checkpoint import stored_config
from seqlab.rundir import RunDirError, RunLock
from seqlab.targets import check_targets, lab_targets

from cli_checks import concurrently, one_line

TINY = ["task=adding", "seq_len=5", "model.hidden_size=4", "batch_size=4", "eval_size=8", "log_every=1",
        "eval_every=1", "checkpoint_every=1", "probe.every=1", "probe.batch_size=2", "probe.lyapunov_k=1",
        "probe.lyapunov_steps=0", "probe.plots=false", "progress=false", "logger=none", "threads=1"]
PAYLOADS = ("torch.load", "numpy.load", "builtins.open", "os.system")


class _Shell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture
def bait(tmp_path):
    """The payloads of the issue, a marker file that appears if any code ran, and a victim file that
    ``builtins.open(mode='w')`` would empty."""
    marker, victim = tmp_path / "PWNED", tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    pkl = tmp_path / "payload.pkl"
    pkl.write_bytes(pickle.dumps(_Shell(f"touch {marker}")))
    nodes = {"torch.load": {"_target_": "torch.load", "f": str(pkl), "weights_only": False},
             "numpy.load": {"_target_": "numpy.load", "file": str(pkl), "allow_pickle": True},
             "builtins.open": {"_target_": "builtins.open", "file": str(victim), "mode": "w"},
             "os.system": {"_target_": "os.system", "command": f"touch {marker}"}}

    def intact():
        return not marker.exists() and victim.read_text() == "keep me\n"

    return nodes, intact


def tiny_config(*overrides) -> tuple[dict, dict]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*TINY, *overrides])
    model = build_model(cfg, build_task(cfg))
    config = OmegaConf.to_container(cfg, resolve=True)
    config["choices"] = {"task": "adding", "model": "rnn"}
    return config, model.state_dict()


def evil_config(nodes: dict, first: str, deep: bool = False) -> dict:
    """A real config with the payloads in its groups (``first`` where it is met first); ``deep``: the
    first one inside the model's layer instead."""
    config, _ = tiny_config()
    order = [first, *[p for p in PAYLOADS if p != first]]
    for group, payload in zip(("task", "optim", "probe", "floss"), order):
        config[group] = nodes[payload]
    if deep:
        config["task"] = tiny_config()[0]["task"]
        config["model"]["layer"] = nodes[first]
    return config


def cli(module, cwd, *args):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_lab_targets_are_those_conf_names():
    targets = lab_targets()
    assert {"seqlab.tasks.adding.Adding", "seqlab.models.SequenceModel", "seqlab.models.LSTMLayer",
            "torch.optim.Adam", "seqlab.probe.ProbeSettings", "seqlab.tracking.WandbTracker",
            "seqlab.sweep.SweepMonitor"} <= targets
    assert not {"torch.load", "numpy.load", "builtins.open", "os.system", "builtins.eval"} & targets
    check_targets({"task": {"_target_": "seqlab.tasks.copy.Copy"}, "model": {"layer": {"_target_": "seqlab.models.GRULayer"}}})
    with pytest.raises(ConfigError, match=r"model\.layer\._target_='builtins\.eval'"):
        check_targets({"model": {"layer": {"_target_": "builtins.eval"}}})
    with pytest.raises(ConfigError, match=r"probe\.lags\[0\]\._target_"):  # inside a list too
        check_targets({"probe": {"lags": [{"_target_": "os.system"}]}})


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("deep", [False, True], ids=["group", "nested"])
def test_each_payload_in_a_stored_config_is_refused_before_anything_is_built(tmp_path, bait, payload, deep):
    """The two readers of a checkpoint's config (the probe's and resume's), in-process: one line naming
    the payload, nothing run, the victim file intact."""
    nodes, intact = bait
    config, state = tiny_config()
    config = evil_config(nodes, payload, deep)
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"model": state, "config": config}, ckpt)
    with pytest.raises(ConfigError, match=payload.replace(".", r"\.")) as e:
        stored_config(str(ckpt))
    assert "\n" not in str(e.value) and intact()
    torch.save({"format_version": checkpoint.FORMAT_VERSION, "config": config, "model": state, "optimizer": {},
                "data_rng": torch.zeros(1), "rng": {}, "loop": {}}, ckpt)
    with pytest.raises(RunDirError, match=payload.replace(".", r"\.")):
        checkpoint.load(ckpt)
    assert intact()


def test_the_probe_cli_runs_no_payload_of_a_checkpoint(tmp_path, bait):
    nodes, intact = bait
    for first in ("torch.load", "builtins.open"):
        config, state = tiny_config()
        torch.save({"model": state, "config": evil_config(nodes, first)}, tmp_path / "ckpt.pt")
        r = cli("seqlab.probe", tmp_path, "checkpoint=ckpt.pt", "hydra.run.dir=p", "logger=none")
        one_line(r, "checkpoint='ckpt.pt'", f"task._target_='{first}'", "(and 3 more)", "nothing in it was run")
        assert intact() and not (tmp_path / "p").exists()


def test_resume_runs_no_payload_of_a_checkpoint(tmp_path, bait):
    nodes, intact = bait
    config, state = tiny_config()
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format_version": checkpoint.FORMAT_VERSION, "config": evil_config(nodes, "numpy.load"),
                "model": state, "optimizer": {}, "data_rng": torch.zeros(1), "rng": {}, "loop": {}},
               run / "checkpoint.pt")
    r = cli("seqlab", tmp_path, "resume=run", *TINY)
    one_line(r, "run/checkpoint.pt: its stored config", "task._target_='numpy.load'")
    assert intact() and sorted(p.name for p in run.iterdir()) == [".seqlab.lock", "checkpoint.pt"]


def _run_dir_with(path: Path, config: dict) -> None:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    (path / "summary.json").write_text(json.dumps({"status": "finished", "final_loss": 0.1, "steps": 1}))


def test_the_report_and_the_claims_refuse_a_run_directory_naming_a_foreign_callable(tmp_path, bait):
    nodes, intact = bait
    _run_dir_with(tmp_path / "sweep" / "0", evil_config(nodes, "os.system"))
    _run_dir_with(tmp_path / "claims" / "claim_decay_depth" / "0", evil_config(nodes, "builtins.open"))
    report, claims = concurrently(lambda: cli("seqlab.report", tmp_path, "sweep", "-o", "rep"),
                                  lambda: cli("seqlab.claims", tmp_path, "decay", "--root", "claims", "--out", "figs"))
    one_line(report, "sweep/0/config.yaml", "task._target_='os.system'")
    one_line(claims, "claim_decay_depth/0/config.yaml", "task._target_='builtins.open'")
    assert intact() and not (tmp_path / "rep").exists() and not (tmp_path / "figs").exists()


def test_the_command_line_cannot_name_a_foreign_callable_either(tmp_path, bait):
    nodes, intact = bait
    r = cli("seqlab", tmp_path, *TINY, "task._target_=os.system", f"+task.command=touch {tmp_path / 'PWNED'}",
            "hydra.run.dir=r")
    one_line(r, "task._target_='os.system'")
    assert intact() and not (tmp_path / "r").exists()


def test_experimental_rerun_is_refused_in_one_line(tmp_path, bait):
    _, intact = bait
    files = ("payload.pkl", "missing.pkl")
    for f, r in zip(files, concurrently(*[lambda f=f: cli("seqlab", tmp_path, "--experimental-rerun", f) for f in files])):
        one_line(r, f"--experimental-rerun {f}", "unpickles")
    assert intact()


# --- one writer: never through a link it did not create ----------------------------------------------

def _outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside.txt"
    victim.write_text("not yours\n")
    return victim


@pytest.mark.parametrize("writer", ["text", "json", "figure", "append", "lock"])
def test_the_writer_replaces_or_refuses_a_link_and_never_writes_through_it(tmp_path, writer):
    victim = _outside(tmp_path)
    link = tmp_path / "run" / "file.png"
    link.parent.mkdir()
    link.symlink_to(victim)
    if writer == "text":
        write_text(link, "mine")
    elif writer == "json":
        write_json(link, {"a": 1})
    elif writer == "figure":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure()
        save_figure(fig, link)
        plt.close(fig)
        assert link.read_bytes()[:4] == b"\x89PNG"
    elif writer == "append":
        with pytest.raises(LinkedFile, match="symbolic link"):
            append_text(link, "row\n")
    else:
        link.rename(link.parent / ".seqlab.lock")
        with pytest.raises(ConfigError, match=r"\.seqlab\.lock is a symbolic link"):
            RunLock(link.parent).acquire()
    assert victim.read_text() == "not yours\n"
    if writer in ("text", "json", "figure"):
        assert not link.is_symlink()  # replaced by the lab's own file
    hard = tmp_path / "run" / "hard"
    os.link(victim, hard)
    with pytest.raises(LinkedFile, match="hard link"):
        open_own(hard, os.O_RDWR | os.O_CREAT)
    assert victim.read_text() == "not yours\n"
    assert not list(tmp_path.glob("run/.*.tmp"))


def test_a_run_and_the_probe_cli_write_nothing_through_links_placed_in_their_directory(tmp_path):
    """Every file a run writes, linked to an outside file beforehand (the lock refuses, one line);
    without the lock link the run replaces each link with its own file and the outside stays as it was."""
    names = ["config.yaml", "metrics.jsonl", "summary.json", "probe.npz", "probe_curves.png", "probe_heatmap.png",
             ".hydra"]  # (a linked checkpoint.pt is read, and refused as not a checkpoint: test_lifecycle)
    victim = _outside(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".seqlab.lock").symlink_to(victim)
    r = cli("seqlab", tmp_path, *TINY, "steps=2", "probe.plots=true", "hydra.run.dir=run")
    one_line(r, ".seqlab.lock is a symbolic link")
    assert sorted(p.name for p in run.iterdir()) == [".seqlab.lock"]
    (run / ".seqlab.lock").unlink()
    for n in names:
        (run / n).symlink_to(victim)
    r = cli("seqlab", tmp_path, *TINY, "steps=2", "probe.plots=true", "hydra.run.dir=run")
    one_line(r, ".hydra is a symbolic link")
    (run / ".hydra").unlink()
    r = cli("seqlab", tmp_path, *TINY, "steps=2", "probe.plots=true", "hydra.run.dir=run")
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "not yours\n"
    assert not any((run / n).is_symlink() for n in names)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_the_report_writes_nothing_through_links_under_its_output_folder(tmp_path):
    victim = _outside(tmp_path)
    config, _ = tiny_config()
    _run_dir_with(tmp_path / "sweep" / "0", config)
    out = tmp_path / "rep"
    out.mkdir()
    names = ("report.md", "report.html", "report.json")
    for n in names:
        (out / n).symlink_to(victim)
    r = cli("seqlab.report", tmp_path, "sweep", "-o", "rep")
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "not yours\n" and not any((out / n).is_symlink() for n in names)


def test_wandb_send_marks_are_never_written_through_a_link(tmp_path):
    from seqlab.tracking import SeqlabWarning, WandbTracker

    victim = _outside(tmp_path)
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "seqlab_logged").symlink_to(victim)
    tracker = WandbTracker.__new__(WandbTracker)
    tracker.step, tracker._skip_until, tracker._last_train_step = 0, None, None
    with pytest.warns(SeqlabWarning, match="symbolic link"):
        tracker._open_marks(tmp_path / "wandb" / "seqlab_logged", "abc")
    assert tracker._mark_fd is None and victim.read_text() == "not yours\n"


# Every write in the package goes through seqlab.files; the one exception writes the temporary file that
# files.replace_atomic hands it (probe.npz), never the final name.
_DIRECT_WRITE = re.compile(r"(?<!files)\.(write_text|write_bytes|savefig)\(|\bopen\([^)]*[\"'][wax]b?\+?[\"']")
_WRITES_INSIDE_REPLACE_ATOMIC = {"seqlab/probe/history.py": 1}


def test_every_file_the_package_writes_goes_through_the_one_writer():
    root = Path(__file__).resolve().parents[1]
    found: dict[str, list[str]] = {}
    for path in sorted([*root.joinpath("seqlab").rglob("*.py"), *root.joinpath("hydra_plugins").rglob("*.py")]):
        rel = path.relative_to(root).as_posix()
        if rel == "seqlab/files.py":
            continue
        hits = [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
                if _DIRECT_WRITE.search(line)]
        if hits:
            found[rel] = hits
    allowed = {rel: hits for rel, hits in found.items() if len(hits) == _WRITES_INSIDE_REPLACE_ATOMIC.get(rel)}
    assert found == allowed, "\n".join(h for rel, hits in found.items() if rel not in allowed for h in hits)


def test_report_figures_replace_a_link_instead_of_writing_through_it(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqlab.report.figures import _save

    victim = _outside(tmp_path)
    link = tmp_path / "decay_curves.png"
    link.symlink_to(victim)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0.5])
    _save(plt, fig, link, "t", "gradient through time")
    assert victim.read_text() == "not yours\n" and not link.is_symlink() and link.read_bytes()[:4] == b"\x89PNG"
