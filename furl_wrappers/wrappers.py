"""FuzzyVLMRewardWrapper: the frozen VLM's embedding of each rendered frame and the fuzzy reward ρ·r_VLM.

Two ways to add the VLM reward, with one scoring path (:class:`VLMRewardScorer`) so they agree exactly:

- :class:`FuzzyVLMRewardWrapper` — a ``gymnasium.Wrapper`` around one env (two lines to use);
- :class:`VecFuzzyVLMReward` — a ``VecEnvWrapper`` over an SB3 ``DummyVecEnv``/``SubprocVecEnv`` whose envs are
  wrapped in the light :class:`FrameInInfo`: the env processes only render; the frames of all envs are encoded
  in one forward pass per step, on the GPU when there is one. :func:`make_vlm_vec_env` builds this.

Reward returned = ``task_reward + ρ·r_VLM`` (``ρ·r_VLM`` alone with ``include_task_reward=False``, the
VLM-RMs setting). ``info`` carries ``task_reward``, ``vlm_reward`` (r_VLM) and ``vlm_embedding`` (float32
``(D,)``, the frozen embedding of the frame after this step, so an off-policy buffer can recompute the reward
with later heads). The frame encoded at an episode's last step is that step's frame (rendered inside ``step``,
before any vector-env auto-reset).

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

from typing import Any, Callable, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecEnvWrapper

from furl_wrappers.encoders import DEFAULT_CLIP, check_frames, check_texts, describe, make_encoder
from furl_wrappers.envs import MetaWorldGoal, SparseTaskReward, make_metaworld_env
from furl_wrappers.rendering import OffscreenRenderWrapper
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.tasks import canonical_task, instruction

__all__ = [
    "VLMRewardScorer",
    "FuzzyVLMRewardWrapper",
    "FrameInInfo",
    "VecFuzzyVLMReward",
    "make_vlm_vec_env",
    "task_of",
    "ensure_furl_env",
]


def _find_wrapper(env: gym.Env, cls: type) -> Optional[gym.Env]:
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


def ensure_furl_env(env: gym.Env, image_size: int = 224, camera: str = "corner2") -> gym.Env:
    """Add the sparse task reward and the fast renderer to a Meta-World env that lacks them."""
    if _find_wrapper(env, SparseTaskReward) is None:
        env = SparseTaskReward(env)
    if _find_wrapper(env, OffscreenRenderWrapper) is None:
        env = OffscreenRenderWrapper(env, camera=camera, image_size=image_size)
    return env


class VLMRewardScorer:
    """Frames → (frozen embeddings, r_VLM): one batched forward of the encoder, then the shared reward model.

    Args:
        encoder: any encoder (see :func:`furl_wrappers.encoders.make_encoder`).
        reward_model: the shared :class:`RewardModel` (its heads are read at every call, never copied).
        rho: weight ρ of r_VLM in the reward (0.05 in the paper).
    """

    def __init__(self, encoder: Any, reward_model: RewardModel, rho: float = 0.05,
                 include_task_reward: bool = True) -> None:
        if not np.isfinite(rho) or rho < 0:
            raise ValueError(f"rho must be a finite number >= 0 (0.05 in the paper), got {rho!r}")
        if int(encoder.dim) != reward_model.dim:
            raise ValueError(f"encoder dim {encoder.dim} does not match the reward model's {reward_model.dim}")
        self.encoder = encoder
        self.reward_model = reward_model
        self.rho = float(rho)
        self.include_task_reward = bool(include_task_reward)

    def score(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embed and score a batch.

        Args:
            frames: uint8 ``(N, H, W, 3)``.

        Returns:
            ``(embeddings float32 (N, D), r_vlm float32 (N,))`` as numpy arrays.
        """
        check_frames(frames)
        with torch.inference_mode():
            embeddings = self.encoder.encode_images(frames)
            if not isinstance(embeddings, torch.Tensor):
                embeddings = torch.as_tensor(np.asarray(embeddings))
            if embeddings.shape != (frames.shape[0], self.reward_model.dim):
                raise ValueError(
                    f"the encoder returned embeddings of shape {tuple(embeddings.shape)}, expected "
                    f"({frames.shape[0]}, {self.reward_model.dim})"
                )
            if not torch.isfinite(embeddings).all():
                raise ValueError("the encoder returned NaN or inf embeddings")
            r_vlm = self.reward_model.reward(embeddings)
        return embeddings.float().cpu().numpy(), r_vlm.float().cpu().numpy()

    def annotate(self, frames: np.ndarray, infos: Sequence[dict[str, Any]], rewards: Sequence[float]) -> np.ndarray:
        """Score a batch and write ``vlm_reward`` / ``vlm_embedding`` into each info.

        Args:
            frames: uint8 ``(N, H, W, 3)``, the frame after each env's step.
            infos: the N step infos (their ``task_reward`` is used, else ``rewards``).
            rewards: the envs' own rewards ``(N,)``.

        Returns:
            float64 ``(N,)``: ``task_reward + ρ·r_VLM`` (``ρ·r_VLM`` without the task reward).
        """
        embeddings, r_vlm = self.score(frames)
        totals = np.empty(len(infos), dtype=np.float64)
        for i, info in enumerate(infos):
            task_reward = float(info.get("task_reward", rewards[i]))
            info["vlm_reward"] = float(r_vlm[i])
            info["vlm_embedding"] = embeddings[i]
            totals[i] = self.rho * float(r_vlm[i]) + (task_reward if self.include_task_reward else 0.0)
        return totals


