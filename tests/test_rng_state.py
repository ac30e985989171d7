"""furl_wrappers.rng_state: the global generators captured as JSON and restored exactly; malformed states refused."""

from __future__ import annotations

import json
import random

import gymnasium as gym
import numpy as np
import pytest
import torch

from furl_wrappers import rng_state


def test_round_trip_through_json_restores_every_generator() -> None:
    space = gym.spaces.Box(-1, 1, (2,), seed=3)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = json.loads(json.dumps(rng_state.capture(space)))  # JSON-able, nothing lost on the way
    expected = (random.random(), np.random.rand(3), torch.rand(3), space.sample())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    space.seed(99)
    rng_state.restore(state, space)
    assert random.random() == expected[0]
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    torch.testing.assert_close(torch.rand(3), expected[2])
    np.testing.assert_array_equal(space.sample(), expected[3])


@pytest.mark.parametrize("bad", [{"python": [3, [1, 2], None]}, {"numpy": ["MT19937", [1, 2, 3], 0, 0, 0.0]},
                                 {"torch": [1, 2, 3]}, {"numpy": None}, {"python": "not a state"}])
def test_a_malformed_state_is_one_line(bad: dict) -> None:
    state = {**rng_state.capture(), **bad}
    with pytest.raises(ValueError, match=r"^the saved random generator states are malformed \(") as info:
        rng_state.restore(state)
    assert "\n" not in str(info.value)
