"""One-line configuration errors: every message names the key, the value and the rule."""
from __future__ import annotations

import math
from typing import Iterable


class ConfigError(ValueError):
    """A bad setting. ``str(err)`` is one line: ``key=value: what is allowed``."""


def check(ok: bool, key: str, value, rule: str) -> None:
    """Raise ``ConfigError`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r}: {rule}")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(key: str, value, minimum: int) -> int:
    """``value`` must be an integer (not a bool) >= ``minimum``; returns it."""
    check(is_int(value) and value >= minimum, key, value, f"must be an integer >= {minimum}")
    return value


def check_positive(key: str, value) -> float:
    check(is_number(value) and value > 0, key, value, "must be a number > 0")
    return value


def check_choice(key: str, value, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    check(value in allowed, key, value, f"must be one of {', '.join(map(str, allowed))}")
    return value


# --- Rules: what a knob accepts, stated once (the table is seqlab.config.KNOBS) --------------

INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1  # numpy's (and Optuna's sampler) seeds are 32-bit; torch takes them too


def _fmt(x: float) -> str:
    """Bounds as a reader writes them: 10^12, 2^32 - 1, 6.28319."""
    if x == INT64_MAX:
        return "2^63 - 1"
    if x == SEED_MAX:
        return "2^32 - 1"
    if isinstance(x, int) and x >= 10**6 and str(x).rstrip("0") == "1":
        return f"10^{len(str(x)) - 1}"
    return f"{x:g}" if isinstance(x, float) else str(x)


class Rule:
    """What one knob accepts. ``check(key, value)`` raises a one-line ``ConfigError``."""

    null: bool = False

    def ok(self, value) -> bool:
        raise NotImplementedError

    def describe(self, value=None) -> str:
        raise NotImplementedError

    def check(self, key: str, value) -> None:
        if value is None and self.null:
            return
        check(self.ok(value), key, value, "must be " + self.describe(value) + (" or null" if self.null else ""))


class Num(Rule):
    """A finite number in [lo, hi] (``open`` = "lo", "hi" or "both" excludes ends); ``integer``: no floats.
    ``also``: single extra values with a meaning of their own (e.g. n_jobs=-1)."""

    def __init__(self, lo=None, hi=None, *, integer=False, open="", null=False, also=(), note=""):
        self.lo, self.hi, self.integer, self.open, self.null = lo, hi, integer, open, null
        self.also, self.note = also, note
        if integer and hi is None:
            self.hi = INT64_MAX  # everything that reaches torch or numpy as an int64

    def ok(self, value) -> bool:
        if not (is_int(value) if self.integer else is_number(value)):
            return False
        if value in self.also:
            return True
        if not math.isfinite(value):
            return False
        lo_ok = self.lo is None or (value > self.lo if self.open in ("lo", "both") else value >= self.lo)
        hi_ok = self.hi is None or (value < self.hi if self.open in ("hi", "both") else value <= self.hi)
        return lo_ok and hi_ok

    def describe(self, value=None) -> str:
        kind = "an integer" if self.integer else "a finite number"
        lo, hi = self.lo, self.hi
        if hi == INT64_MAX and not (is_number(value) and value > hi):
            hi = None  # the int64 bound only needs saying to a value beyond it
        if lo is not None and hi is not None:
            left = "(" if self.open in ("lo", "both") else "["
            right = ")" if self.open in ("hi", "both") else "]"
            text = f"{kind} in {left}{_fmt(lo)}, {_fmt(hi)}{right}"
        elif lo is not None:
            text = f"{kind} {'>' if self.open in ('lo', 'both') else '>='} {_fmt(lo)}"
        elif hi is not None and self.lo is None:
            text = f"{kind} {'<' if self.open in ('hi', 'both') else '<='} {_fmt(hi)}"
        else:
            text = kind
        if self.also:
            text += " or " + " or ".join(map(str, self.also))
        return text + (f" ({self.note})" if self.note else "")


def Int(lo=None, hi=None, **kw) -> Num:
    return Num(lo, hi, integer=True, **kw)


def Real(lo=None, hi=None, **kw) -> Num:
    return Num(lo, hi, **kw)


class Flag(Rule):
    def __init__(self, null=False):
        self.null = null

    def ok(self, value) -> bool:
        return isinstance(value, bool)

    def describe(self, value=None) -> str:
        return "true or false"


class OneOf(Rule):
    def __init__(self, *choices, null=False):
        self.choices, self.null = choices, null

    def ok(self, value) -> bool:
        value = getattr(value, "name", value)  # an Enum (Hydra plugins' structured configs) by its name
        return isinstance(value, (str, int)) and not isinstance(value, bool) and value in self.choices

    def describe(self, value=None) -> str:
        return "one of " + ", ".join(map(str, self.choices))


class Text(Rule):
    """One line of text; ``max_len``: at most that many characters; ``forbid``: none of these characters."""

    def __init__(self, null=False, max_len: int | None = None, forbid: str = ""):
        self.null, self.max_len, self.forbid = null, max_len, forbid

    def ok(self, value) -> bool:
        return (isinstance(value, str) and "\n" not in value and (self.max_len is None or len(value) <= self.max_len)
                and not any(c in value for c in self.forbid))

    def describe(self, value=None) -> str:
        limits = ([f"at most {self.max_len} characters"] if self.max_len else []) + (
            [f"without any of {' '.join(self.forbid)}"] if self.forbid else [])
        return "a string" + (f" ({', '.join(limits)})" if limits else "")


class ListOf(Rule):
    """A list whose every element obeys ``item``; ``length``: exactly that many."""

    def __init__(self, item: Rule, length: int | None = None, null=False):
        self.item, self.length, self.null = item, length, null

    def ok(self, value) -> bool:
        return (isinstance(value, (list, tuple)) and (self.length is None or len(value) == self.length)
                and all(self.item.ok(v) for v in value))

    def describe(self, value=None) -> str:
        n = f"{self.length} " if self.length else ""
        worst = next((v for v in value if not self.item.ok(v)), None) if isinstance(value, (list, tuple)) else None
        return f"a list [x,y,...] of {n}elements, each {self.item.describe(worst)}"


class CountOrList(Rule):
    """A count >= 1, or a non-empty list of integers in [0, hi] (e.g. protocol.seeds: 3 or [0, 5, 7])."""

    def __init__(self, hi: int, null=False):
        self.hi, self.null = hi, null

    def ok(self, value) -> bool:
        if is_int(value):
            return value >= 1
        return (isinstance(value, (list, tuple)) and len(value) > 0
                and all(is_int(v) and 0 <= v <= self.hi for v in value))

    def describe(self, value=None) -> str:
        return f"a count >= 1 or a list [a,b,...] of integers in [0, {_fmt(self.hi)}]"


FINITE = Real()  # the rule of a numeric knob nobody declared (tests/test_bad_input.py flags it)
