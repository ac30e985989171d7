"""Meta-World tasks in the FuRL setting: sparse task reward, fixed or random goals, fast upright frames.

``make_metaworld_env`` builds one task the way the paper uses it (paper §5.1: sparse reward, fixed goals for
Table 1, random goals for Table 2); :class:`SparseTaskReward` and :class:`MetaWorldGoal` are the two wrappers it
applies, usable on any Meta-World env; :func:`as_furl_env` adds the sparse reward and the fast renderer to
Meta-World's own envs; :class:`TaskInstance` describes one task instance and how its frames look (what a goal
image must match); :func:`register_envs` registers ``furl/<task>-v3`` and ``furl/<task>-v3-random-goal`` for all
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

from dataclasses import dataclass
from typing import Any, Literal, SupportsFloat, TypeVar

import gymnasium as gym
import numpy as np

from furl_wrappers.goal_images import goal_image
from furl_wrappers.pixels import OBSERVATIONS, PIXEL_DEFAULTS, ActionRepeat, PixelObservation
from furl_wrappers.presets import get_preset
from furl_wrappers.rendering import (
    OffscreenRenderWrapper,
    RenderQuality,
    check_camera,
    check_image_size,
    check_render_quality,
)
from furl_wrappers.simulator import build_metaworld
from furl_wrappers.tasks import canonical_task, instruction
from furl_wrappers.validation import check_int

__all__ = [
    "GOAL_SETTINGS",
    "check_goal",
    "SPARSE_REWARDS",
    "SparseTaskReward",
    "MetaWorldGoal",
    "TaskInstance",
    "make_metaworld_env",
    "as_furl_env",
    "check_furl_env",
    "task_of",
    "instance_of",
]

GOAL_SETTINGS: tuple[GoalSetting, ...] = ("fixed", "random")
#: how a random-goal task is named in Gymnasium ids, run directories and reports
SPARSE_REWARDS: tuple[str, ...] = ("minus_one", "zero_one")
GoalSetting = Literal["fixed", "random"]
SparseReward = Literal["minus_one", "zero_one"]


def check_goal(goal: Any, error: type = ValueError) -> str:
    """``goal`` if it is one of :data:`GOAL_SETTINGS`, else ``error`` listing them."""
    if goal not in GOAL_SETTINGS:
        raise error(f"goal must be one of {list(GOAL_SETTINGS)}, got {goal!r}")
    return goal


class SparseTaskReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
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
        gym.utils.RecordConstructorArgs.__init__(self, sparse=sparse, sparse_reward=sparse_reward)
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


class MetaWorldGoal(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Fixed or random goals for a Meta-World env, following the paper's two settings.

    - ``"fixed"`` (Table 1): object and goal positions are drawn once from ``seed`` and kept on every reset;
      the goal is hidden from the observation.
    - ``"random"`` (Table 2): the goal is observable and re-drawn at every reset from the env's own random
      generator, seeded with ``seed`` (and re-seeded by ``reset(seed=...)``), so runs are reproducible.

    ``reset(seed=...)`` never moves a fixed goal: the goal belongs to the task instance (made with ``seed``),
    so SB3 seeding ``n_envs`` copies with ``seed + i`` still gives them all the same task.

    Use :func:`make_metaworld_env` to build one; this wrapper holds the task's name, instruction and setting.
    """

    def __init__(self, env: gym.Env, task: str, goal: GoalSetting, seed: int, image_preset: str = "fast",
                 vlm: str | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, task=task, goal=goal, seed=seed, image_preset=image_preset,
                                                 vlm=vlm)
        super().__init__(env)
        self.task = canonical_task(task)
        self.goal = goal
        self.task_seed = seed
        self.image_preset = get_preset(image_preset).name
        self.vlm = vlm
        self.instruction = instruction(self.task)
        self._start: dict[str, Any] = {}
        self._replay: dict[str, Any] | None = None

    @property
    def goal_position(self) -> list[float]:
        """The current goal's xyz (for a fixed goal: the instance's, on every episode)."""
        world: Any = self.env.unwrapped  # Meta-World's SawyerXYZEnv (untyped)
        return [float(v) for v in np.asarray(world._target_pos).reshape(-1)]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        replay, self._replay = self._replay, None
        if replay is not None:  # a resumed run: start this episode as the checkpointed run did
            seed = replay.get("seed")
            if seed is None:
                self.env.unwrapped.np_random.bit_generator.state = replay["rng"]
        self._start = ({"seed": int(seed)} if seed is not None else
                       {"rng": self.env.unwrapped.np_random.bit_generator.state})
        if seed is not None:
            world: Any = self.env.unwrapped  # Meta-World's SawyerXYZEnv (untyped)
            world.seed(int(seed))  # Meta-World's reset ignores `seed`; its own seed() reseeds.
        return self.env.reset(options=options)

    def episode_start(self) -> dict[str, Any]:
        """How the current episode was started (JSON): the reset's seed, or the RNG state it drew from."""
        return dict(self._start)

    def replay_episode_start(self, record: dict[str, Any]) -> None:
        """Make the next reset start its episode as ``record`` (from :meth:`episode_start`) says."""
        self._replay = dict(record)