class _ScoredReward:
    """What both wrappers expose about their shared scorer."""

    scorer: VLMRewardScorer
    text: str

    @property
    def encoder(self) -> Any:
        return self.scorer.encoder

    @property
    def reward_model(self) -> RewardModel:
        return self.scorer.reward_model

    @property
    def rho(self) -> float:
        return self.scorer.rho

    @property
    def include_task_reward(self) -> bool:
        return self.scorer.include_task_reward

    def describe(self) -> str:
        """The encoder, saying plainly whether it is pretrained, and the instruction."""
        return f"{describe(self.encoder)}; text {self.text!r}; rho {self.rho}"


def _build_scorer(
    text: Optional[str],
    task: Optional[str],
    vlm: Any,
    rho: float,
    reward_model: Optional[RewardModel],
    mode: str,
    include_task_reward: bool,
    baseline_text: Optional[str],
    alpha: float,
    device: Union[str, torch.device],
    half: bool,
    pre_crop: Optional[float],
    seed: Optional[int],
) -> tuple[VLMRewardScorer, str]:
    if text is None:
        if task is None:
            raise ValueError("text is None and the task is unknown: pass text='<instruction>'")
        text = instruction(task)
    text = check_texts([text])[0]
    encoder = make_encoder(vlm, device=device, half=half, pre_crop=pre_crop)
    if reward_model is None:
        reward_model = RewardModel.from_encoder(
            encoder, text, baseline_text=baseline_text, alpha=alpha, mode=mode, seed=seed
        )
    return VLMRewardScorer(encoder, reward_model, rho, include_task_reward), text


class FuzzyVLMRewardWrapper(_ScoredReward, gym.Wrapper):
    """Adds ``ρ·r_VLM`` of the rendered frame to a Meta-World env's sparse task reward.

    Accepts envs from :func:`~furl_wrappers.make_metaworld_env` and Meta-World's own Gymnasium ids
    (``gymnasium.make("Meta-World/MT1", env_name=...)``): it adds the sparse task reward and the fast renderer
    when the env lacks them, and looks the instruction up by task name when ``text`` is omitted.

    Args:
        env: a Meta-World env.
        text: the task instruction (default: looked up from the task).
        vlm: encoder name, path or object (``"openai/clip-vit-base-patch32"``, ``"liv"``, ``"random-clip"``, ...).
        rho: weight of r_VLM (0.05).
        reward_model: a shared :class:`RewardModel` (default: a new one from the encoder and ``text``).
        mode: reward-model mode when one is created: ``"learned"``, ``"frozen"`` or ``"raw"``.
        include_task_reward: ``False`` returns ``ρ·r_VLM`` only (VLM-RMs).
        baseline_text, alpha: VLM-RMs goal-baseline prompt and mixing (when a model is created).
        device: where the encoder and reward model run (``"auto"``: CUDA when available).
        half: float16 encoder on CUDA.
        pre_crop: centre-crop fraction before the encoder's preprocessing (0.75 = reference 256 → 192).
        seed: seeds the heads' initialisation.
        image_size: frame size when this wrapper has to add the renderer.
    """

    def __init__(
        self,
        env: gym.Env,
        text: Optional[str] = None,
        vlm: Any = DEFAULT_CLIP,
        rho: float = 0.05,
        reward_model: Optional[RewardModel] = None,
        mode: str = "learned",
        include_task_reward: bool = True,
        baseline_text: Optional[str] = None,
        alpha: float = 0.0,
        device: Union[str, torch.device] = "auto",
        half: bool = False,
        pre_crop: Optional[float] = None,
        seed: Optional[int] = 0,
        image_size: int = 224,
    ) -> None:
        task = None
        if text is None:
            task = task_of(env)
        env = ensure_furl_env(env, image_size=image_size)
        super().__init__(env)
        self.scorer, self.text = _build_scorer(text, task, vlm, rho, reward_model, mode, include_task_reward,
                                               baseline_text, alpha, device, half, pre_crop, seed)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        total = self.scorer.annotate(self.env.render()[None], [info], [reward])
        return obs, float(total[0]), terminated, truncated, info


