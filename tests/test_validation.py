"""The shared argument checks: values accepted, converted, and refused with one line naming the range."""

from __future__ import annotations

import numpy as np
import pytest

from furl_wrappers.validation import check_hyperparams, check_int, check_number


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


@pytest.mark.parametrize("hyperparams, match", [
    ({"gamma": float("nan")}, r"gamma must be a finite number > 0 and <= 1 \(0.99 in the paper\), got nan"),
    ({"gamma": 1.5}, r"gamma must be a finite number > 0 and <= 1"),
    ({"tau": 0}, r"tau must be a finite number > 0 and <= 1"),
    ({"learning_rate": float("inf")}, r"learning_rate must be a finite number > 0 \(1e-4 in the paper\), got inf"),
    ({"target_entropy": float("-inf")}, r"target_entropy must be a finite number, got -inf"),
    ({"learning_rate": -1e-4}, r"learning_rate must be a finite number > 0"),
    ({"batch_size": 0}, r"batch_size must be an integer >= 1"),
    ({"batch_size": 2.5}, r"batch_size must be an integer >= 1"),
    ({"gradient_steps": -2}, r"gradient_steps must be an integer >= -1"),
    ({"ent_coef": "auto_nan"}, r"ent_coef must be 'auto', 'auto_<initial value>' or a number > 0, got 'auto_nan'"),
    ({"ent_coef": -0.1}, r"ent_coef must be a finite number > 0"),
    ({"alignment_kwargs": {"lr": float("nan")}}, r"alignment_kwargs.lr must be a finite number \(in alignment_kwargs="),
    ({"policy_kwargs": {"net_arch": [64, float("inf")]}}, r"policy_kwargs.net_arch\[1\] must be a finite number"),
])
def test_check_hyperparams_refuses_non_finite_and_absurd_values(hyperparams: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_hyperparams(hyperparams)


def test_check_hyperparams_passes_paper_settings() -> None:
    paper = {"gamma": 0.99, "tau": 0.01, "learning_rate": 1e-4, "batch_size": 256, "buffer_size": 1_000_000,
             "learning_starts": 10_000, "gradient_steps": 1, "ent_coef": "auto_0.1", "train_freq": [1, "step"],
             "learning_rate_schedule": "lin_1e-4", "alignment_kwargs": {"lr": 1e-4, "margin": 0.1}}
    assert check_hyperparams(paper) is paper
    assert check_hyperparams({"learning_rate": lambda progress: 1e-4 * progress})  # a schedule is not a number