@dataclass(frozen=True)
class TaskInstance:
    """One Meta-World task instance and how its frames are rendered: what a goal image has to match.

    Attributes:
        task: canonical task id, e.g. ``"drawer-open-v3"``.
        goal: ``"fixed"`` or ``"random"``.
        seed: the instance seed (draws the fixed goal; seeds random goals).
        camera, image_size, render_quality: the env's renderer settings.
        image_preset: the :mod:`~furl_wrappers.presets` preset the env was made with.
        vlm: the encoder a VLM reward built for this env must use (``None``: the reward's own choice).
    """

    task: str
    goal: str = "fixed"
    seed: int = 0
    camera: str = "corner2"
    image_size: int = 224
    render_quality: RenderQuality = "fast"
    image_preset: str = "fast"
    vlm: str | None = None

    def goal_image(self) -> np.ndarray:
        """The scripted expert's frame at first success on this instance, uint8 ``(S, S, 3)`` (cached on disk).

        With random goals this is the goal image of the initial instance (the reference code loads one expert
        rollout per task, too).
        """
        image = goal_image(self.task, seed=self.seed, camera=self.camera, image_size=self.image_size,
                           render_quality=self.render_quality)
        assert isinstance(image, np.ndarray)  # without return_step: the frame alone
        return image


