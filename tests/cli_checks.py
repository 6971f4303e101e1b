"""Checks shared by the command-line tests."""


def one_line(r, *words):
    """``r`` (a finished subprocess) was refused with exit 2 and one line on stderr holding ``words``."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def concurrently(*calls):
    """Run independent ``calls`` (each starts a process and waits for it: nothing shared, no common
    directory or lock) as many at a time as there are cores; their results, in order."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 1)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]
