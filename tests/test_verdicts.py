"""Verdicts over a learning-rate grid x seeds (seqlab.report.verdicts), against a hand-computed example:
seeds collapse, the 95% intervals are Student's t by hand, the window is right at the grid's edges."""
import json
import math

import pytest

from seqlab.report.verdicts import aggregate, check_keys, fmt_lr, mean_ci, t975

BUDGET = 64_000


def rec(cell, lr, seed, solved=False, examples=None, ratio=1.0, status="finished"):
    return {"keys": {"cell": cell, "task": "adding", "seq_len": 50}, "lr": lr, "seed": seed, "status": status,
            "solved": solved, "examples_to_solve": examples, "loss_over_baseline": ratio,
            "budget_examples": BUDGET}


# gru: 1e-4 hopeless (two stopped), 1e-3 two of three seeds, 1e-2 all three: the window touches the top edge
GRU = [rec("gru", 1e-4, 0, ratio=1.0, status="stopped"), rec("gru", 1e-4, 1, ratio=0.99, status="stopped"),
       rec("gru", 1e-4, 2, ratio=0.98),
       rec("gru", 1e-3, 0, True, 40_000, 0.02), rec("gru", 1e-3, 1, True, 60_000, 0.04), rec("gru", 1e-3, 2, ratio=0.9),
       rec("gru", 1e-2, 0, True, 20_000, 0.01), rec("gru", 1e-2, 1, True, 30_000, 0.01),
       rec("gru", 1e-2, 2, True, 40_000, 0.04)]
# lstm: the window at the bottom edge; the largest lr diverges
LSTM = [rec("lstm", 1e-4, 0, True, 50_000, 0.1), rec("lstm", 1e-4, 1, True, 60_000, 0.1),
        rec("lstm", 1e-3, 0, True, 30_000, 0.1), rec("lstm", 1e-3, 1, ratio=1.0),
        rec("lstm", 1e-2, 0, status="diverged", ratio=None), rec("lstm", 1e-2, 1, status="diverged", ratio=None)]
# rnn: solves at both ends and not between; one run failed (not an outcome: missing)
RNN = [rec("rnn", 1e-4, 0, True, 64_000, 0.2), rec("rnn", 1e-4, 1, ratio=1.0),
       rec("rnn", 1e-3, 0, ratio=1.0), rec("rnn", 1e-3, 1, ratio=1.0),
       rec("rnn", 1e-2, 0, True, 10_000, 0.1), rec("rnn", 1e-2, 1, True, 12_000, 0.1),
       rec("rnn", 1e-2, 2, status="failed", ratio=None)]
# cornn: nothing; minlstm: one lucky seed of three, at no lr by half the seeds
CORNN = [rec("cornn", lr, s, ratio=1.0, status="stopped" if lr < 1e-2 else "finished")
         for lr in (1e-4, 1e-3, 1e-2) for s in (0, 1)]
MINLSTM = [rec("minlstm", lr, s, solved=(lr == 1e-2 and s == 2), examples=50_000 if (lr == 1e-2 and s == 2) else None)
           for lr in (1e-4, 1e-3, 1e-2) for s in (0, 1, 2)]
ROWS = {r["keys"]["cell"]: r for r in aggregate(GRU + LSTM + RNN + CORNN + MINLSTM, ["cell", "task", "seq_len"])}


def test_t_quantiles_and_the_interval_by_hand():
    assert t975(1) == 12.706 and t975(4) == 2.776 and abs(t975(60) - 2.000) < 2e-3 and abs(t975(1000) - 1.962) < 1e-3
    ci = mean_ci([1, 2, 3, 4])  # s = 1.2910, t(3) = 3.182: 2.5 -+ 3.182 * 1.2910 / 2
    assert ci["n"] == 4 and ci["mean"] == 2.5 and ci["lo"] == pytest.approx(0.4460, abs=1e-4)
    assert ci["hi"] == pytest.approx(4.5540, abs=1e-4)
    one = mean_ci([7.0, None, math.nan])
    assert one["n"] == 1 and one["mean"] == 7.0 and math.isnan(one["lo"])


def test_seeds_collapse_into_grid_points_with_their_intervals():
    gru = ROWS["gru"]
    assert (gru["n"], gru["k"], gru["stopped"], gru["seeds"]) == (9, 5, 2, [0, 1, 2])
    p4, p3, p2 = gru["points"]
    assert [(p["lr"], p["n"], p["k"], p["stopped"]) for p in gru["points"]] == [(1e-4, 3, 0, 2), (1e-3, 3, 2, 0),
                                                                                (1e-2, 3, 3, 0)]
    # lr 1e-2, loss / baseline 0.01, 0.01, 0.04: mean 0.02, s = sqrt(0.0003) = 0.017321, t(2) = 4.303
    h = 4.303 * math.sqrt(0.0003) / math.sqrt(3)
    assert p2["loss_over_baseline"]["mean"] == pytest.approx(0.02)
    assert p2["loss_over_baseline"]["hi"] == pytest.approx(0.02 + h)
    assert 0.02 - h < 0 and p2["loss_over_baseline"]["lo"] == 0.0  # a ratio of losses is never negative: clipped
    assert mean_ci([1, 2], floor=0.0)["lo"] == 0.0 and mean_ci([1, 2])["lo"] == pytest.approx(1.5 - 12.706 * 0.5)
    # examples at 1e-3 over the two seeds that solved: 50k -+ 12.706 * 14142 / sqrt 2
    assert p3["examples"]["n"] == 2 and p3["examples"]["mean"] == 50_000
    assert p3["examples"]["hi"] == pytest.approx(50_000 + 12.706 * 10_000)
    assert p4["examples"]["n"] == 0


