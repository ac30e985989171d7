"""Argument checks shared by the package: one message format for "must be an integer / a number in range".

Each check returns the value converted (``int`` / ``float``) or raises an error naming the argument, the valid
range and the value received, so a bad setting fails early with one line.

Example:
    >>> check_int("lag", 10)
    10
    >>> check_int("lag", 0)
    Traceback (most recent call last):
    ...
    ValueError: lag must be an integer >= 1, got 0
    >>> check_number("rho", 0.05, low=0.0, hint="0.05 in the paper")
    0.05
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Optional

__all__ = ["check_int", "check_number"]


def _fail(error: type, name: str, what: str, value: Any, hint: str) -> None:
    raise error(f"{name} must be {what}{f' ({hint})' if hint else ''}, got {value!r}")


def check_int(name: str, value: Any, low: int = 1, high: Optional[int] = None, *, hint: str = "",
              error: type = ValueError) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (booleans and floats are refused).

    Args:
        name: the argument's name, for the message.
        value: what was passed.
        low: smallest valid value (1: "a positive integer").
        high: largest valid value, or ``None``.
        hint: appended in brackets, e.g. the paper's value.
        error: the exception class (a ``ValueError`` subclass such as ``ConfigError``).
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low or (high is not None and value > high):
        what = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        _fail(error, name, what, value, hint)
    return int(value)


def check_number(name: str, value: Any, low: Optional[float] = None, high: Optional[float] = None, *,
                 low_open: bool = False, hint: str = "", error: type = ValueError) -> float:
    """``value`` as a finite ``float`` with ``low <= value <= high`` (``low < value`` with ``low_open``)."""
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(float(value))
    if ok and low is not None:
        ok = float(value) > low if low_open else float(value) >= low
    if ok and high is not None:
        ok = float(value) <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        _fail(error, name, "a finite number" + (f" {' and '.join(bounds)}" if bounds else ""), value, hint)
    return float(value)
