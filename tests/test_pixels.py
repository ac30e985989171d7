"""Pixel observations: ActionRepeat on a scripted toy env, PixelObservation's frame stack (toy env and real
Meta-World), one render per reset/step (also under FuzzyVLMRewardWrapper), make_metaworld_env's pixel options
(paper defaults 84 / 3 / 2, state + action repeat, random goals), resize_frame and bad inputs."""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import furl_wrappers
from furl_wrappers.envs import MetaWorldGoal, _find_wrapper, make_metaworld_env
from furl_wrappers.pixels import PIXEL_DEFAULTS, ActionRepeat, PixelObservation, resize_frame
from furl_wrappers.rendering import OffscreenRenderWrapper

IMAGE, PIXEL = 64, 32  # small VLM frame and policy frame, for speed


class ScriptedEnv(gym.Env):
    """Toy env: step ``t`` (1-based) returns ``rewards[t-1]`` and Meta-World-like info keys, observation ``[t]``;
    truncates (or terminates) at step ``end``. ``render()`` returns a frame filled with ``t`` (for the pixel
    wrapper); ``renders`` counts its calls and ``actions`` records every action received."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, rewards: list[float], successes: Optional[set[int]] = None, end: int = 100,
                 terminate: bool = False, success_key: str = "success", render_mode: Optional[str] = "rgb_array",
                 frame_size: int = 8) -> None:
        self.rewards = rewards
        self.successes = successes or set()
        self.end = end
        self.terminate = terminate
        self.success_key = success_key
        self.render_mode = render_mode
        self.frame_size = frame_size
        self.observation_space = spaces.Box(-np.inf, np.inf, (1,), np.float64)
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.t = 0
        self.renders = 0
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0]), {}

    def step(self, action: Any):
        self.t += 1
        self.actions.append(np.array(action))
        success = self.t in self.successes
        info = {self.success_key: float(success) if self.success_key == "success" else success,
                "task_reward": float(success) - 1.0, "shaped_reward": 0.5 * self.t, "step": self.t}
        ended = self.t >= self.end
        return (np.array([float(self.t)]), self.rewards[self.t - 1], ended and self.terminate,
                ended and not self.terminate, info)

    def render(self) -> np.ndarray:
        self.renders += 1
        return np.full((self.frame_size, self.frame_size, 3), self.t, dtype=np.uint8)


REWARDS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]


# --------------------------------------------------------------------------------------------- ActionRepeat
def test_action_repeat_sums_rewards_and_success_of_any_repeat() -> None:
    toy = ScriptedEnv(REWARDS, successes={1})  # success on the first repeat of the first agent step only
    env = ActionRepeat(toy, 2)
    env.reset(seed=0)
    action = np.array([0.25, -0.5], np.float32)
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs.tolist() == [2.0]  # the last repeat's observation
    assert reward == 1.0 + 2.0
    assert info["task_reward"] == 0.0 + -1.0  # summed: success (0) then failure (-1)
    assert info["shaped_reward"] == 0.5 + 1.0
    assert info["is_success"] is True and info["success"] == 1.0  # any repeat succeeded
    assert info["action_repeats"] == 2 and info["step"] == 2  # other keys: the last repeat's
    assert not terminated and not truncated
    assert len(toy.actions) == 2 and all(np.array_equal(a, action) for a in toy.actions)
    obs, reward, _, _, info = env.step(action)
    assert obs.tolist() == [4.0] and reward == 4.0 + 8.0
    assert info["task_reward"] == -2.0 and info["shaped_reward"] == 1.5 + 2.0
    assert info["is_success"] is False and info["success"] == 0.0 and isinstance(info["success"], float)


def test_action_repeat_success_on_last_repeat_and_is_success_key() -> None:
    toy = ScriptedEnv(REWARDS, successes={3}, success_key="is_success")  # no "success" key
    env = ActionRepeat(toy, 3)
    env.reset()
    _, reward, _, _, info = env.step(np.zeros(2, np.float32))
    assert reward == 1.0 + 2.0 + 4.0
    assert info["is_success"] is True and "success" not in info  # not invented when the env has none
    assert info["task_reward"] == -1.0 + -1.0 + 0.0
    assert info["action_repeats"] == 3


def test_action_repeat_stops_at_truncation_counting_simulator_steps() -> None:
    toy = ScriptedEnv(REWARDS, end=5)  # truncates after 5 simulator steps
    env = ActionRepeat(toy, 2)
    env.reset()
    repeats, rewards, truncations = [], [], []
    for _ in range(3):
        _, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
        repeats.append(info["action_repeats"])
        rewards.append(reward)
        truncations.append(truncated)
        assert not terminated
    assert repeats == [2, 2, 1]  # 3 agent steps: 2 + 2 + 1 = 5 simulator steps
    assert rewards == [1.0 + 2.0, 4.0 + 8.0, 16.0]
    assert truncations == [False, False, True]
    assert toy.t == 5 and len(toy.actions) == 5  # never stepped past the end


def test_action_repeat_stops_at_termination() -> None:
    toy = ScriptedEnv(REWARDS, end=3, terminate=True, successes={3})
    env = ActionRepeat(toy, 4)
    env.reset()
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert terminated and not truncated
    assert info["action_repeats"] == 3 and obs.tolist() == [3.0] and toy.t == 3
    assert reward == 1.0 + 2.0 + 4.0 and info["is_success"] is True and info["success"] == 1.0


def test_action_repeat_one_is_a_plain_step() -> None:
    toy = ScriptedEnv(REWARDS, successes={2})
    env = ActionRepeat(toy, 1)
    env.reset()
    infos = [env.step(np.zeros(2, np.float32))[4] for _ in range(3)]
    assert [i["action_repeats"] for i in infos] == [1, 1, 1] and toy.t == 3
    assert [i["is_success"] for i in infos] == [False, True, False]
    assert [i["task_reward"] for i in infos] == [-1.0, 0.0, -1.0]


@pytest.mark.parametrize("repeat", [0, -1, 1.5, True, "2"])
def test_action_repeat_bad_values(repeat: Any) -> None:
    with pytest.raises(ValueError, match="action_repeat"):
        ActionRepeat(ScriptedEnv(REWARDS), repeat)


# ----------------------------------------------------------------------------- PixelObservation on a toy env
def test_pixel_observation_stacks_frames_oldest_first() -> None:
    toy = ScriptedEnv(REWARDS, frame_size=12)
    env = PixelObservation(toy, size=12, frame_stack=3)
    assert env.observation_space == spaces.Box(0, 255, (9, 12, 12), np.uint8)
    obs, _ = env.reset()
    assert obs.shape == (9, 12, 12) and obs.dtype == np.uint8
    assert obs.reshape(3, -1).max(axis=1).tolist() == [0, 0, 0]  # a new episode repeats its first frame
    expected = [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]]
    for want in expected:
        obs, reward, _, _, info = env.step(np.zeros(2, np.float32))
        assert reward == REWARDS[toy.t - 1] and info["step"] == toy.t  # passed through unchanged
        frames = obs.reshape(3, 3, 12, 12)  # (frame, channel, H, W)
        assert [int(f.min()) for f in frames] == want and [int(f.max()) for f in frames] == want
        assert env.observation_space.contains(obs)
    assert toy.renders == 1 + len(expected)  # one render per reset and per step
    assert np.array_equal(env.render(), np.full((12, 12, 3), 4, np.uint8))  # the step's frame, not rendered again
    assert toy.renders == 1 + len(expected)
    obs, _ = env.reset()  # the stack starts over
    assert obs.max() == 0 and toy.renders == 2 + len(expected)


def test_pixel_observation_frame_stack_one_and_resizing() -> None:
    toy = ScriptedEnv(REWARDS, frame_size=32)
    env = PixelObservation(toy, size=16, frame_stack=1)
    assert env.observation_space.shape == (3, 16, 16)
    env.reset()
    obs = env.step(np.zeros(2, np.float32))[0]
    assert obs.shape == (3, 16, 16) and (obs == 1).all()  # a constant frame stays constant when downsized
    assert env.render().shape == (32, 32, 3)  # render() keeps the full-size frame


def test_pixel_observation_renders_before_first_reset_only_on_demand() -> None:
    toy = ScriptedEnv(REWARDS)
    env = PixelObservation(toy, size=12)
    assert toy.renders == 0
    assert env.render().shape == (8, 8, 3) and toy.renders == 1  # nothing kept yet: renders now


# --------------------------------------------------------------------------------------------- resize_frame
def test_resize_frame() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert resize_frame(frame, 32) is frame  # already that size: the same array
    half = np.zeros((64, 64, 3), np.uint8)
    half[:, 32:] = 200
    small = resize_frame(half, 16)
    assert small.shape == (16, 16, 3) and small.dtype == np.uint8
    assert (small[:, :7] == 0).all() and (small[:, 9:] == 200).all()  # left half dark, right half bright
    assert (resize_frame(np.full((50, 50, 3), 77, np.uint8), 20) == 77).all()


# ----------------------------------------------------------------------------------- real Meta-World pixels
def _renderer(env: gym.Env):
    return _find_wrapper(env, OffscreenRenderWrapper).frame_renderer


def _count_renders(env: gym.Env) -> list[int]:
    """Count calls of the env's FrameRenderer.render (the only place a frame is drawn)."""
    renderer = _renderer(env)
    original = renderer.render
    calls: list[int] = []

    def counting() -> np.ndarray:
        calls.append(1)
        return original()

    renderer.render = counting
    return calls