def make_metaworld_env(
    task: str,
    *,
    goal: GoalSetting = "fixed",
    seed: int = 0,
    camera: str = "corner2",
    image_size: int | None = None,
    max_episode_steps: int = 500,
    sparse: bool = True,
    sparse_reward: SparseReward = "minus_one",
    render_quality: RenderQuality | None = None,
    render_mode: str | None = "rgb_array",
    image_preset: str = "fast",
    vlm: str | None = None,
    observation: str = "state",
    pixel_size: int | None = None,
    frame_stack: int | None = None,
    action_repeat: int | None = None,
) -> gym.Env:
    """Build one Meta-World task in the FuRL setting, with state (paper §5.2) or pixel (§5.4) observations.

    Args:
        task: any of the 50 Meta-World tasks, ``"drawer-open"`` or ``"drawer-open-v3"``.
        goal: ``"fixed"`` (goal hidden, fixed by ``seed``; paper Table 1) or ``"random"`` (goal observable,
            re-drawn every reset; Table 2).
        seed: draws the fixed goal; seeds the random goals.
        camera: the camera ``render()`` uses; ``"corner2"`` is the paper's.
        image_size: side of the square frame ``render()`` returns (default: the preset's, 224 or 256).
        max_episode_steps: episodes end *truncated* (never terminated) after this many steps.
        sparse: reward is the sparse task reward (default) or Meta-World's shaped reward.
        sparse_reward: ``"minus_one"`` gives ``success - 1`` (the paper's), ``"zero_one"`` gives ``success``.
        render_quality: ``"fast"`` (no shadows/reflections/multisampling) or ``"full"`` (Meta-World's scene);
            default: the preset's.
        render_mode: only ``"rgb_array"`` (or ``None``, meaning the same) is supported; accepted so that
            ``gymnasium.make(..., render_mode="rgb_array")`` and rl-zoo's ``env_kwargs`` work.
        image_preset: ``"fast"`` or ``"reference"`` (the reference code's image pipeline; see
            :mod:`furl_wrappers.presets`). A VLM reward built on this env follows it.
        vlm: the encoder a VLM reward built on this env uses, overriding the reward's own (``"furl-mw-vlm"``,
            ``"liv"``, a CLIP id or directory, ...): how rl-zoo users pick the VLM
            (``--env-kwargs vlm:"'furl-mw-vlm'"``). The env itself never loads it.
        observation: ``"state"`` (the 39 floats) or ``"pixels"``: the last ``frame_stack`` frames, downsized to
            ``pixel_size`` from the one frame rendered per step (:class:`~furl_wrappers.pixels.PixelObservation`).
        pixel_size: side of the policy's frames (pixels only; default 84, the paper's).
        frame_stack: frames per pixel observation (pixels only; default 3, the paper's).
        action_repeat: simulator steps per agent step (:class:`~furl_wrappers.pixels.ActionRepeat`; default 2 for
            pixels, the paper's, 1 for state). ``max_episode_steps`` counts simulator steps either way.

    Returns:
        A ``gymnasium.Env``: observations float64 ``(39,)`` (state) or uint8 ``(3·frame_stack, pixel_size,
        pixel_size)`` (pixels), actions float32 ``(4,)`` in [-1, 1], ``render()`` an upright uint8
        ``(image_size, image_size, 3)`` frame.

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
    check_goal(goal)
    preset = get_preset(image_preset)
    image_size = preset.image_size if image_size is None else image_size
    quality = check_render_quality(preset.render_quality if render_quality is None else render_quality)
    seed = check_int("seed", seed, 0, 2**32 - 1)
    check_camera(camera)
    check_image_size(image_size)
    max_episode_steps = check_int("max_episode_steps", max_episode_steps, 1)
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be 'rgb_array' (or None), got {render_mode!r}")
    pixels = _pixel_settings(observation, pixel_size, frame_stack, action_repeat)

    base = build_metaworld(name, seed, observable=(goal == "random"), max_episode_steps=max_episode_steps)
    if goal == "random":
        base._freeze_rand_vec = False
        base.seeded_rand_vec = True  # draw goals from the env's own seeded generator, not numpy's global one
    if vlm is not None and (not isinstance(vlm, str) or not vlm.strip()):
        raise ValueError(f"vlm must be an encoder name such as 'furl-mw-vlm', 'liv' or a CLIP id, got {vlm!r}")
    env: gym.Env = MetaWorldGoal(base, name, goal, seed, preset.name, vlm)
    env = SparseTaskReward(env, sparse=sparse, sparse_reward=sparse_reward)
    env = OffscreenRenderWrapper(env, camera=camera, image_size=image_size, render_quality=quality)
    if pixels["action_repeat"] > 1:
        env = ActionRepeat(env, pixels["action_repeat"])
    if observation == "pixels":
        env = PixelObservation(env, size=pixels["pixel_size"], frame_stack=pixels["frame_stack"])
    return env


def _pixel_settings(observation: str, pixel_size: int | None, frame_stack: int | None,
                    action_repeat: int | None) -> dict[str, int]:
    """The pixel settings in effect (the paper's where not given); pixel-only ones refused for state."""
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation must be one of {list(OBSERVATIONS)}, got {observation!r}")
    given = {"pixel_size": pixel_size, "frame_stack": frame_stack, "action_repeat": action_repeat}
    if observation == "state":
        extra = sorted(k for k in ("pixel_size", "frame_stack") if given[k] is not None)
        if extra:
            raise ValueError(f"{', '.join(extra)} apply to observation='pixels' only (got observation='state')")
        return {"action_repeat": check_int("action_repeat", 1 if action_repeat is None else action_repeat)}
    settings = {k: PIXEL_DEFAULTS[k] if v is None else v for k, v in given.items()}
    settings["action_repeat"] = check_int("action_repeat", settings["action_repeat"], hint="2 in the paper")
    return settings


_W = TypeVar("_W", bound=gym.Wrapper)


def _find_wrapper(env: gym.Env, cls: type[_W]) -> _W | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, cls):
            return env
        env = env.env
    return None


