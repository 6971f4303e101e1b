"""The one writer: every byte seqlab writes goes through here.

A run directory may sit on shared scratch space, where someone else can place a symbolic link
(or a hard link) named like a file the lab writes, pointing at a file of yours. So:

* a whole file (``write_text``, ``write_json``, ``save_figure``, ``replace_atomic``) is written into
  a fresh, uniquely named temporary file beside it (``mkstemp``: ``O_CREAT | O_EXCL``, which never
  follows a link) and renamed over the name: a link that was there is replaced, never written
  through, and a reader (or a kill) sees the old file or the new one, never half of one;
* a file kept open (the run lock, W&B's send marks) or appended to (metrics.jsonl) is opened with
  ``O_NOFOLLOW`` and must be a plain file with one name (``open_own``): a link there is refused
  with one line (``LinkedFile``), and nothing is written.

Standard library only (and seqlab.checks), so any module can import it without a cycle.
"""
from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from .checks import ConfigError

_UMASK = os.umask(0)
os.umask(_UMASK)


class LinkedFile(ConfigError):
    """A file the lab would write is a link it did not create (or not a plain file): refused.
    ``str(err)`` is one line naming it."""


def unique_tmp(path: Path) -> Path:
    """A fresh temporary file beside ``path`` (same file system, so ``os.replace`` is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run directory is shared like any other file
    os.close(fd)
    return Path(tmp)


def replace_atomic(path: str | Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` into a unique temporary file, then rename it to ``path`` (replacing a link
    there, never following it); no temporary is left behind when writing fails."""
    path = Path(path)
    tmp = unique_tmp(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    replace_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> None:
    replace_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def jsonable(value: Any) -> Any:
    """Floats that JSON cannot hold (nan, inf) become strings, never silent numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_json(path: str | Path, data: Any, indent: int | None = 2, sort_keys: bool = True, default=None) -> None:
    text = json.dumps(jsonable(data), indent=indent, sort_keys=sort_keys, default=default) + "\n"
    write_text(path, text)


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """``fig.savefig`` into ``path`` atomically (the format from ``path``'s suffix)."""
    path = Path(path)
    fmt = kwargs.pop("format", None) or path.suffix.lstrip(".") or "png"
    replace_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))
    return path


def open_own(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a link: ``path`` is created, or must already be a plain file with
    a single name (a hard link to someone's file is refused too). Raises ``LinkedFile`` otherwise."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as e:
        if path.is_symlink():
            raise LinkedFile(f"{path} is a symbolic link (to {os.readlink(path)}) that seqlab did not "
                                      f"create; refused, nothing was written through it: remove the link") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a plain file" if not stat.S_ISREG(st.st_mode) else f"a file with {st.st_nlink} names (a hard link)"
        raise LinkedFile(f"{path} is {what}, which seqlab did not create; refused, nothing was written to it: "
                            f"remove it")
    return fd


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to ``path`` (created if missing), never through a link."""
    fd = open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
