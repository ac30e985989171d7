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
    >>> check_hyperparams({"gamma": float("nan")})
    Traceback (most recent call last):
    ...
    ValueError: gamma must be a finite number > 0 and <= 1 (0.99 in the paper), got nan
"""

from __future__ import annotations

import inspect
import math
from numbers import Integral, Real
from typing import Any

__all__ = ["check_int", "check_number", "check_hyperparams", "init_keywords"]


def _fail(error: type, name: str, what: str, value: Any, hint: str) -> None:
    raise error(f"{name} must be {what}{f' ({hint})' if hint else ''}, got {value!r}")


def check_int(name: str, value: Any, low: int = 1, high: int | None = None, *, hint: str = "",
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
    if (isinstance(value, bool) or not isinstance(value, Integral) or int(value) < low
            or (high is not None and int(value) > high)):
        what = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        _fail(error, name, what, value, hint)
    return int(value)


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
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


#: SB3 off-policy hyperparameters checked by :func:`check_hyperparams`: (check, keyword arguments)
_HYPERPARAMS: dict[str, tuple[Any, dict[str, Any]]] = {
    "gamma": (check_number, dict(low=0.0, high=1.0, low_open=True, hint="0.99 in the paper")),
    "tau": (check_number, dict(low=0.0, high=1.0, low_open=True, hint="0.01 in the paper")),
    "learning_rate": (check_number, dict(low=0.0, low_open=True, hint="1e-4 in the paper")),
    "batch_size": (check_int, dict(low=1, hint="256 in the paper")),
    "buffer_size": (check_int, dict(low=1)),
    "learning_starts": (check_int, dict(low=0)),
    "gradient_steps": (check_int, dict(low=-1, hint="-1: as many as env steps")),
    "target_update_interval": (check_int, dict(low=1)),
    "n_timesteps": (check_number, dict(low=0.0)),
}


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first non-finite float inside ``value`` (dicts, lists, tuples), or ``None``."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Real) and not isinstance(item, Integral) and not math.isfinite(float(item)):
            return where
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def check_hyperparams(hyperparams: dict[str, Any], *, error: type = ValueError) -> dict[str, Any]:
    """Refuse non-finite numbers anywhere in ``hyperparams`` and out-of-range SB3 settings (``gamma``, ``tau``,
    ``learning_rate`` unless a schedule, ``batch_size``, ``buffer_size``, ``learning_starts``, ``gradient_steps``,
    ``target_update_interval``, ``ent_coef``), before anything is built: a NaN would otherwise reach training
    silently (SB3 checks none of them). Returns ``hyperparams`` unchanged."""
    for key, value in hyperparams.items():
        if key in _HYPERPARAMS and not callable(value) and not (key == "learning_rate" and isinstance(value, str)):
            check, kwargs = _HYPERPARAMS[key]
            check(key, value, error=error, **kwargs)
        where = _non_finite(value, key)
        if where is not None:
            raise error(f"{where} must be a finite number, got {value!r}" if where == key else
                        f"{where} must be a finite number (in {key}={value!r})")
    ent_coef = hyperparams.get("ent_coef")
    if isinstance(ent_coef, str):
        ok = ent_coef == "auto" or (ent_coef.startswith("auto_") and _positive(ent_coef[5:]))
        if not ok:
            _fail(error, "ent_coef", "'auto', 'auto_<initial value>' or a number > 0", ent_coef, "")
    elif ent_coef is not None:
        check_number("ent_coef", ent_coef, low=0.0, low_open=True, error=error)
    return hyperparams


def _positive(text: str) -> bool:
    try:
        return math.isfinite(float(text)) and float(text) > 0
    except ValueError:
        return False


def init_keywords(cls: type) -> set[str] | None:
    """The keyword arguments ``cls(...)`` takes (following ``**kwargs`` up the MRO); ``None`` when unknowable."""
    keys: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            return None
        if "__init__" in vars(klass):
            params = inspect.signature(vars(klass)["__init__"]).parameters.values()
            keys |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"self"}
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                return keys
    return None