def test_best_lr_window_and_verdict_at_the_top_edge():
    gru = ROWS["gru"]
    assert gru["best"]["lr"] == 1e-2  # 3/3 beats 2/3
    w = gru["window"]
    assert (w["lo"], w["hi"], w["open_below"], w["open_above"], w["contiguous"], w["k"], w["n"]) == \
        (1e-3, 1e-2, False, True, True, 5, 6)
    # examples inside the window: 40, 60, 20, 30, 40k: mean 38k, s = 14832, t(4) = 2.776 -> [19.6k, 56.4k]
    ex = gru["window_examples"]
    assert ex["mean"] == 38_000 and ex["lo"] == pytest.approx(38_000 - 2.776 * math.sqrt(220e6 / 5), rel=1e-6)
    assert gru["verdict"] == "solves at lr 1e-3..1e-2 (grid edge: may extend above) (5/6 seeds), 38k examples [20k, 56k]"


def test_window_at_the_bottom_edge_and_diverged_runs_count_as_not_solved():
    lstm = ROWS["lstm"]
    assert (lstm["n"], lstm["k"], lstm["diverged"]) == (6, 3, 2)
    assert lstm["window"]["lrs"] == [1e-4, 1e-3] and lstm["window"]["open_below"] and not lstm["window"]["open_above"]
    assert lstm["best"]["lr"] == 1e-4  # 2/2 beats 1/2
    assert lstm["points"][2]["loss_over_baseline"]["n"] == 0  # a diverged run has no loss to average
    assert lstm["verdict"].startswith("solves at lr 1e-4..1e-3 (grid edge: may extend below) (3/4 seeds), 47k examples [")


def test_a_window_with_a_hole_lists_its_points_and_a_failed_run_is_missing():
    rnn = ROWS["rnn"]
    assert (rnn["n"], rnn["k"], rnn["missing"]) == (6, 3, 1)
    assert rnn["window"]["lrs"] == [1e-4, 1e-2] and not rnn["window"]["contiguous"]
    assert rnn["best"]["lr"] == 1e-2  # 2/2 at 1e-2 beats 1/2 at 1e-4
    assert rnn["verdict"].startswith("solves at lr 1e-4, 1e-2 (grid edge: may extend below and above) (3/4 seeds)")


def test_not_solved_says_what_it_held_over():
    assert ROWS["cornn"]["best"] is None and ROWS["cornn"]["window"] is None
    assert ROWS["cornn"]["verdict"] == "not solved at any of 3 lr x 2 seeds within 64k examples (4 stopped)"
    assert ROWS["minlstm"]["verdict"] == ("solved by 1 of 9 runs (lr 1e-2: 1/3) but at no lr by half its seeds, "
                                         "within 64k examples")


def test_group_by_any_keys():
    rows = aggregate(GRU + LSTM, ["task"])  # the cells pooled: one setting
    assert len(rows) == 1 and rows[0]["n"] == 15 and rows[0]["k"] == 8
    assert [(p["n"], p["k"]) for p in rows[0]["points"]] == [(5, 2), (5, 3), (5, 3)]
    with pytest.raises(ValueError, match="--by width: not a key of these runs; their keys: cell, seq_len, task"):
        check_keys(GRU, ["width"])
    assert fmt_lr(0.00316) == "3.16e-3" and fmt_lr(0.02) == "2e-2"


@pytest.mark.slow
def test_the_report_shows_the_verdicts_in_all_three_formats(tmp_path):
    """python -m seqlab.report on real run directories of a grid: the section in report.md, .html and .json."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "WANDB_SILENT": "true"}
    args = ["-m", "+protocol=lr_seeds", "protocol.n_lr=2", "protocol.seeds=2", "early_stop=none", "steps=4",
            "eval_every=2", "eval_size=16", "batch_size=8", "log_every=2", "seq_len=10", "model.hidden_size=8",
            "probe=none", "logger=none", "progress=false"]
    r = subprocess.run([sys.executable, "-m", "seqlab", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    rep = subprocess.run([sys.executable, "-m", "seqlab.report", str(sweep), "--by", "cell,task,seq_len"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    out = sweep / "report"
    verdict = "not solved at any of 2 lr x 2 seeds within 0.032k examples"
    data = json.loads((out / "report.json").read_text())
    (row,) = data["verdicts"]["settings"]
    assert (row["n"], row["k"], row["verdict"]) == (4, 0, verdict) and [p["lr"] for p in row["points"]] == [1e-4, 1e-2]
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "Verdicts over learning rates and seeds" in text and verdict in text and "1e-4" in text
    assert (out / "solved_vs_lr.png").stat().st_size > 0
    bad = subprocess.run([sys.executable, "-m", "seqlab.report", str(sweep), "--by", "width"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("seqlab.report: error: --by width: not a key of these runs")


def test_the_verdict_table_goes_to_wandb_as_a_table(tmp_path, monkeypatch):
    """--wandb: the verdict and per-lr tables as W&B Tables of an offline run (read back from its files)."""
    from seqlab.report.verdicts import log_wandb_table

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    by = ["cell", "task", "seq_len"]
    rows = aggregate(GRU + CORNN, by)
    assert log_wandb_table(rows, by, tmp_path, "grid") is not None
    (verdicts,) = tmp_path.glob("wandb/offline-run-*/files/media/table/verdicts_*.table.json")
    table = json.loads(verdicts.read_text())
    assert table["columns"][:5] == ["cell", "task", "seq_len", "N", "solved k/N"]
    assert [row[0] for row in table["data"]] == ["cornn", "gru"]
    assert table["data"][1][-1] == ROWS["gru"]["verdict"]
    (grid,) = tmp_path.glob("wandb/offline-run-*/files/media/table/grid_*.table.json")
    assert len(json.loads(grid.read_text())["data"]) == 6  # 2 settings x 3 lrs