def test_metaworld_pixels_stack_and_frames() -> None:
    env = make_metaworld_env("reach", observation="pixels", image_size=IMAGE, pixel_size=PIXEL,
                             max_episode_steps=10)
    assert env.observation_space == spaces.Box(0, 255, (9, PIXEL, PIXEL), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9, PIXEL, PIXEL) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert np.array_equal(obs[0:3], obs[3:6]) and np.array_equal(obs[3:6], obs[6:9])
    frame = env.render()
    assert frame.shape == (IMAGE, IMAGE, 3) and frame.dtype == np.uint8
    assert frame.mean() > 40  # the scene, not a black frame
    np.testing.assert_array_equal(obs[6:], resize_frame(frame, PIXEL).transpose(2, 0, 1))
    action = np.ones(4, np.float32)  # moves the arm: frames change
    changed = 0
    for step in range(1, 6):
        previous = obs
        obs, reward, terminated, truncated, info = env.step(action)
        np.testing.assert_array_equal(obs[:6], previous[3:])  # the stack shifts by one frame
        frame = env.render()
        assert frame.shape == (IMAGE, IMAGE, 3) and frame.mean() > 40
        np.testing.assert_array_equal(obs[6:], resize_frame(frame, PIXEL).transpose(2, 0, 1))
        changed += not np.array_equal(obs[6:], previous[6:])
        assert info["action_repeats"] == 2 and reward == info["task_reward"] == -2.0  # 2 sparse −1 steps
        assert not terminated
        assert truncated == (step == 5)  # 10 simulator steps with action repeat 2: 5 agent steps
    assert changed >= 3