def task_of(env: gym.Env) -> str:
    """The Meta-World task id of an env (ours or Meta-World's own), e.g. ``"drawer-open-v3"``.

    Raises:
        ValueError: if the env is not a Meta-World task.
    """
    goal = _find_wrapper(env, MetaWorldGoal)
    if goal is not None:
        return goal.task
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    by_class = {cls: name for name, cls in ALL_V3_ENVIRONMENTS.items()}
    for cls in type(env.unwrapped).__mro__:
        if cls in by_class:
            return by_class[cls]
    raise ValueError(
        f"cannot tell the Meta-World task of {type(env.unwrapped).__name__}; pass text='<instruction>' explicitly"
    )


def instance_of(env: gym.Env) -> TaskInstance | None:
    """The :class:`TaskInstance` of an env built by :func:`make_metaworld_env` (``None`` for other envs, e.g.
    Meta-World's own, whose instance seed is not known)."""
    goal = _find_wrapper(env, MetaWorldGoal)
    render = _find_wrapper(env, OffscreenRenderWrapper)
    if goal is None or render is None:
        return None
    renderer = render.frame_renderer
    return TaskInstance(goal.task, goal.goal, goal.task_seed, renderer.camera, renderer.image_size,
                        renderer.render_quality, goal.image_preset, goal.vlm)


def as_furl_env(env: gym.Env, *, image_size: int = 224, camera: str = "corner2",
                render_quality: RenderQuality = "fast") -> gym.Env:
    """Add the sparse task reward and the fast renderer to a Meta-World env that lacks them (an explicit step for
    Meta-World's own envs; :func:`make_metaworld_env` envs already have both and are returned as they are).

    Example:
        >>> import gymnasium as gym
        >>> env = as_furl_env(gym.make("Meta-World/MT1", env_name="reach-v3"), image_size=32)
        >>> _ = env.reset(seed=0)
        >>> env.render().shape
        (32, 32, 3)
    """
    if _find_wrapper(env, SparseTaskReward) is None:
        env = SparseTaskReward(env)
    if _find_wrapper(env, OffscreenRenderWrapper) is None:
        quality = check_render_quality(render_quality)
        env = OffscreenRenderWrapper(env, camera=camera, image_size=image_size, render_quality=quality)
    return env


def check_furl_env(env: gym.Env, who: str) -> None:
    """Raise a ``TypeError`` naming :func:`as_furl_env` if ``env`` lacks the sparse task reward or the renderer."""
    missing = [name for name, cls in (("SparseTaskReward", SparseTaskReward), ("OffscreenRenderWrapper",
                                                                                OffscreenRenderWrapper))
               if _find_wrapper(env, cls) is None]
    if missing:
        raise TypeError(f"{who} needs a Meta-World env with {' and '.join(missing)}: build it with "
                        "furl_wrappers.make_metaworld_env, or wrap Meta-World's own env with furl_wrappers.as_furl_env")
