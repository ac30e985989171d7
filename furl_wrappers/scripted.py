"""Scripted episodes on a Meta-World task instance: the one rollout loop behind goal images, the offline VLM's
training data and the alignment benchmark.

A policy is Meta-World's scripted expert (optionally with Gaussian action noise) or uniform random actions; the
env is the goal-observable twin of the fixed-goal instance ``seed`` (same object and goal positions as
``make_metaworld_env(task, seed=seed)``: the expert needs to see the goal). Frames are rendered as the env's own
``render()`` would render them; which frames, and when the episode stops, are arguments.

Example:
    >>> import numpy as np
    >>> episode = run_scripted_episode("reach", 0, scripted_policy("reach"), image_size=32, render="goal")
    >>> episode.first_success > 0, episode.frames.shape
    (True, (1, 32, 32, 3))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from furl_wrappers.rendering import FrameRenderer, RenderQuality
from furl_wrappers.simulator import build_metaworld
from furl_wrappers.tasks import canonical_task
from furl_wrappers.validation import check_int, check_number

__all__ = ["POLICY_KINDS", "ScriptedEpisode", "scripted_policy", "run_scripted_episode"]

#: ``"expert"``: Meta-World's scripted expert (plus noise); ``"random"``: uniform actions in [-1, 1].
POLICY_KINDS: tuple[str, ...] = ("expert", "random")

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ScriptedEpisode:
    """A rolled-out episode.

    Attributes:
        frames: uint8 ``(F, H, W, 3)``, the rendered frames.
        frame_steps: int ``(F,)``, the env step after which each frame was rendered (0: right after reset).
        success: bool ``(T,)``, ``info["success"]`` after each of the T steps taken.
        first_success: 1-based step of the first success, -1 if none.
    """

    frames: np.ndarray
    frame_steps: np.ndarray
    success: np.ndarray
    first_success: int


def scripted_policy(task: str, kind: str = "expert", noise: float = 0.0,
                    rng: np.random.Generator | None = None) -> Policy:
    """``obs → action`` in [-1, 1]: the scripted expert plus N(0, ``noise``) per action, or uniform random.

    ``rng`` draws the noise / random actions (one draw of 4 values per step, none for a noise-free expert).
    """
    if kind not in POLICY_KINDS:
        raise ValueError(f"kind must be one of {list(POLICY_KINDS)}, got {kind!r}")
    noise = check_number("noise", noise, low=0.0)
    if rng is None and (kind == "random" or noise > 0):
        raise ValueError(f"a {kind!r} policy with noise {noise} needs rng=np.random.default_rng(...)")
    if kind == "random":
        assert rng is not None  # checked above
        random_rng = rng
        return lambda obs: random_rng.uniform(-1, 1, 4).astype(np.float32)
    from metaworld.policies import ENV_POLICY_MAP

    # The map's values are concrete subclasses of Meta-World's abstract Policy (mypy sees the abstract base).
    expert_class: type[Any] = ENV_POLICY_MAP[canonical_task(task)]
    expert = expert_class()

    def act(obs: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            # Meta-World's experts warn that their gains exceed [-1, 1]; the action is clipped as the env would.
            warnings.simplefilter("ignore")
            action: np.ndarray = expert.get_action(obs)
        if noise > 0:
            assert rng is not None  # checked above
            action = action + rng.normal(0, noise, 4)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    return act


def run_scripted_episode(
    task: str,
    seed: int,
    policy: Policy,
    *,
    max_steps: int = 500,
    camera: str = "corner2",
    image_size: int = 224,
    render_quality: RenderQuality = "fast",
    render: str | int = "all",
    stop_after_success: int | None = 0,
    stop_when_success_run_ends: bool = False,
) -> ScriptedEpisode:
    """Roll ``policy`` out on the goal-observable twin of the instance ``seed`` for at most ``max_steps`` steps.

    Args:
        task, seed: the task instance.
        policy: ``obs → action`` (see :func:`scripted_policy`).
        max_steps: step limit.
        camera, image_size, render_quality: the renderer (as the env's ``render()``).
        render: ``"all"`` (the frame after every step), ``"goal"`` (only the frame after the first success), or an
            int k (the frame after reset, after every k-th step, and after the first success).
        stop_after_success: stop this many steps after the first success (``None``: do not stop on success).
        stop_when_success_run_ends: also stop at the first step without success after the first success.
    """
    name = canonical_task(task)
    max_steps = check_int("max_steps", max_steps, 1)
    every = None if render in ("all", "goal") else check_int("render", render, 1, hint="'all', 'goal' or k >= 1")
    env = build_metaworld(name, seed, observable=True, max_episode_steps=max_steps)
    renderer = FrameRenderer(env.model, env.data, camera, image_size, render_quality)
    frames: list[np.ndarray] = []
    frame_steps: list[int] = []
    success: list[bool] = []
    first = -1
    try:
        obs, _ = env.reset()
        if every is not None:
            frames.append(renderer.render())
            frame_steps.append(0)
        for step in range(1, max_steps + 1):
            obs, _, _, truncated, info = env.step(policy(obs))
            success.append(bool(info["success"]))
            if first < 0 and success[-1]:
                first = step
            if render == "all" or (render == "goal" and step == first) or (
                    every is not None and (step % every == 0 or step == first)):
                frames.append(renderer.render())
                frame_steps.append(step)
            if first > 0 and ((stop_after_success is not None and step >= first + stop_after_success)
                              or (stop_when_success_run_ends and not success[-1])):
                break
            if truncated:
                break
    finally:
        renderer.close()
        env.close()
    shape = (0, image_size, image_size, 3)
    return ScriptedEpisode(np.stack(frames) if frames else np.zeros(shape, np.uint8),
                           np.asarray(frame_steps, np.int64), np.asarray(success, bool), first)
