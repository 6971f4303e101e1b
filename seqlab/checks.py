"""One-line configuration errors: every message names the key, the value and the rule."""
from __future__ import annotations

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
