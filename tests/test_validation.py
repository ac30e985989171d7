"""The shared argument checks: values accepted, converted, and refused with one line naming the range."""

from __future__ import annotations

import numpy as np
import pytest

from furl_wrappers.validation import check_int, check_number


class _MyError(ValueError):
    pass


def test_check_int() -> None:
    assert check_int("n", 3) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("seed", 0, 0, 10) == 0
    for bad in (0, -1, 2.0, "3", True, None):
        with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got "):
            check_int("n", bad)
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 10\] \(the instance\), got 11$"):
        check_int("seed", 11, 0, 10, hint="the instance")
    with pytest.raises(_MyError):
        check_int("n", 0, error=_MyError)


def test_check_number() -> None:
    assert check_number("rho", 1) == 1.0 and isinstance(check_number("rho", 1), float)
    assert check_number("alpha", 1.0, low=0.0, high=1.0) == 1.0
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0 \(1e-4\), got 0$"):
        check_number("lr", 0, low=0.0, low_open=True, hint="1e-4")
    for bad in (float("nan"), float("inf"), -0.1, "0.1", True):
        with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
            check_number("rho", bad, low=0.0)
    with pytest.raises(ValueError, match="<= 1"):
        check_number("alpha", 1.5, low=0.0, high=1.0)
