"""The README's "From Python, without Hydra" example runs as printed there, and shows what it says:
with forget-gate bias 1 the LSTM's gradient through time decays more slowly than a tanh RNN's."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_without_hydra(capsys):
    text = README.read_text()
    section = text[text.index("## From Python, without Hydra"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    assert "hydra" not in code.lower() and "omegaconf" not in code.lower()
    namespace: dict = {}
    exec(compile(code, str(README) + ":python-example", "exec"), namespace)
    gains = namespace["gains"]
    assert 0 < gains["rnn"] < gains["lstm"] < 1  # both vanish; the forget bias slows the LSTM's decay
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "(64, 100, 2) baseline 0.1667, lag 99"
    assert [line.split(":")[0] for line in out[2:]] == ["rnn", "lstm"]
    # and what it prints is what the README says it prints (numbers to 1%: another CPU may round differently)
    printed = re.search(r"prints \(CPU, torch [^)]*\)\n\n```\n(.*?)```", section, re.S)[1].splitlines()
    assert len(printed) == len(out)
    number = r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?"
    for want, got in zip(printed, out):
        assert re.sub(number, "#", want) == re.sub(number, "#", got), (want, got)
        for a, b in zip(re.findall(number, want), re.findall(number, got)):
            assert abs(float(a) - float(b)) <= 0.01 * abs(float(a)) + 1e-12, (want, got)