@pytest.mark.parametrize("with_vlm", [False, True])
def test_metaworld_pixels_render_once_per_reset_and_step(with_vlm: bool) -> None:
    env = make_metaworld_env("reach", observation="pixels", image_size=IMAGE, pixel_size=PIXEL,
                             max_episode_steps=20)
    calls = _count_renders(env)
    if with_vlm:  # scores env.render() after every step: must reuse the frame just rendered
        env = furl_wrappers.FuzzyVLMRewardWrapper(env, vlm="random-clip:tiny", device="cpu")
    assert len(calls) == 0
    env.reset(seed=0)
    assert len(calls) == 1
    steps = 4
    for i in range(steps):
        _, _, _, _, info = env.step(env.action_space.sample())
        frame = env.render()  # the test's own render: no new frame either
        env.render()
        assert len(calls) == 2 + i
        if with_vlm:
            expected = env.vlm_reward.encoder.encode_images(frame[None])[0].numpy()
            np.testing.assert_allclose(info["vlm_embedding"], expected, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1 + steps
    env.reset()
    assert len(calls) == 2 + steps


def test_metaworld_pixel_defaults_are_the_papers() -> None:
    assert PIXEL_DEFAULTS == {"pixel_size": 84, "frame_stack": 3, "action_repeat": 2}
    env = make_metaworld_env("reach", observation="pixels", image_size=96)
    pixels = _find_wrapper(env, PixelObservation)
    assert (pixels.size, pixels.frame_stack, _find_wrapper(env, ActionRepeat).repeat) == (84, 3, 2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9, 84, 84) and env.observation_space.shape == (9, 84, 84)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert info["action_repeats"] == 2
    assert env.render().shape == (96, 96, 3)


def test_metaworld_pixel_options() -> None:
    env = make_metaworld_env("reach", observation="pixels", image_size=IMAGE, pixel_size=16, frame_stack=2,
                             action_repeat=1, max_episode_steps=3)
    assert _find_wrapper(env, ActionRepeat) is None  # action_repeat 1: no wrapper
    obs, _ = env.reset(seed=0)
    assert obs.shape == (6, 16, 16)
    truncated = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert truncated == [False, False, True]  # one simulator step per agent step


def test_metaworld_state_defaults_and_action_repeat() -> None:
    env = make_metaworld_env("reach", image_size=IMAGE)
    assert _find_wrapper(env, ActionRepeat) is None and _find_wrapper(env, PixelObservation) is None
    obs, _ = env.reset(seed=0)
    assert obs.shape == (39,) and env.observation_space.shape == (39,)
    info = env.step(env.action_space.sample())[4]
    assert "action_repeats" not in info  # action repeat 1 for state by default
    env = make_metaworld_env("reach", image_size=IMAGE, action_repeat=2, max_episode_steps=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (39,)
    steps = [env.step(env.action_space.sample()) for _ in range(2)]
    assert [s[4]["action_repeats"] for s in steps] == [2, 2]
    assert [s[3] for s in steps] == [False, True]  # 4 simulator steps
    assert steps[0][1] == -2.0  # two sparse -1 rewards summed


@pytest.mark.parametrize("goal", ["fixed", "random"])
def test_metaworld_pixels_with_fixed_and_random_goals(goal: str) -> None:
    env = make_metaworld_env("reach", goal=goal, seed=1, observation="pixels", image_size=IMAGE, pixel_size=PIXEL)
    goals, firsts = [], []
    for seed in (3, 4, 3):
        obs, _ = env.reset(seed=seed)
        assert obs.shape == (9, PIXEL, PIXEL) and np.array_equal(obs[:3], obs[6:])
        goals.append(_find_wrapper(env, MetaWorldGoal).goal_position)
        firsts.append(obs)
        obs = env.step(np.zeros(4, np.float32))[0]
        assert obs.shape == (9, PIXEL, PIXEL)
    assert goals[0] == goals[2] and np.array_equal(firsts[0], firsts[2])  # reset(seed) is reproducible
    if goal == "random":
        assert goals[0] != goals[1]  # re-drawn at reset
    else:
        assert goals[0] == goals[1]  # the instance's goal, whatever the reset seed


# --------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(("kwargs", "name"), [
    ({"observation": "rgb"}, "observation"),
    ({"frame_stack": 3}, "frame_stack"),  # pixel-only option with observation="state"
    ({"pixel_size": 84}, "pixel_size"),
    ({"observation": "pixels", "pixel_size": 0}, "pixel_size"),
    ({"observation": "pixels", "frame_stack": 0}, "frame_stack"),
    ({"observation": "pixels", "action_repeat": 1.5}, "action_repeat"),
    ({"action_repeat": 0}, "action_repeat"),  # state
])
def test_make_metaworld_env_bad_pixel_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make_metaworld_env("reach", image_size=IMAGE, **kwargs)


