"""The VLM reward on envs: FuzzyVLMRewardWrapper (one env) and VecFuzzyVLMReward (a vector env, one forward pass).

Both score the frame rendered after each step with a :class:`~furl_wrappers.vlm_reward.VLMReward` — built once,
by you (``VLMReward.build(...)``) or by the wrapper from the same keyword arguments — and expose it as
``.vlm_reward`` for the buffer, the alignment callback and the relay:

- :class:`FuzzyVLMRewardWrapper` — a ``gymnasium.Wrapper`` around one env (two lines to use);
- :class:`VecFuzzyVLMReward` — a ``VecEnvWrapper`` over an SB3 ``DummyVecEnv``/``SubprocVecEnv`` whose envs are
  wrapped in the light :class:`FrameInInfo`: the env processes only render; the frames of all envs are encoded
  in one forward pass per step, on the GPU when there is one. :func:`make_vlm_vec_env` builds this.

Reward returned = ``task_reward + ρ·r_VLM`` (``ρ·r_VLM`` alone with ``include_task_reward=False``, the
VLM-RMs setting). ``info`` carries ``task_reward``, ``vlm_reward`` (r_VLM) and ``vlm_embedding`` (float32
``(D,)``, the frozen embedding of the frame after this step, so an off-policy buffer can recompute the reward
with later heads). The frame encoded at an episode's last step is that step's frame (rendered inside ``step``,
before any vector-env auto-reset). The wrapped env must have the sparse task reward and the fast renderer
(:func:`~furl_wrappers.make_metaworld_env` envs do; add them to Meta-World's own envs with
:func:`~furl_wrappers.as_furl_env`).

Example:
    >>> import furl_wrappers
    >>> env = furl_wrappers.make_metaworld_env("drawer-open", image_size=32)
    >>> env = furl_wrappers.FuzzyVLMRewardWrapper(env, vlm="random-clip:tiny", device="cpu")
    >>> _ = env.reset(seed=0)
    >>> _, reward, _, _, info = env.step(env.action_space.sample())
    >>> info["vlm_embedding"].shape
    (32,)
"""

from __future__ import annotations

from typing import Any, Callable, cast

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper

from furl_wrappers.envs import GoalSetting, TaskInstance, check_furl_env, instance_of, make_metaworld_env, task_of
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.validation import check_int
from furl_wrappers.vlm_reward import VLMReward, nonfinite_kind

__all__ = [
    "FuzzyVLMRewardWrapper",
    "FrameInInfo",
    "VecFuzzyVLMReward",
    "make_vlm_vec_env",
    "vlm_reward_of",
]


def _reward(vlm_reward: VLMReward | None, build: dict[str, Any], who: str, **context: Any) -> VLMReward:
    """The given reward, or one built from ``build`` (``VLMReward.build`` arguments) — never both."""
    if vlm_reward is not None:
        if build:
            raise TypeError(f"{who}: pass vlm_reward or the arguments to build one ({sorted(build)}), not both")
        if not isinstance(vlm_reward, VLMReward):
            raise TypeError(f"{who}: vlm_reward must be a furl_wrappers.VLMReward, got {type(vlm_reward).__name__}")
        return vlm_reward
    return VLMReward.build(**context, **build)


def _check_observations(who: str, obs: Any, batched: bool) -> None:
    """``ValueError`` naming the env index (and the observation key) when a float observation holds NaN or inf.

    One ``np.isfinite`` per array already in hand; the env index is worked out only on the error path.
    """
    for key, value in (obs.items() if isinstance(obs, dict) else [(None, obs)]):
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f" or np.isfinite(value).all():
            continue
        env = int(np.flatnonzero(~np.isfinite(value.reshape(len(value), -1)).all(axis=1))[0]) if batched else 0
        name = "observation" if key is None else f"observation[{key!r}]"
        bad = value[env] if batched else value
        raise ValueError(f"{who}: env {env} returned an {name} that contains {nonfinite_kind(bad)}; check the env "
                         "(its simulation state or an observation wrapper): it would be stored and trained on")


