"""Env factory and registration on real Meta-World (no mocks)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import furl_wrappers
from furl_wrappers import MT10_TASKS, make_metaworld_env

SMALL = 32  # frame side for tests that do not look at pixels


@pytest.mark.parametrize("task", MT10_TASKS)
def test_mt10_reset_step_sparse_reward(task: str) -> None:
    env = make_metaworld_env(task, image_size=SMALL)
    obs, info = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (39,)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward in (-1.0, 0.0)
        assert reward == info["task_reward"] == float(info["success"]) - 1.0
        assert isinstance(info["is_success"], bool)
        assert "shaped_reward" in info and "near_object" in info  # Meta-World's keys kept
        assert not terminated
    env.close()


def test_zero_one_and_shaped_reward_options() -> None:
    env = make_metaworld_env("reach", sparse_reward="zero_one", image_size=SMALL)
    env.reset()
    _, reward, *_ , info = env.step(env.action_space.sample())
    assert reward == info["task_reward"] == float(info["success"])
    shaped = make_metaworld_env("reach", sparse=False, image_size=SMALL)
    shaped.reset()
    _, reward, *_, info = shaped.step(np.zeros(4, dtype=np.float32))
    assert reward == info["shaped_reward"] and reward > 0.0  # Meta-World's shaped reward is positive
    assert info["task_reward"] in (-1.0, 0.0)


def test_scripted_expert_success_gives_zero_reward() -> None:
    from metaworld.policies import ENV_POLICY_MAP

    env = make_metaworld_env("reach", goal="random", seed=0, image_size=SMALL)
    obs, _ = env.reset()
    policy = ENV_POLICY_MAP["reach-v3"]()
    rewards = []
    for _ in range(150):
        obs, reward, _, _, info = env.step(np.clip(policy.get_action(obs), -1, 1))
        rewards.append(reward)
        if info["is_success"]:
            break
    assert info["is_success"] and rewards[-1] == 0.0 and rewards[0] == -1.0


def _goal(env: gym.Env) -> np.ndarray:
    return np.asarray(env.unwrapped._target_pos).copy()


def test_fixed_goal_is_fixed_by_seed() -> None:
    env = make_metaworld_env("push", seed=0, image_size=SMALL)
    env.reset()
    first = _goal(env)
    obj = env.unwrapped.obj_init_pos.copy()
    for s in (None, 5, 123):  # even reset(seed=...) keeps the instance's goal
        env.reset(seed=s)
        np.testing.assert_array_equal(_goal(env), first)
        np.testing.assert_array_equal(env.unwrapped.obj_init_pos, obj)
    other = make_metaworld_env("push", seed=1, image_size=SMALL)
    other.reset()
    assert not np.allclose(_goal(other), first)
    same = make_metaworld_env("push", seed=0, image_size=SMALL)
    same.reset()
    np.testing.assert_array_equal(_goal(same), first)


def test_fixed_goal_is_hidden_random_goal_observable() -> None:
    fixed = make_metaworld_env("reach", goal="fixed", image_size=SMALL)
    obs, _ = fixed.reset()
    np.testing.assert_array_equal(obs[-3:], 0.0)
    rand = make_metaworld_env("reach", goal="random", image_size=SMALL)
    obs, _ = rand.reset()
    np.testing.assert_allclose(obs[-3:], _goal(rand))



@pytest.mark.parametrize("task", ["reach", "drawer-open", "plate-slide-back"])
def test_observations_lie_in_the_observation_space(task: str) -> None:
    rand = make_metaworld_env(task, goal="random", seed=0, image_size=SMALL, max_episode_steps=10)
    goal_space = rand.unwrapped.goal_space  # the random goal's bounds are the task's
    np.testing.assert_array_equal(rand.observation_space.low[-3:], goal_space.low)
    np.testing.assert_array_equal(rand.observation_space.high[-3:], goal_space.high)
    fixed = make_metaworld_env(task, goal="fixed", seed=0, image_size=SMALL, max_episode_steps=10)
    np.testing.assert_array_equal(fixed.observation_space.low[-3:], 0.0)  # a hidden goal: three zeros
    np.testing.assert_array_equal(fixed.observation_space.high[-3:], 0.0)
    goals = set()
    for seed in (0, 1, None, None):
        for env in (rand, fixed):
            obs, _ = env.reset(seed=seed)
            assert env.observation_space.contains(obs), obs
            for _ in range(3):
                obs = env.step(env.action_space.sample())[0]
                assert env.observation_space.contains(obs), obs
            if env is rand:
                np.testing.assert_allclose(obs[-3:], _goal(rand))  # the goal is observed, within its bounds
                goals.add(tuple(obs[-3:]))
    assert len(goals) == 4  # a new goal at every reset


def _layers(env: gym.Env) -> list[type]:
    out = []
    while isinstance(env, gym.Wrapper):
        out, env = out + [type(env)], env.env
    return out


def test_gymnasium_env_checker_passes_and_runs_for_random_goal_ids() -> None:
    from gymnasium.utils.env_checker import check_env
    from gymnasium.wrappers import PassiveEnvChecker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # check_env warns that the spaces have infinite bounds and wrappers
        for env in (gym.make("furl/reach-v3-random-goal", image_size=SMALL),
                    make_metaworld_env("drawer-open", goal="random", image_size=SMALL),
                    gym.make("furl/reach-v3", image_size=SMALL)):
            check_env(env)
    assert PassiveEnvChecker in _layers(gym.make("furl/reach-v3-random-goal", image_size=SMALL))
    assert PassiveEnvChecker not in _layers(gym.make("furl/reach-v3", image_size=SMALL))  # its [0, 0] goal bounds


def test_fixed_goal_matches_metaworld_goal_hidden_env() -> None:
    ours = make_metaworld_env("drawer-open", seed=7, image_size=SMALL)
    ours.reset()
    theirs = gym.make("Meta-World/goal_hidden", env_name="drawer-open-v3", seed=7)
    theirs.reset()
    np.testing.assert_allclose(_goal(ours), _goal(theirs))


def test_random_goal_changes_and_is_reproducible() -> None:
    def goals(seed: int) -> list[np.ndarray]:
        env = make_metaworld_env("reach", goal="random", seed=seed, image_size=SMALL)
        out = []
        for _ in range(3):
            env.reset()
            out.append(_goal(env))
        return out

    a, b = goals(0), goals(0)
    assert not np.allclose(a[0], a[1]) and not np.allclose(a[1], a[2])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(goals(1)[0], a[0])
    env = make_metaworld_env("reach", goal="random", seed=0, image_size=SMALL)
    env.reset(seed=42)
    g1 = _goal(env)
    env.reset(seed=42)
    np.testing.assert_array_equal(_goal(env), g1)  # reset(seed=...) reseeds the goal draws


def test_truncation_at_step_limit() -> None:
    env = make_metaworld_env("window-open", max_episode_steps=7, image_size=SMALL)
    env.reset()
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(7)]
    assert flags[:-1] == [(False, False)] * 6
    assert flags[-1] == (False, True)  # truncated, not terminated
    env.reset()
    assert env.step(env.action_space.sample())[3] is False


def test_registration_of_all_ids() -> None:
    ids = furl_wrappers.register_envs()
    assert len(ids) == 100 and len(set(ids)) == 100
    for task in furl_wrappers.ALL_TASKS:
        assert f"furl/{task}" in gym.registry
        assert f"furl/{task}-random-goal" in gym.registry
    env = gym.make("furl/drawer-open-v3", image_size=SMALL, render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (SMALL, SMALL, 3)
    assert env.unwrapped.__class__.__name__ == "SawyerDrawerOpenEnvV3"
    rand = gym.make("furl/reach-v3-random-goal", image_size=SMALL)
    obs, _ = rand.reset(seed=0)
    assert np.any(obs[-3:] != 0)
    assert furl_wrappers.env_id("drawer-open", "random") == "furl/drawer-open-v3-random-goal"


def test_every_registered_id_builds() -> None:
    for task in furl_wrappers.ALL_TASKS:
        env = gym.make(f"furl/{task}", image_size=SMALL)
        obs, _ = env.reset()
        assert obs.shape == (39,)
        env.close()


def test_bad_inputs_name_the_value() -> None:
    with pytest.raises(ValueError, match="drawer-open") as info:
        make_metaworld_env("drawer-opne")
    assert isinstance(info.value, furl_wrappers.UnknownTaskError)
    with pytest.raises(ValueError, match="'sometimes'"):
        make_metaworld_env("reach", goal="sometimes")
    with pytest.raises(ValueError, match="'corner9'"):
        make_metaworld_env("reach", camera="corner9")
    for size in (0, 8, -5, 224.0, "224", True):
        with pytest.raises(ValueError, match="image_size"):
            make_metaworld_env("reach", image_size=size)
    for steps in (0, -1, 2.5, None):
        with pytest.raises(ValueError, match="max_episode_steps"):
            make_metaworld_env("reach", max_episode_steps=steps)
    with pytest.raises(ValueError, match="'ultra'"):
        make_metaworld_env("reach", render_quality="ultra")
    with pytest.raises(ValueError, match="'human'"):
        make_metaworld_env("reach", render_mode="human")
    with pytest.raises(ValueError, match="sparse_reward"):
        make_metaworld_env("reach", sparse_reward="plus_one")
    with pytest.raises(ValueError, match="seed"):
        make_metaworld_env("reach", seed=-1)


def test_wrappers_apply_to_metaworlds_own_env() -> None:
    base = gym.make("Meta-World/MT1", env_name="reach-v3")
    env = furl_wrappers.OffscreenRenderWrapper(furl_wrappers.SparseTaskReward(base), image_size=SMALL)
    env.reset(seed=0)
    _, reward, *_, info = env.step(env.action_space.sample())
    assert reward in (-1.0, 0.0) and "is_success" in info
    frame = env.render()
    assert frame.shape == (SMALL, SMALL, 3) and frame.std() > 5
