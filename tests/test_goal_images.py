from __future__ import annotations

import numpy as np
import pytest

from furl_wrappers import MT10_TASKS, goal_image, make_metaworld_env
from furl_wrappers.goal_images import GoalImageError, cache_dir, expert_rollout


@pytest.mark.parametrize("task", MT10_TASKS)
def test_expert_reaches_success_on_mt10(task: str) -> None:
    frame, step = goal_image(task, seed=0, image_size=64, return_step=True)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.std() > 10
    assert 1 <= step < 500


def test_goal_image_is_the_envs_frame_of_the_same_instance() -> None:
    # The expert runs on the goal-observable twin: same object/goal positions as the fixed-goal env.
    from furl_wrappers.simulator import build_metaworld

    hidden = make_metaworld_env("drawer-open", seed=3, image_size=64).unwrapped
    twin = build_metaworld("drawer-open-v3", 3, observable=True, max_episode_steps=500)
    np.testing.assert_array_equal(hidden._last_rand_vec, twin._last_rand_vec)
    # the goal frame differs from the initial frame (the drawer is open)
    env = make_metaworld_env("drawer-open", seed=3, image_size=64)
    env.reset()
    start = env.render().astype(np.int16)
    goal = goal_image("drawer-open", seed=3, image_size=64).astype(np.int16)
    assert np.abs(goal - start).mean() > 2


def test_cache_is_reused_and_atomic(monkeypatch: pytest.MonkeyPatch) -> None:
    first, step = goal_image("reach", seed=11, image_size=48, return_step=True)
    files = list((cache_dir() / "goal_images").glob("reach-v3-seed11-*"))
    assert len(files) == 1 and not list((cache_dir() / "goal_images").glob(".*.tmp"))

    def boom(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("furl_wrappers.goal_images.expert_rollout", boom)
    again, step2 = goal_image("reach", seed=11, image_size=48, return_step=True)
    np.testing.assert_array_equal(first, again)
    assert step == step2
    # a different argument is a different entry (and would need a rollout)
    with pytest.raises(AssertionError, match="cache"):
        goal_image("reach", seed=11, image_size=48, camera="corner3")


def test_corrupt_cache_entry_is_recomputed() -> None:
    frame = goal_image("reach", seed=12, image_size=48)
    (path,) = (cache_dir() / "goal_images").glob("reach-v3-seed12-*")
    path.write_bytes(b"not an npz")
    np.testing.assert_array_equal(goal_image("reach", seed=12, image_size=48), frame)


def test_expert_failure_raises() -> None:
    with pytest.raises(GoalImageError, match="did not succeed within 3 steps"):
        expert_rollout("drawer-open", seed=0, image_size=32, max_steps=3)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="drawer-open"):
        goal_image("drawer-opn")
    with pytest.raises(ValueError, match="image_size"):
        goal_image("reach", image_size=1)
    with pytest.raises(ValueError, match="camera"):
        goal_image("reach", camera="top")
