"""docs/theory.md's tables are what their commands print from the committed result files (no diff),
and the commands that make those files read sweeps and refuse bad paths in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from seqlab import lengths
from seqlab.theory import claims_table, phase

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "theory.md").read_text()
RESULTS = ROOT / "docs" / "results"


def test_the_claims_table_in_the_doc_is_the_commands_output():
    rows = json.loads((RESULTS / "theory_claims.json").read_text())["rows"]
    assert claims_table.table(rows) in DOC


def test_the_notebooks_theory_column_and_the_readmes_disagreements_are_the_commands_output(capsys):
    rows = json.loads((RESULTS / "theory_claims.json").read_text())["rows"]
    notebook = (ROOT / "docs" / "notebook.md").read_text().splitlines()
    cells = claims_table.theory_column(rows)
    assert set(cells) == {n for n, c in claims_table.claims_mod.CLAIMS.items() if c.kind == "init"}
    for claim, cell in cells.items():  # in the claim's own row of the table
        row = [line for line in notebook if line.startswith("| ") and f"(`{claim}`) |" in line]
        assert len(row) == 1 and f" | {cell} | " in row[0], claim
    sentence = claims_table.disagreements(rows)
    assert "\n" + sentence + "\n" in (ROOT / "README.md").read_text()
    assert "within 2% in 49 of the 60" in sentence and "init time tanh/xavier +4.6%" in sentence
    assert claims_table.main(["--table", str(RESULTS / "theory_claims.json"), "--column"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == sentence and f"decay: {cells['decay']}" in printed


def test_the_phase_boundary_in_the_doc_is_the_commands_output(tmp_path, capsys):
    assert phase.main(["plot", str(RESULTS / "phase_tanh_digits.json"), "--out", str(tmp_path / "p.png")]) == 0
    printed = capsys.readouterr().out.splitlines()[1:]  # after the figure's path
    assert "\n".join(printed) in DOC and (tmp_path / "p.png").stat().st_size > 0


def test_the_parity_table_in_the_doc_is_the_commands_output():
    assert lengths.table(json.loads((RESULTS / "parity_grazzi2025.json").read_text())) in DOC


def _fake_run(root: Path, name: str, summary: dict, config: dict) -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


def test_collectors_read_run_directories(tmp_path):
    layer = {"_target_": "seqlab.models.SelectiveLayer", "eigenvalues": "signed", "activation": "tanh",
             "init": "kaiming", "gain": 0.5}
    config = {"model": {"hidden_size": 32, "num_layers": 4, "layer": layer}, "optim": {"lr": 0.003}, "seed": 1,
              "steps": 100}
    _fake_run(tmp_path, "0", {"status": "finished", "seq_len": 40, "final_accuracy": 1.0,
                              "length_eval": {"128": {"accuracy": 0.75}},
                              "theory": {"depth": {"measured_gain": 0.6}}}, config)
    row = lengths.collect([tmp_path])["rows"][0]
    assert row["cell"] == "Selective" and row["eigenvalues"] == "signed" and row["accuracy"] == {"40": 1.0, "128": 0.75}
    assert "| Selective | signed | 0.003 | 1 | 1/1, 1.000 | 0/1, 0.750 | 0/1 | n/a |" in lengths.table({"rows": [row]})
    out = tmp_path / "rows.json"  # --add keeps another sweep's rows; a run collected again replaces its row
    other = {**row, "cell": "MinGRU", "seed": 0}
    out.write_text(json.dumps({"rows": [other, {**row, "accuracy": {"40": 0.5}}]}))
    assert lengths.main(["collect", str(tmp_path), "--out", str(out), "--add"]) == 0
    assert json.loads(out.read_text())["rows"] == [other, row]
    _fake_run(tmp_path / "var", "0", {"status": "finished", "seq_len": 40, "final_accuracy": 1.0},
              {**config, "task": {"train_min_len": 3}})
    assert lengths.collect([tmp_path / "var"])["rows"][0]["cell"] == "Selective, trained on 3..40"  # its own row
    prow = phase.collect([tmp_path])["rows"][0]
    assert prow["sigma_w2"] == pytest.approx(0.5) and prow["depth"] == 4 and prow["measured_depth_gain"] == 0.6


@pytest.mark.parametrize("main, argv", [
    (phase.main, ["collect", "/no/such/sweep", "--out", "x.json"]),
    (phase.main, ["plot", "/no/such.json", "--out", "x.png"]),
    (lengths.main, ["collect", "/no/such/sweep", "--out", "x.json"]),
    (lengths.main, ["table", "/no/such.json"]),
    (claims_table.main, ["--table", "/no/such.json"]),
    (claims_table.main, ["decay_not", "--table", "x"]),
])
def test_bad_paths_and_names_are_one_line(main, argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqlab: error: ")
