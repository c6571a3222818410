"""Small checks for configuration values, each raising ``InputError`` (a ``ValueError``) that names the field and
what came: a public class such as ``ModelConfig`` refuses a value out of range with the package's own error."""

from __future__ import annotations

import math

from .errors import InputError

MAX_STEPS = 10**15
"""At most this many steps of anything (a run, a warmup, an interval): past any run; larger ones overflowed
``plan``'s float arithmetic (1e320)."""


def at_least(name: str, value: float, low: float, high: float | None = None) -> None:
    """``low <= value`` (and ``<= high`` when given)."""
    if not (value >= low and (high is None or value <= high)):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"{name} must be {bound}; got {value}")


def within(name: str, value: float, low: float, high: float, *, low_open: bool, high_open: bool) -> None:
    """``value`` in the interval from ``low`` to ``high``, each end open or closed as asked."""
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise InputError(f"{name} must be in {interval}; got {value}")


def positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be > 0; got {value}")


def one_of(name: str, value: str, choices) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {sorted(choices)}; got {value!r}")