def _check_actions(who: str, actions: Any, batched: bool) -> None:
    """``ValueError`` naming the env index and its action when an action holds NaN or inf, before it is stepped
    (MuJoCo would only warn and reset the simulation)."""
    values = np.asarray(actions)
    if values.dtype.kind not in "fc" or np.isfinite(values).all():
        return
    rows = values.reshape(len(values), -1) if batched and values.ndim else values.reshape(1, -1)
    env = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
    raise ValueError(f"{who}: the action for env {env} contains {nonfinite_kind(rows[env])} ({rows[env].tolist()}); "
                     "actions must be finite: check the policy (its weights or its observations)")


class _Shared:
    """A live object among a wrapper's recorded constructor arguments (``env.spec``): Gymnasium deep-copies specs,
    and a copied :class:`VLMReward` is ``None`` (it pickles to nothing), so an env re-made from the spec
    shares this one."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self

    def __eq__(self, other: object) -> bool:  # specs compare their wrappers' arguments: the same live object
        return isinstance(other, _Shared) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


def _no_frame(who: str, env: int, name: str, render_mode: Any) -> ValueError:
    return ValueError(f"{who}: render() of env {env} ({name}) returned None, not an RGB frame: the env must have "
                      f"render_mode=\"rgb_array\" (it reports {render_mode!r}; a wrapper overriding render() may "
                      "drop the frame); build it with furl_wrappers.make_metaworld_env or furl_wrappers.as_furl_env")


def _env_name(env: Any) -> str:
    """The env's task (``"reach-v3"``), else its registered id, else its class (error messages only)."""
    try:
        return task_of(env)
    except ValueError:
        return getattr(getattr(env, "spec", None), "id", None) or type(getattr(env, "unwrapped", env)).__name__


def _view(name: str) -> Any:  # a property; Any lets the class annotate what it reads as
    return property(lambda self: getattr(self.vlm_reward, name), doc=f"The VLM reward's ``{name}`` (read-only).")


class _HasVLMReward:
    """Read-only views of the wrapper's :class:`VLMReward` (which owns every setting)."""

    vlm_reward: VLMReward
    encoder = _view("encoder")
    reward_model: RewardModel = _view("reward_model")
    rho = _view("rho")
    include_task_reward = _view("include_task_reward")
    text = _view("text")

    def describe(self) -> str:
        """The encoder, saying plainly whether it is pretrained, the instruction and ρ."""
        return self.vlm_reward.describe()


