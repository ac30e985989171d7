"""The one scripted-rollout loop: policies, which frames are rendered, when an episode stops, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from furl_wrappers.scripted import run_scripted_episode, scripted_policy

SIZE = 32


def test_render_modes_agree_on_the_goal_frame() -> None:
    full = run_scripted_episode("reach", 0, scripted_policy("reach"), image_size=SIZE, render="all",
                                stop_after_success=3)
    first = full.first_success
    assert first > 0 and len(full.success) == first + 3 and full.success[first - 1]
    assert full.frame_steps.tolist() == list(range(1, first + 4)) and len(full.frames) == first + 3
    goal = run_scripted_episode("reach", 0, scripted_policy("reach"), image_size=SIZE, render="goal")
    assert goal.first_success == first and goal.frame_steps.tolist() == [first]
    np.testing.assert_array_equal(goal.frames[0], full.frames[first - 1])  # deterministic expert
    every = run_scripted_episode("reach", 0, scripted_policy("reach"), image_size=SIZE, render=4,
                                 stop_after_success=0)
    expected = [0] + [t for t in range(1, first + 1) if t % 4 == 0 or t == first]
    assert every.frame_steps.tolist() == expected


def test_stop_rules_and_step_limit() -> None:
    rng = np.random.default_rng(0)
    episode = run_scripted_episode("drawer-open", 0, scripted_policy("drawer-open", "random", rng=rng),
                                   max_steps=7, image_size=SIZE, render="goal", stop_after_success=None)
    assert len(episode.success) == 7 and episode.first_success == -1 and episode.frames.shape == (0, SIZE, SIZE, 3)
    run = run_scripted_episode("reach", 0, scripted_policy("reach"), image_size=SIZE, render="goal",
                               stop_after_success=None, stop_when_success_run_ends=True, max_steps=60)
    tail = run.success[run.first_success - 1:]
    if len(run.success) < 60:  # stopped at the first step without success after the first success
        assert not tail[-1] and tail[:-1].all()
    else:
        assert tail.all()


def test_noisy_policies_are_reproducible() -> None:
    a, b = (run_scripted_episode("reach", 1, scripted_policy("reach", noise=0.5, rng=np.random.default_rng(7)),
                                 max_steps=20, image_size=SIZE, render=10) for _ in range(2))
    np.testing.assert_array_equal(a.frames, b.frames)
    c = run_scripted_episode("reach", 1, scripted_policy("reach", noise=0.5, rng=np.random.default_rng(8)),
                             max_steps=20, image_size=SIZE, render=10)
    assert not np.array_equal(a.frames, c.frames)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        scripted_policy("reach", "clever")
    with pytest.raises(ValueError, match="needs rng"):
        scripted_policy("reach", "random")
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        scripted_policy("reach", noise=-1.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="render must be an integer >= 1"):
        run_scripted_episode("reach", 0, scripted_policy("reach"), render="some")