class FrameInInfo(gym.Wrapper):
    """Puts the frame rendered right after each step into ``info["frame"]`` (for :class:`VecFuzzyVLMReward`)."""

    def __init__(self, env: gym.Env, image_size: int = 224) -> None:
        super().__init__(ensure_furl_env(env, image_size=image_size))

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info["frame"] = self.env.render()
        return obs, reward, terminated, truncated, info


class VecFuzzyVLMReward(_ScoredReward, VecEnvWrapper):
    """Batched VLM reward over a vector env whose envs are wrapped in :class:`FrameInInfo`.

    Each step, the frames of all envs are stacked and encoded in one forward pass (on the scorer's device);
    rewards and ``info`` keys are as for :class:`FuzzyVLMRewardWrapper`, and ``info["frame"]`` is removed.

    Args:
        venv: an SB3 vector env of Meta-World envs wrapped in :class:`FrameInInfo`.
        text, vlm, rho, reward_model, mode, include_task_reward, baseline_text, alpha, device, half,
            pre_crop, seed: as for :class:`FuzzyVLMRewardWrapper`. With ``text=None`` the task is read from
            the first env.
    """

    def __init__(
        self,
        venv: VecEnv,
        text: Optional[str] = None,
        vlm: Any = DEFAULT_CLIP,
        rho: float = 0.05,
        reward_model: Optional[RewardModel] = None,
        mode: str = "learned",
        include_task_reward: bool = True,
        baseline_text: Optional[str] = None,
        alpha: float = 0.0,
        device: Union[str, torch.device] = "auto",
        half: bool = False,
        pre_crop: Optional[float] = None,
        seed: Optional[int] = 0,
    ) -> None:
        super().__init__(venv)
        task = None
        if text is None:
            task = canonical_task(venv.get_attr("task", indices=[0])[0])
        self.scorer, self.text = _build_scorer(text, task, vlm, rho, reward_model, mode, include_task_reward,
                                               baseline_text, alpha, device, half, pre_crop, seed)

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        try:
            frames = np.stack([info.pop("frame") for info in infos])
        except KeyError as exc:
            raise KeyError(
                "VecFuzzyVLMReward needs each env wrapped in FrameInInfo (info['frame'] is missing); "
                "build the vector env with furl_wrappers.make_vlm_vec_env"
            ) from exc
        return obs, self.scorer.annotate(frames, infos, rewards).astype(np.float32), dones, infos


def make_vlm_vec_env(
    task: str,
    n_envs: int = 1,
    *,
    seed: int = 0,
    goal: str = "fixed",
    vec_env_cls: type = DummyVecEnv,
    env_kwargs: Optional[dict[str, Any]] = None,
    monitor: bool = True,
    **reward_kwargs: Any,
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
        **reward_kwargs: :class:`VecFuzzyVLMReward` arguments (``vlm``, ``rho``, ``reward_model``, ...).

    Example:
        >>> venv = make_vlm_vec_env("reach", n_envs=2, vlm="random-clip:tiny", device="cpu",
        ...                         env_kwargs={"image_size": 32})
        >>> venv.num_envs
        2
    """
    if not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
    if vec_env_cls not in (DummyVecEnv, SubprocVecEnv) and not issubclass(vec_env_cls, VecEnv):
        raise ValueError(f"vec_env_cls must be DummyVecEnv or SubprocVecEnv, got {vec_env_cls!r}")
    kwargs = dict(env_kwargs or {})
    image_size = kwargs.get("image_size", 224)

    def factory() -> Callable[[], gym.Env]:
        def make() -> gym.Env:
            from stable_baselines3.common.monitor import Monitor

            env: gym.Env = make_metaworld_env(task, seed=seed, goal=goal, **kwargs)
            env = FrameInInfo(env, image_size=image_size)
            return Monitor(env, info_keywords=("is_success",)) if monitor else env

        return make

    venv = vec_env_cls([factory() for _ in range(n_envs)])
    venv.seed(seed)
    return VecFuzzyVLMReward(venv, **reward_kwargs)
