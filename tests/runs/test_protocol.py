"""The paper's evaluation protocol: instance seeds and episode counts per goal setting."""

from __future__ import annotations

import pytest

from furl_wrappers.runs.protocol import RANDOM_GOAL_EVAL_OFFSET, eval_episodes, eval_seed


def test_protocol() -> None:
    assert [eval_seed(s, "fixed") for s in (0, 3, 7)] == [0, 3, 7]  # the training instance itself
    assert [eval_seed(s, "random") for s in (0, 3)] == [100, 103] and RANDOM_GOAL_EVAL_OFFSET == 100
    assert (eval_episodes("fixed"), eval_episodes("random")) == (1, 10)
    with pytest.raises(ValueError, match=r"goal must be one of \['fixed', 'random'\]"):
        eval_seed(0, "sometimes")
