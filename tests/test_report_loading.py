"""The offline report reads back whatever a crash or a user left in a run directory: damaged or
foreign summary.json / metrics.jsonl / probe.npz / config.yaml are named in the runs table, never a
traceback, and nothing in them is unpickled."""
import json
import os

import numpy as np
import pytest

from seqlab import report
from seqlab.report.runs import DAMAGED, load_run

CONFIG = "seq_len: 10\nseed: {seed}\nchoices:\n  task: adding\n  model: rnn\n"
SUMMARY = {"status": "finished", "final_loss": 0.1, "baseline": 0.1667, "loss_over_baseline": 0.6,
           "solved": False, "solved_step": None}
METRICS = "".join(json.dumps({"step": s, "eval/loss": 0.2, "eval/accuracy": 0.1, "eval/loss_over_baseline": 1.2,
                              "train/loss": 0.3, "train/grad_norm": 1.0}) + "\n" for s in (0, 5, 10))


def make_run(d, seed=0):
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(CONFIG.format(seed=seed))
    (d / "summary.json").write_text(json.dumps(SUMMARY))
    (d / "metrics.jsonl").write_text(METRICS)
    return d


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


DAMAGE = {
    "summary.json corrupt": ("summary.json", lambda p: p.write_text('{"status": "fini'), DAMAGED),
    "summary.json a list": ("summary.json", lambda p: p.write_text("[1, 2]"), DAMAGED),
    "summary.json binary": ("summary.json", lambda p: p.write_bytes(b"\xff\xfe\x00" * 30), DAMAGED),
    "metrics.jsonl binary": ("metrics.jsonl", lambda p: p.write_bytes(b"\xff\xfe\x00\n" * 30), "finished"),
    "metrics.jsonl not objects": ("metrics.jsonl", lambda p: p.write_text('[1]\n"x"\n{"step": "a"}\n'), "finished"),
    "probe.npz garbage": ("probe.npz", lambda p: p.write_bytes(os.urandom(200)), "finished"),
    "probe.npz with a pickled object": ("probe.npz", lambda p: np.savez(open(p, "wb"), x=np.array([Evil()], dtype=object)),
                                        "finished"),
    "config.yaml a python object tag": ("config.yaml", lambda p: p.write_text("!!python/object/apply:os.system ['echo pwned']\n"),
                                        "finished"),
}


@pytest.mark.parametrize("what", DAMAGE)
def test_a_damaged_file_is_named_in_the_report_not_a_traceback(tmp_path, what, capsys):
    name, damage, status = DAMAGE[what]
    make_run(tmp_path / "sweep" / "0", seed=0)
    bad = make_run(tmp_path / "sweep" / "1", seed=1)
    damage(bad / name)
    run = load_run(bad)
    assert run.status == status and any(name in p for p in run.problems)
    assert report.main([str(tmp_path / "sweep")]) == 0
    runs_table = (tmp_path / "sweep" / "report" / "report.md").read_text().split("## Runs")[-1]
    assert f"{name} " in runs_table and "pwned" not in capsys.readouterr().out


def test_an_unwritable_output_folder_is_one_line(tmp_path, capsys):
    make_run(tmp_path / "run")
    (tmp_path / "afile").write_text("x")
    assert report.main([str(tmp_path / "run"), "-o", str(tmp_path / "afile" / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqlab.report: error: -o ") and len(err.strip().splitlines()) == 1
