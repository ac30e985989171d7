"""furl_wrappers.relay_schedule: turns per env, alternating starts, redraws at episode ends, exact state round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from furl_wrappers.relay_schedule import RelaySchedule


def test_turns_switch_every_relay_length_and_the_start_alternates() -> None:
    schedule = RelaySchedule(n_envs=2, lengths=[3], seed=0)
    rows = []
    for t in range(14):
        rows.append(schedule.task_agent_acting().tolist())
        schedule.advance(np.full(2, t % 7 == 6))  # 7-step episodes
    env0 = [r[0] for r in rows]
    assert env0 == [False] * 3 + [True] * 3 + [False] + [True] * 3 + [False] * 3 + [True]
    assert [r[1] for r in rows] == [not x for x in env0]  # env 1 starts with the task agent


def test_counts_stop_and_redraws() -> None:
    schedule = RelaySchedule(n_envs=3, lengths=[50, 100, 150, 200], seed=1)
    assert set(schedule.relay_length.tolist()) <= {50, 100, 150, 200}
    schedule.count(np.array([True, False, False]))
    assert (schedule.task_agent_steps, schedule.vlm_steps) == (1, 2)
    seen = set()
    for _ in range(40):
        schedule.advance(np.ones(3, dtype=bool))
        seen.update(schedule.relay_length.tolist())
    assert seen == {50, 100, 150, 200} and schedule.ep_step.tolist() == [0, 0, 0]
    schedule.stop()
    assert not schedule.task_agent_acting().any()


def test_state_round_trip_continues_the_same_draws() -> None:
    a = RelaySchedule(n_envs=2, lengths=[2, 5], seed=4)
    for t in range(9):
        a.advance(np.array([t % 4 == 3, False]))
    b = RelaySchedule(n_envs=2, lengths=[2, 5], seed=123)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    np.testing.assert_array_equal(a.noise(0.2, (4,)), b.noise(0.2, (4,)))
    for _ in range(5):
        a.advance(np.ones(2, dtype=bool))
        b.advance(np.ones(2, dtype=bool))
    assert b.state_dict() == a.state_dict()


@pytest.mark.parametrize("bad", [{"ep_step": [0]}, {"rng": 5}, {"active": None, "vlm_steps": "x"}, {"ep_step": None}])
def test_a_malformed_state_is_one_line(bad: dict) -> None:
    schedule = RelaySchedule(n_envs=2, lengths=[2], seed=0)
    with pytest.raises(ValueError, match=r"^the relay state is malformed \("):
        schedule.load_state_dict({**schedule.state_dict(), **bad})
