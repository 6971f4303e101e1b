"""Results as data (seqlab.results): docs/results.md's tables come from committed result files by one
command, and running it changes nothing."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from seqlab import results as R

ROOT = Path(__file__).resolve().parents[1]


def test_the_results_command_changes_nothing_in_the_repository():
    before = {doc: doc.read_text() for doc in R.DOCS}
    assert {d.name for d in before} == {"results.md", "population.md"}
    r = subprocess.run([sys.executable, "-m", "seqlab.results", "--check"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    generated = R.blocks()
    for doc, text in before.items():
        new, changed = R.render(text, generated)
        assert changed == [] and new == text, doc
        assert doc.read_text() == text


def test_population_cells_block_reads_the_newest_file_per_cell_and_size(tmp_path):
    """benchmarks/results/population-sizes-*.json -> a row per cell: the lone run's ms and the per-member speed-up
    at each M; a cell measured twice at one size shows its newer file; a size a cell was not measured at is '-'."""
    out = tmp_path / "benchmarks" / "results"
    out.mkdir(parents=True)

    def sizes_file(name, cell, started, rows):
        data = {"sizes": [f"model={cell}", "seq_len=40"], "started": started,
                "rows": [{"members": m, "step_ms_per_member": ms, "per_member_speedup": x} for m, ms, x in rows]}
        (out / name).write_text(json.dumps(data))

    sizes_file("population-sizes-small-gru.json", "gru", "2026-12-03 08:00:00 UTC", [("lone", 10.0, 1.0), (4, 4.0, 2.5)])
    sizes_file("population-sizes-long.json", "gru", "2026-12-01 08:00:00 UTC", [("lone", 84.0, 1.0), (8, 60.0, 1.4)])
    sizes_file("population-sizes-long-round5.json", "gru", "2026-12-02 08:00:00 UTC", [("lone", 94.0, 1.0), (8, 45.0, 2.08)])
    sizes_file("population-sizes-small-lru.json", "lru", "2026-12-03 09:00:00 UTC", [("lone", 26.6, 1.0), (4, 8.9, 3.0)])
    lines = R.population_cells_block(tmp_path).splitlines()
    assert lines[0] == "| cell | lone ms (small) | M = 4 | lone ms (long) | M = 8 |"
    assert lines[2] == "| gru | 10.0 | 2.50x | 94.0 | 2.08x |"  # the newer long file (round 5), not round 4's
    assert lines[3] == "| lru | 26.6 | 3.00x | - | - |"
    assert "population-sizes-long.json" not in lines[-1] and "`population-sizes-long-round5.json`" in lines[-1]
    assert R.population_cells_block(tmp_path / "none") == "No population-sizes result file in benchmarks/results/."


def test_render_replaces_only_the_marked_blocks_and_names_unknown_ones():
    text = "intro\n<!-- results:a begin -->\nold\n<!-- results:a end -->\nhand-written\n"
    new, changed = R.render(text, {"a": "| x |\n|---|\n| 1 |"})
    assert new == "intro\n<!-- results:a begin -->\n| x |\n|---|\n| 1 |\n<!-- results:a end -->\nhand-written\n"
    assert changed == ["a"] and R.render(new, {"a": "| x |\n|---|\n| 1 |"})[1] == []
    with pytest.raises(ValueError, match="unknown block results:a; blocks: b"):
        R.render(text, {"b": ""})


def rec(seed, status, solved=False, evals=(), steps=1000, steps_run=None, wall=100.0, early=None):
    return {"keys": {"cell": "gru", "task": "adding", "seq_len": 50}, "lr": 1e-3, "seed": seed, "status": status,
            "solved": solved, "examples_to_solve": 40_000 if solved else None, "loss_over_baseline": 0.5,
            "budget_examples": steps * 64, "steps": steps, "steps_run": steps_run or steps, "wall_time_s": wall,
            "evals": [list(e) for e in evals], "eval_every": 100, "early_stop": early, "batch_size": 64}


def test_parts_merge_keeping_the_more_complete_run(tmp_path):
    table = tmp_path / "results" / "long_memory"
    table.mkdir(parents=True)
    (table / "a.json").write_text(json.dumps({"command": "a", "note": "", "records": [rec(0, "preempted"), rec(1, "finished")]}))
    (table / "b.json").write_text(json.dumps({"command": "b", "note": "", "records": [rec(0, "finished", True)]}))
    parts, records = R.load_table("long_memory", tmp_path / "results")
    assert [p["command"] for p in parts] == ["a", "b"]
    assert sorted((r["seed"], r["status"]) for r in records) == [(0, "finished"), (1, "finished")]


def test_the_cost_table_by_hand():
    """A full-budget part: the default rule (rungs 250 -> eval 300, 500; margin 0.05) replayed on the curves.
    Run 0 stays at the baseline (stopped at 300: saves 700 steps); run 1 dips below 0.95 at 300 and is back at
    1.0 at 500 (saves 500) but solved later (a lost verdict); run 2 learns (runs on). A stopped part: a run
    stopped at 300 after 30 s would have taken 100 s."""
    flat = [(0, 1.0), (100, 1.0), (200, 1.0), (300, 1.0), (500, 1.0), (1000, 1.0)]
    late = [(0, 1.0), (300, 0.9), (500, 1.0), (1000, 0.001)]
    good = [(0, 1.0), (300, 0.5), (500, 0.01), (1000, 0.001)]
    full = {"file": "results/long_memory/full.json", "records": [rec(0, "finished", evals=flat),
                                                                  rec(1, "finished", True, late),
                                                                  rec(2, "finished", True, good)]}
    early = {"rungs": [0.25, 0.5], "margin": 0.05}
    live = {"file": "results/long_memory/live.json", "records": [rec(0, "stopped", steps_run=300, wall=30.0, early=early),
                                                                  rec(1, "finished", True, wall=100.0, early=early)]}
    (a, b) = R.cost_rows([full, live])
    assert a == ["full.json", "3", "0", "100%", "5 min", "5 min", "100%",
                 "would stop 2/3, saving 40% of the examples; 1 of them went on to solve (gru), 0 more ended under "
                 "half the baseline"]
    assert b == ["live.json", "2", "1", "65%", "2 min", "3 min", "65%", "(stopping was on)"]


def test_any_other_table_directory_gets_a_grid_block_and_a_detail_block(tmp_path):
    """results/<table>/ beyond long_memory and recipes: a row per cell, a column per task and T, merged over
    its parts; a cell a task's sweep did not run is '-'. By hand: lstm on temporal order solves at 1e-3 in
    both seeds (20k and 40k examples: mean 30k) and at neither seed of 1e-2 (window 1e-3, inside the grid);
    rnn solves nothing there; lstm on mqar solves at 1e-2 in one seed of two (a window at the grid's top)."""
    def r(cell, task, T, lr, seed, solved_at=None):
        return {"keys": {"cell": cell, "task": task, "seq_len": T, "model.hidden_size": "32"}, "lr": lr, "seed": seed,
                "status": "finished" if solved_at else "stopped", "solved": bool(solved_at),
                "examples_to_solve": solved_at, "loss_over_baseline": 0.01 if solved_at else 1.0,
                "budget_examples": 64_000, "steps": 2000, "steps_run": 2000 if solved_at else 500,
                "wall_time_s": 10.0, "evals": [], "eval_every": 100, "early_stop": None, "batch_size": 32}
    table = tmp_path / "results" / "suite"
    table.mkdir(parents=True)
    (table / "to.json").write_text(json.dumps({"command": "python -m seqlab -m +experiment=to", "note": "reduced", "records": [
        r("lstm", "temporal_order", 100, 1e-3, 0, 20_000), r("lstm", "temporal_order", 100, 1e-3, 1, 40_000),
        r("lstm", "temporal_order", 100, 1e-2, 0), r("lstm", "temporal_order", 100, 1e-2, 1),
        *(r("rnn", "temporal_order", 100, lr, s) for lr in (1e-3, 1e-2) for s in (0, 1))]}))
    (table / "mqar.json").write_text(json.dumps({"command": "python -m seqlab -m +experiment=mq", "note": "", "records": [
        r("lstm", "mqar", 64, 1e-3, 0), r("lstm", "mqar", 64, 1e-3, 1),
        r("lstm", "mqar", 64, 1e-2, 0, 32_000), r("lstm", "mqar", 64, 1e-2, 1)]}))
    b = R.blocks(tmp_path)
    assert {"suite", "suite_detail"} <= set(b) and "recipes" in b
    lines = b["suite"].splitlines()
    assert lines[0].startswith("12 runs: learning rates 1e-3, 1e-2 x seeds 0, 1; budget 64k examples per run; H = 32.")
    assert "- `results/suite/mqar.json` (4 runs): `python -m seqlab -m +experiment=mq`" in lines
    assert "- `results/suite/to.json` (8 runs): `python -m seqlab -m +experiment=to`. reduced" in lines
    assert lines[-4:] == ["| cell | mqar T=64 | temporal_order T=100 |", "|---|---|---|",
                          "| rnn | - | none (0/4) |", "| lstm | 1e-2+ (1/2), 32k | 1e-3 (2/2), 30k |"]  # R.CELL_ORDER
    detail = b["suite_detail"]
    assert "| lstm | temporal_order | 100 | 4 | 2/4 |" in detail and "| rnn | temporal_order | 100 | 4 | 0/4 |" in detail
    assert "(4 stopped)" in detail


def test_the_claims_block_by_hand():
    """results/claims/: per claim preset, a row per setting (the key its runs differ in) and lr. By hand: sgd at
    1e-2 (two seeds, gradient ratios 1e-4 and 1e-2: geometric mean 1e-3; loss 1.0 and 0.8: mean 0.9) solves
    nothing; adam at 1e-3 solves in both seeds (window 1e-3, the grid's only lr); clipping's null at 1e-1
    diverges in both seeds (no loss, no ratio logged), 1.0 does not."""
    def r(exp, key, value, lr, seed, status="finished", solved=False, loss=1.0, grad=None, update=None):
        rec = {"keys": {"experiment": exp, "cell": "mlp", "task": "digits", "seq_len": 1, key: value}, "lr": lr,
               "seed": seed, "status": status, "solved": solved, "examples_to_solve": 64_000 if solved else None,
               "loss_over_baseline": loss, "budget_examples": 128_000, "steps": 2000, "steps_run": 2000,
               "wall_time_s": 10.0, "evals": [], "eval_every": 100, "early_stop": None, "batch_size": 64}
        if grad is not None:
            rec["first_over_last"] = {"grad": grad, "update": update}
        return rec
    early = [r("claim_e", "optim", "sgd", 1e-2, 0, grad=1e-4, update=1e-4),
             r("claim_e", "optim", "sgd", 1e-2, 1, loss=0.8, grad=1e-2, update=1e-2),
             r("claim_e", "optim", "adam", 1e-3, 0, solved=True, loss=0.01, grad=1e-3, update=1.0),
             r("claim_e", "optim", "adam", 1e-3, 1, solved=True, loss=0.03, grad=1e-3, update=4.0)]
    clip = [r("claim_c", "grad_clip", "None", 1e-1, s, status="diverged", loss=None) for s in (0, 1)] + \
           [r("claim_c", "grad_clip", "1.0", 1e-1, s, loss=0.5 + s, grad=10.0, update=1.0) for s in (0, 1)]
    clip[0]["steps_run"], clip[1]["steps_run"] = 7, 3
    for rec in early:  # sgd on the baseline throughout; adam learning from the first rung on
        rec["evals"] = [[0, 1.0], [500, 1.0], [1000, 1.0], [2000, 1.0]] if rec["keys"]["optim"] == "sgd" else \
            [[0, 1.0], [500, 0.5], [1000, 0.01], [2000, 0.01]]
    parts = [{"file": "results/claims/e.json", "command": "python -m seqlab -m +experiment=claim_e", "note": "n",
              "records": early},
             {"file": "results/claims/c.json", "command": "python -m seqlab -m +experiment=claim_c", "note": "",
              "records": clip}]
    text = R.claims_block(parts, early + clip)
    lines = text.splitlines()
    assert "- `results/claims/e.json` (4 runs): `python -m seqlab -m +experiment=claim_e`. n" in lines
    assert "| grad_clip | lr | N | solved k/N | diverged | loss / baseline (95% CI) | examples to solve (95% CI) | " \
           "first / last layer: gradient | first / last layer: update ratio |" in lines
    assert "| 1.0 | 1e-1 | 2 | 0/2 | 0/2 | 1 [0, 7.35] | - | 10 | 1 |" in lines  # 1 +- 12.706 * 0.7071 / 1.414
    assert "| None | 1e-1 | 2 | 0/2 | 2/2 (step 3, 7) | - | - | - | - |" in lines
    assert "| adam | 1e-3 | 2 | 2/2 | 0/2 | 0.02 [0, 0.147] | 64k [64k, 64k] | 0.001 | 2 |" in lines
    assert "| sgd | 1e-2 | 2 | 0/2 | 0/2 | 0.9 [0, 2.17] | - | 0.001 | 0.001 |" in lines
    assert "- optim=adam: solves at lr 1e-3 (2/2 seeds), 64k examples [64k, 64k]" in lines
    assert "- optim=sgd: not solved at any of 1 lr x 2 seeds within 128k examples" in lines
    assert "- grad_clip=None: not solved at any of 1 lr x 2 seeds within 128k examples (2 diverged)" in lines
    assert text.index("**claim_c**") < text.index("**claim_e**")
    # a full-budget part gets the default rule replayed on its curves: the two sgd runs stop at the first rung
    # (step 500 of 2000): 2 x 1500 of 4 x 2000 steps saved; the clipping part has no curves: nothing stopped
    assert "- the default stopping rule (rungs 0.25, 0.5 of the budget; margin 0.05) replayed on `e.json`: would " \
           "stop 2/4, saving 38% of the examples; 0 of them went on to solve, 0 more ended under half the baseline" in lines
    assert "replayed on `c.json`: would stop 0/4, saving 0% of the examples;" in text
    assert R.claims_block([], []) == "No result files yet under results/claims/."
