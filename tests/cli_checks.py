"""Checks shared by the command-line tests."""


def one_line(r, *words):
    """``r`` (a finished subprocess) was refused with exit 2 and one line on stderr holding ``words``."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