class FuzzyVLMRewardWrapper(_HasVLMReward, gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``ρ·r_VLM`` of the rendered frame to a Meta-World env's sparse task reward.

    Args:
        env: a Meta-World env with the sparse task reward and the fast renderer (from
            :func:`~furl_wrappers.make_metaworld_env`, or Meta-World's own env through
            :func:`~furl_wrappers.as_furl_env`).
        vlm_reward: the :class:`~furl_wrappers.VLMReward` to use (shared with buffer, alignment, relay).
        **build: instead of ``vlm_reward``, :meth:`VLMReward.build` arguments (``vlm``, ``rho``, ``mode``, ``text``,
            ``goal_image``, ``device``, ...); the instruction defaults to the env's task.

    ``env.spec`` records the reward itself: an env re-made from the spec (``gymnasium.make(env.spec)``,
    ``check_env``) shares it; such a spec has no JSON form (``to_json``), like one holding a function.
    """

    def __init__(self, env: gym.Env, vlm_reward: VLMReward | None = None, **build: Any) -> None:
        check_furl_env(env, "FuzzyVLMRewardWrapper")
        super().__init__(env)
        vlm_reward = vlm_reward.value if isinstance(vlm_reward, _Shared) else vlm_reward  # re-made from env.spec
        context: dict[str, Any] = {}
        if vlm_reward is None:
            context["instance"] = instance_of(env)
            if context["instance"] is None and build.get("text") is None:
                context["task"] = task_of(env)
        self.vlm_reward = _reward(vlm_reward, build, "FuzzyVLMRewardWrapper", **context)
        gym.utils.RecordConstructorArgs.__init__(self, vlm_reward=_Shared(self.vlm_reward))

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        _check_actions("FuzzyVLMRewardWrapper", action, batched=False)
        obs, reward, terminated, truncated, info = self.env.step(action)
        _check_observations("FuzzyVLMRewardWrapper", obs, batched=False)
        frame = cast("np.ndarray | None", self.env.render())  # an rgb_array frame
        if frame is None:
            raise _no_frame("FuzzyVLMRewardWrapper", 0, _env_name(self.env), getattr(self.env, "render_mode", None))
        total = self.vlm_reward.annotate(frame[None], [info], [reward])
        return obs, float(total[0]), terminated, truncated, info


class FrameInInfo(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Puts the frame rendered right after each step into ``info["frame"]`` (for :class:`VecFuzzyVLMReward`).

    A ``None`` frame (an env not rendering ``"rgb_array"``) is passed on as it is: the vector wrapper, in the main
    process, refuses it with the env's index (an exception inside a ``SubprocVecEnv`` worker would only kill it).

    ``task_instance`` (a :class:`~furl_wrappers.envs.TaskInstance`, or ``None``) tells the vector wrapper, across
    processes, which instance it renders.
    """

    def __init__(self, env: gym.Env) -> None:
        check_furl_env(env, "FrameInInfo")
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        self.task_instance: TaskInstance | None = instance_of(env)
        self.task = self.task_instance.task if self.task_instance is not None else task_of(env)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["frame"] = self.env.render()
        return obs, reward, terminated, truncated, info


class VecFuzzyVLMReward(_HasVLMReward, VecEnvWrapper):
    """Batched VLM reward over a vector env whose envs are wrapped in :class:`FrameInInfo`.

    Each step, the frames of all envs are stacked and encoded in one forward pass (on the reward's device);
    rewards and ``info`` keys are as for :class:`FuzzyVLMRewardWrapper`, and ``info["frame"]`` is removed.

    Args:
        venv: an SB3 vector env of Meta-World envs wrapped in :class:`FrameInInfo`.
        vlm_reward: the :class:`~furl_wrappers.VLMReward` to use.
        **build: instead of ``vlm_reward``, :meth:`VLMReward.build` arguments (what rl-zoo YAML passes); the task
            instance (instruction, ``goal_image="auto"``) is read from the first env.
    """

    def __init__(self, venv: VecEnv, vlm_reward: VLMReward | None = None, **build: Any) -> None:
        super().__init__(venv)
        context: dict[str, Any] = {}
        if vlm_reward is None:
            try:  # the boundary where rl-zoo builds envs from YAML: the envs say which instance they render
                instance, task = (venv.get_attr(name, indices=[0])[0] for name in ("task_instance", "task"))
            except AttributeError as exc:
                raise TypeError("VecFuzzyVLMReward needs each env wrapped in FrameInInfo (build the vector env with "
                                "furl_wrappers.make_vlm_vec_env, or wrapper_class=FrameInInfo)") from exc
            context = {"instance": instance, "task": task}
        self.vlm_reward = _reward(vlm_reward, build, "VecFuzzyVLMReward", **context)

    def reset(self) -> Any:
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        _check_actions("VecFuzzyVLMReward", actions, batched=True)
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        _check_observations("VecFuzzyVLMReward", obs, batched=True)
        try:
            frames = [info.pop("frame") for info in infos]
        except KeyError as exc:
            raise KeyError(
                "VecFuzzyVLMReward needs each env wrapped in FrameInInfo (info['frame'] is missing); "
                "build the vector env with furl_wrappers.make_vlm_vec_env"
            ) from exc
        for i, frame in enumerate(frames):
            if frame is None:
                task, mode = (self.venv.get_attr(name, indices=[i])[0] for name in ("task", "render_mode"))
                raise _no_frame("VecFuzzyVLMReward", i, task, mode)
        batch = np.stack(frames)
        return obs, self.vlm_reward.annotate(batch, infos, rewards).astype(np.float32), dones, infos


def vlm_reward_of(venv: VecEnv) -> VLMReward:
    """The :class:`VLMReward` of a vector env built with the VLM reward.

    The one lookup through env layers, for the boundary where an env arrives without its reward (rl-zoo builds
    envs from YAML; ``RelayPolicy("MlpPolicy", venv)``): looks through ``VecEnvWrapper`` layers for
    :class:`VecFuzzyVLMReward`, then in a ``DummyVecEnv``'s first env for :class:`FuzzyVLMRewardWrapper`
    (subprocess envs hold copies, which must not be trained).

    Raises:
        ValueError: when there is none.
    """
    layer: Any = venv
    while True:
        if isinstance(layer, VecFuzzyVLMReward):
            return layer.vlm_reward
        if not isinstance(layer, VecEnvWrapper):
            break
        layer = layer.venv
    if isinstance(layer, DummyVecEnv):
        env = layer.envs[0]
        while isinstance(env, gym.Wrapper):
            if isinstance(env, FuzzyVLMRewardWrapper):
                return env.vlm_reward
            env = env.env
    raise ValueError(
        "no VLM reward found on the env: build it with furl_wrappers.make_vlm_vec_env (or wrap the envs in "
        "FrameInInfo + VecFuzzyVLMReward), or pass vlm_reward= explicitly"
    )


def make_vlm_vec_env(
    task: str,
    n_envs: int = 1,
    *,
    seed: int = 0,
    goal: GoalSetting = "fixed",
    vec_env_cls: type[Any] = DummyVecEnv,
    env_kwargs: dict[str, Any] | None = None,
    monitor: bool = True,
    vlm_reward: VLMReward | None = None,
    **build: Any,
) -> VecFuzzyVLMReward:
    """An SB3 vector env of ``n_envs`` copies of a task with the batched VLM reward.

    Args:
        task: Meta-World task.
        n_envs: number of envs.
        seed: the task instance (fixed goal) of every copy; also seeds the vector env.
        goal: ``"fixed"`` or ``"random"``.
        vec_env_cls: ``DummyVecEnv`` (default) or ``SubprocVecEnv``.
        env_kwargs: more :func:`~furl_wrappers.make_metaworld_env` arguments (``image_size``, ``camera``, ...).
        monitor: wrap each env in SB3's ``Monitor`` (episode returns, success).
        vlm_reward: a built :class:`~furl_wrappers.VLMReward` to use.
        **build: instead of ``vlm_reward``, :meth:`VLMReward.build` arguments (``vlm``, ``rho``, ``mode``, ...).

    Example:
        >>> venv = make_vlm_vec_env("reach", n_envs=2, vlm="random-clip:tiny", device="cpu",
        ...                         env_kwargs={"image_size": 32})
        >>> venv.num_envs, venv.vlm_reward.rho
        (2, 0.05)
    """
    n_envs = check_int("n_envs", n_envs)
    if vec_env_cls not in (DummyVecEnv, SubprocVecEnv) and not issubclass(vec_env_cls, VecEnv):
        raise ValueError(f"vec_env_cls must be DummyVecEnv or SubprocVecEnv, got {vec_env_cls!r}")
    kwargs = dict(env_kwargs or {})

    def factory() -> Callable[[], gym.Env]:
        def make() -> gym.Env:
            from stable_baselines3.common.monitor import Monitor

            env: gym.Env = FrameInInfo(make_metaworld_env(task, seed=seed, goal=goal, **kwargs))
            return Monitor(env, info_keywords=("is_success",)) if monitor else env

        return make

    venv = vec_env_cls([factory() for _ in range(n_envs)])
    venv.seed(seed)
    return VecFuzzyVLMReward(venv, vlm_reward=vlm_reward, **build)