@pytest.mark.parametrize("repeat", [0, -1, True])
def test_make_metaworld_env_pixels_refuses_bad_action_repeat(repeat: Any) -> None:
    with pytest.raises(ValueError, match="action_repeat"):
        make_metaworld_env("reach", image_size=IMAGE, observation="pixels", action_repeat=repeat)


def test_pixel_observation_bad_envs() -> None:
    with pytest.raises(ValueError, match="render_mode"):
        PixelObservation(ScriptedEnv(REWARDS, render_mode=None))
    with pytest.raises(ValueError, match="render_mode='human'"):
        PixelObservation(ScriptedEnv(REWARDS, render_mode="human"))
    with pytest.raises(ValueError, match="pixel_size"):
        PixelObservation(ScriptedEnv(REWARDS), size=4)
    with pytest.raises(ValueError, match="frame_stack"):
        PixelObservation(ScriptedEnv(REWARDS), frame_stack=0)
    with pytest.raises(ValueError, match=r"pixel_size must exceed 3 \* frame_stack = 9"):  # SB3 would transpose
        PixelObservation(ScriptedEnv(REWARDS), size=9, frame_stack=3)

    class FloatFrames(ScriptedEnv):
        def render(self) -> np.ndarray:
            return np.zeros((8, 8, 3), np.float32)

    env = PixelObservation(FloatFrames(REWARDS), size=12)
    with pytest.raises(ValueError, match=r"render\(\) must return a uint8 \(H, W, 3\) frame"):
        env.reset()
