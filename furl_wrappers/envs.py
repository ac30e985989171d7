"""Meta-World tasks in the FuRL setting: sparse task reward, fixed or random goals, fast upright frames.

``make_metaworld_env`` builds one task the way the paper uses it (shared/furl-method.md, "Meta-World
setting"); :class:`SparseTaskReward` and :class:`MetaWorldGoal` are the two wrappers it applies, usable on any
Meta-World env; :func:`register_envs` registers ``furl/<task>-v3`` and ``furl/<task>-v3-random-goal`` for all
50 tasks (``import furl_wrappers`` calls it).

Example:
    >>> import furl_wrappers
    >>> env = furl_wrappers.make_metaworld_env("drawer-open", seed=0, image_size=64)
    >>> obs, info = env.reset()
    >>> obs.shape
    (39,)
    >>> _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> reward, info["is_success"]
    (-1.0, False)
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np

from furl_wrappers.rendering import (
    OffscreenRenderWrapper,
    RenderQuality,
    _check_camera,
    _check_image_size,
    _check_quality,
    import_mujoco,
)
from furl_wrappers.tasks import ALL_TASKS, canonical_task, instruction, short_task

__all__ = [
    "GOAL_SETTINGS",
    "SPARSE_REWARDS",
    "SparseTaskReward",
    "MetaWorldGoal",
    "make_metaworld_env",
    "env_id",
    "register_envs",
]

GOAL_SETTINGS: tuple[str, ...] = ("fixed", "random")
SPARSE_REWARDS: tuple[str, ...] = ("minus_one", "zero_one")
GoalSetting = Literal["fixed", "random"]
SparseReward = Literal["minus_one", "zero_one"]


class SparseTaskReward(gym.Wrapper):
    """Replaces Meta-World's shaped reward with the sparse task reward and reports success the SB3 way.

    Reward: ``success - 1`` (−1 or 0, the paper's) with ``sparse_reward="minus_one"``, ``success`` (0 or 1) with
    ``"zero_one"``, or the env's shaped reward with ``sparse=False``. ``info`` keeps Meta-World's keys and adds
    ``is_success`` (bool; what SB3's logger reads), ``task_reward`` (the sparse reward, whatever ``sparse`` is)
    and ``shaped_reward`` (Meta-World's own reward).

    Args:
        env: a Meta-World env (its ``info`` has ``"success"``).
        sparse: return the sparse task reward (default) or the shaped reward.
        sparse_reward: ``"minus_one"`` or ``"zero_one"``.

    Example:
        >>> import gymnasium as gym, furl_wrappers
        >>> env = furl_wrappers.SparseTaskReward(gym.make("Meta-World/MT1", env_name="reach-v3"))
        >>> _ = env.reset(seed=0)
        >>> env.step(env.action_space.sample())[1] in (-1.0, 0.0)
        True
    """

    def __init__(self, env: gym.Env, sparse: bool = True, sparse_reward: SparseReward = "minus_one") -> None:
        super().__init__(env)
        if not isinstance(sparse, bool):
            raise ValueError(f"sparse must be True or False, got {sparse!r}")
        if sparse_reward not in SPARSE_REWARDS:
            raise ValueError(f"sparse_reward must be one of {list(SPARSE_REWARDS)}, got {sparse_reward!r}")
        self.sparse = sparse
        self.sparse_reward = sparse_reward
        self._offset = -1.0 if sparse_reward == "minus_one" else 0.0

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, shaped, terminated, truncated, info = self.env.step(action)
        if "success" not in info:
            raise KeyError(f"SparseTaskReward needs a Meta-World env whose info has 'success'; got keys {list(info)}")
        success = bool(info["success"])
        task_reward = float(success) + self._offset
        info["is_success"] = success
        info["task_reward"] = task_reward
        info["shaped_reward"] = float(shaped)
        return obs, (task_reward if self.sparse else float(shaped)), terminated, truncated, info


class MetaWorldGoal(gym.Wrapper):
    """Fixed or random goals for a Meta-World env, following the paper's two settings.

    - ``"fixed"`` (Table 1): object and goal positions are drawn once from ``seed`` and kept on every reset;
      the goal is hidden from the observation.
    - ``"random"`` (Table 2): the goal is observable and re-drawn at every reset from the env's own random
      generator, seeded with ``seed`` (and re-seeded by ``reset(seed=...)``), so runs are reproducible.

    ``reset(seed=...)`` never moves a fixed goal: the goal belongs to the task instance (made with ``seed``),
    so SB3 seeding ``n_envs`` copies with ``seed + i`` still gives them all the same task.

    Use :func:`make_metaworld_env` to build one; this wrapper holds the task's name, instruction and setting.
    """

    def __init__(self, env: gym.Env, task: str, goal: GoalSetting, seed: int) -> None:
        super().__init__(env)
        self.task = canonical_task(task)
        self.goal = goal
        self.task_seed = seed
        self.instruction = instruction(self.task)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self.env.unwrapped.seed(int(seed))  # Meta-World's reset ignores `seed`; its own seed() reseeds.
        return self.env.reset(options=options)


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (high and value > high):
        bound = f"[{low}, {high}]" if high else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _build_metaworld(task: str, seed: int, observable: bool, max_episode_steps: int) -> Any:
    """Create the bare Meta-World env with its object/goal positions drawn from ``seed``.

    Replicates Meta-World's goal-hidden/goal-observable constructors (numpy's global generator seeded with
    ``seed`` for the first draw, then restored), without their fixed ``render_mode`` and size, so the
    positions for a seed are the same as ``gymnasium.make("Meta-World/goal_hidden", seed=seed)``'s.
    """
    import_mujoco()  # picks headless GL before Meta-World imports MuJoCo
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[task]()
    env._partially_observable = not observable
    if "sawyer_observation_space" in env.__dict__:
        del env.sawyer_observation_space  # cached property: recompute for the new observability
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        env._freeze_rand_vec = False
        env._set_task_called = True
        env.reset()
        env._freeze_rand_vec = True
    finally:
        np.random.set_state(state)
    env.seed(seed)
    env.max_path_length = max_episode_steps
    return env


def make_metaworld_env(
    task: str,
    *,
    goal: GoalSetting = "fixed",
    seed: int = 0,
    camera: str = "corner2",
    image_size: int = 224,
    max_episode_steps: int = 500,
    sparse: bool = True,
    sparse_reward: SparseReward = "minus_one",
    render_quality: RenderQuality = "fast",
    render_mode: str | None = "rgb_array",
) -> gym.Env:
    """Build one Meta-World task in the FuRL setting.

    Args:
        task: any of the 50 Meta-World tasks, ``"drawer-open"`` or ``"drawer-open-v3"``.
        goal: ``"fixed"`` (goal hidden, fixed by ``seed``; paper Table 1) or ``"random"`` (goal observable,
            re-drawn every reset; Table 2).
        seed: draws the fixed goal; seeds the random goals.
        camera: the camera ``render()`` uses; ``"corner2"`` is the paper's.
        image_size: side of the square frame ``render()`` returns.
        max_episode_steps: episodes end *truncated* (never terminated) after this many steps.
        sparse: reward is the sparse task reward (default) or Meta-World's shaped reward.
        sparse_reward: ``"minus_one"`` gives ``success - 1`` (the paper's), ``"zero_one"`` gives ``success``.
        render_quality: ``"fast"`` (no shadows/reflections/multisampling) or ``"full"`` (Meta-World's scene).
        render_mode: only ``"rgb_array"`` (or ``None``, meaning the same) is supported; accepted so that
            ``gymnasium.make(..., render_mode="rgb_array")`` and rl-zoo's ``env_kwargs`` work.

    Returns:
        A ``gymnasium.Env``: observations float64 ``(39,)``, actions float32 ``(4,)`` in [-1, 1], ``render()``
        an upright uint8 ``(image_size, image_size, 3)`` frame.

    Raises:
        UnknownTaskError: (a ``ValueError``) for an unknown task; the message lists close matches.
        ValueError: for a bad ``goal``, ``camera``, ``image_size``, ``max_episode_steps`` or other argument.
        RenderingUnavailableError: when no OpenGL context can be created (names the packages to install).

    Example:
        >>> env = make_metaworld_env("drawer-open-v3", goal="random", seed=1, image_size=64)
        >>> frame = (env.reset(), env.render())[1]
        >>> frame.shape, frame.dtype
        ((64, 64, 3), dtype('uint8'))
    """
    name = canonical_task(task)
    if goal not in GOAL_SETTINGS:
        raise ValueError(f"goal must be one of {list(GOAL_SETTINGS)}, got {goal!r}")
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    _check_camera(camera)
    _check_image_size(image_size)
    max_episode_steps = _check_int("max_episode_steps", max_episode_steps, 1)
    _check_quality(render_quality)
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be 'rgb_array' (or None), got {render_mode!r}")

    base = _build_metaworld(name, seed, observable=(goal == "random"), max_episode_steps=max_episode_steps)
    if goal == "random":
        base._freeze_rand_vec = False
        base.seeded_rand_vec = True  # draw goals from the env's own seeded generator, not numpy's global one
    env: gym.Env = MetaWorldGoal(base, name, goal, seed)
    env = SparseTaskReward(env, sparse=sparse, sparse_reward=sparse_reward)
    env = OffscreenRenderWrapper(env, camera=camera, image_size=image_size, render_quality=render_quality)
    return env


def env_id(task: str, goal: GoalSetting = "fixed") -> str:
    """The registered Gymnasium id: ``env_id("drawer-open") == "furl/drawer-open-v3"``."""
    if goal not in GOAL_SETTINGS:
        raise ValueError(f"goal must be one of {list(GOAL_SETTINGS)}, got {goal!r}")
    return f"furl/{canonical_task(task)}" + ("-random-goal" if goal == "random" else "")


def register_envs() -> list[str]:
    """Register ``furl/<task>-v3`` (fixed goal) and ``furl/<task>-v3-random-goal`` for all 50 tasks.

    Idempotent. Keyword arguments of :func:`make_metaworld_env` pass through ``gymnasium.make``.

    Returns:
        The registered ids.
    """
    ids = []
    for task in ALL_TASKS:
        for goal in GOAL_SETTINGS:
            eid = env_id(task, goal)
            if eid not in gym.registry:
                gym.register(
                    id=eid,
                    entry_point="furl_wrappers.envs:make_metaworld_env",
                    kwargs={"task": short_task(task), "goal": goal},
                    # Meta-World's goal-hidden observation space has equal bounds in its goal slots, which
                    # Gymnasium's passive checker warns about on every make: the space is correct, so skip it.
                    disable_env_checker=True,
                )
            ids.append(eid)
    return ids
