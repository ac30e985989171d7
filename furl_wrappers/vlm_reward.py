"""VLMReward: the fuzzy VLM reward, built once and passed explicitly to everything that uses it.

One object owns the encoder, the reward model (heads), ρ, whether the task reward is added, the instruction and
the goal image. The env wrappers score frames with it, :class:`~furl_wrappers.vlm_buffer.VLMReplayBuffer` relabels
stored embeddings with it, :class:`~furl_wrappers.callbacks.RewardAlignmentCallback` trains its heads and
:class:`~furl_wrappers.relay.RelayPolicy` hands it to both — so every reward is computed with the current heads
and each setting has a single home (paper §4: ``r = r_task + ρ·r_VLM``, ρ = 0.05).

Two protocols type what the rest of the package needs:

- :class:`~furl_wrappers.encoders.ImageTextEncoder`: a frozen encoder (``encode_images``, ``encode_text``,
  ``dim``, ``device``);
- :class:`EmbeddingReward`: what a replay buffer needs to relabel (``dim``, ``relabel``, ``goal_embedding``).

Example:
    >>> reward = VLMReward.build(task="drawer-open", vlm="random-clip:tiny", device="cpu")
    >>> import numpy as np
    >>> embeddings, r_vlm = reward.score(np.zeros((2, 32, 32, 3), np.uint8))
    >>> embeddings.shape, r_vlm.shape
    ((2, 32), (2,))
    >>> reward.relabel(embeddings, np.array([-1.0, 0.0])).shape
    (2,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Protocol, SupportsFloat, Union, runtime_checkable

import numpy as np
import torch

from furl_wrappers.encoders import (
    DEFAULT_CLIP,
    ImageTextEncoder,
    check_frames,
    check_texts,
    describe,
    make_encoder,
)
from furl_wrappers.envs import TaskInstance
from furl_wrappers.presets import get_preset
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.tasks import instruction
from furl_wrappers.validation import check_number

__all__ = ["EmbeddingReward", "VLMReward", "GoalImage"]

#: a goal image: a uint8 frame ``(H, W, 3)``, a zero-argument function returning one (rendered on first use), or
#: ``None`` (no goal-image stage)
GoalImage = Union[np.ndarray, Callable[[], np.ndarray], None]


@runtime_checkable
class EmbeddingReward(Protocol):
    """What :class:`~furl_wrappers.vlm_buffer.VLMReplayBuffer` needs to relabel stored frame embeddings."""

    @property
    def dim(self) -> int:
        """The embedding size D (read-only)."""

    def relabel(self, embeddings: np.ndarray, task_rewards: np.ndarray) -> np.ndarray:
        """Rewards ``(N,)`` for embeddings ``(N, D)`` and task rewards ``(N,)``, with the current heads."""

    @property
    def goal_embedding(self) -> np.ndarray | None:
        """Φ_I(goal image) ``(D,)``, or ``None`` without a goal image."""


def _detached() -> None:
    """What a pickled :class:`VLMReward` becomes: nothing (see ``VLMReward.__reduce__``)."""
    return None


def encoder_name(encoder: Any) -> str:
    """The encoder's ``name`` (its class name when it has none), for error messages."""
    name = getattr(encoder, "name", None)
    return name if isinstance(name, str) and name else type(encoder).__name__


def nonfinite_kind(values: Any) -> str:
    """``"NaN"``, ``"inf"`` or ``"NaN and inf"``: what a non-finite array holds (only called on the error path)."""
    values = np.asarray(values, dtype=np.float64)
    kinds = [name for name, bad in (("NaN", np.isnan(values).any()), ("inf", np.isinf(values).any())) if bad]
    return " and ".join(kinds) or "no non-finite values"


def _encoder_error(encoder: Any, what: str, values: Any) -> ValueError:
    """One line naming the encoder and what it returned non-finite (``what``: "image embedding of env 0's frame")."""
    return ValueError(f"encoder {encoder_name(encoder)!r}: {what} contains {nonfinite_kind(values)}; check the "
                      f"encoder and its checkpoint (weights, input preprocessing, float16 overflow)")


def _check_encoded(encoder: Any, embeddings: Any, what: str) -> None:
    """``ValueError`` (:func:`_encoder_error`) unless the encoder's output ``embeddings`` is finite."""
    values = np.asarray(torch.as_tensor(embeddings).detach().float().cpu())
    if not np.isfinite(values).all():
        raise _encoder_error(encoder, what, values)


def _check_goal_image(goal_image: Any) -> None:
    if goal_image is None or callable(goal_image):
        return
    if not isinstance(goal_image, np.ndarray) or goal_image.dtype != np.uint8 or goal_image.ndim != 3:
        raise ValueError(f"goal_image must be 'auto', a uint8 frame (H, W, 3), a function returning one, or None; "
                         f"got {type(goal_image).__name__} {getattr(goal_image, 'shape', '')}")


class VLMReward:
    """The fuzzy VLM reward ``task_reward + ρ·r_VLM`` (``ρ·r_VLM`` alone without the task reward).

    Args:
        encoder: the frozen encoder (any :class:`~furl_wrappers.encoders.ImageTextEncoder`), or ``None`` for a
            reward that only relabels stored embeddings (then :meth:`score` raises).
        reward_model: the heads and text embedding (its ``dim`` must equal the encoder's).
        text: the instruction the reward model was built from.
        rho: weight ρ of r_VLM (0.05 in the paper).
        include_task_reward: add the task reward (``False``: VLM-RMs).
        goal_image: see :data:`GoalImage`; encoded once, on first use of :attr:`goal_embedding`.
        goal_embedding: Φ_I(goal image) ``(D,)`` directly, instead of ``goal_image``.
        image_preset: the :mod:`~furl_wrappers.presets` preset it was built for (recorded, ``build`` sets it).

    Use :meth:`build` to make one from names. A ``VLMReward`` is never pickled (it unpickles to ``None``): models
    and buffers saved with one get it re-attached after loading.
    """

    def __init__(self, encoder: ImageTextEncoder | None, reward_model: RewardModel, *, text: str,
                 rho: float = 0.05, include_task_reward: bool = True, goal_image: GoalImage = None,
                 goal_embedding: Any = None, image_preset: str | None = None) -> None:
        self.rho = check_number("rho", rho, low=0.0, hint="0.05 in the paper")
        if encoder is not None and int(encoder.dim) != reward_model.dim:
            raise ValueError(f"encoder dim {encoder.dim} does not match the reward model's {reward_model.dim}")
        _check_goal_image(goal_image)
        if goal_image is not None and goal_embedding is not None:
            raise ValueError("pass goal_image or goal_embedding, not both")
        if goal_image is not None and encoder is None:
            raise ValueError("a goal_image needs an encoder to embed it: pass goal_embedding instead")
        self.encoder = encoder
        self.reward_model = reward_model
        self.text = check_texts([text])[0]
        self.include_task_reward = bool(include_task_reward)
        self._goal_image = goal_image
        self._goal_embedding = None if goal_embedding is None else self._check_goal_embedding(goal_embedding)
        self.image_preset = None if image_preset is None else get_preset(image_preset).name

    @classmethod
    def build(
        cls,
        text: str | None = None,
        *,
        task: str | None = None,
        instance: TaskInstance | None = None,
        vlm: Any = DEFAULT_CLIP,
        rho: float = 0.05,
        mode: str = "learned",
        include_task_reward: bool = True,
        baseline_text: str | None = None,
        alpha: float = 0.0,
        reward_model: RewardModel | None = None,
        goal_image: str | GoalImage = "auto",
        image_preset: str | None = None,
        device: str | torch.device = "auto",
        half: bool | None = None,
        pre_crop: float | None = None,
        seed: int | None = 0,
    ) -> VLMReward:
        """Build the encoder and reward model from names (the one place these settings are read).

        Args:
            text: the instruction (default: the task's, from ``task`` or ``instance``).
            task: the Meta-World task (for the default instruction).
            instance: the env's :class:`~furl_wrappers.envs.TaskInstance` (for ``goal_image="auto"``).
            vlm: encoder name, path or object (see :func:`~furl_wrappers.encoders.make_encoder`); the env's
                ``vlm`` (its :class:`~furl_wrappers.envs.TaskInstance`), when set, wins.
            rho: weight ρ of r_VLM (0.05).
            mode: reward-model mode when one is created: ``"learned"``, ``"frozen"`` or ``"raw"``.
            include_task_reward: ``False`` gives ``ρ·r_VLM`` only (VLM-RMs).
            baseline_text, alpha: the VLM-RMs goal-baseline prompt and mixing (when a model is created).
            reward_model: an existing :class:`~furl_wrappers.RewardModel` to share (default: a new one).
            goal_image: ``"auto"`` (default): the scripted expert's frame at first success on ``instance`` when
                the heads are learned (frozen and raw rewards never use a goal image) and the instance is known
                (envs from :func:`~furl_wrappers.make_metaworld_env`), else none; a uint8 frame; a function
                returning one; or ``None`` (no goal-image stage: FuRL w/o goal image).
            image_preset: ``"fast"`` or ``"reference"`` (:mod:`furl_wrappers.presets`): the instruction's spelling,
                the crop, LIV's input transform and float16 on CUDA. Default: the env's (``instance``), else fast.
            device: where the encoder and reward model run (``"auto"``: CUDA when available).
            half: float16 encoder (CUDA only); default: the preset's choice.
            pre_crop: centre-crop fraction before the encoder's preprocessing; default: the preset's (0.75 = the
                reference 256 → 192).
            seed: seeds the heads' initialisation.
        """
        task = task or (instance.task if instance is not None else None)
        preset = get_preset(image_preset or (instance.image_preset if instance is not None else "fast"))
        if instance is not None and instance.vlm is not None:
            vlm = instance.vlm  # the env asks for it (rl-zoo: --env-kwargs vlm:...): the command line wins
        if text is None:
            if task is None:
                raise ValueError("text is None and the task is unknown: pass text='<instruction>' or task=...")
            text = preset.text(instruction(task))
        text = check_texts([text])[0]
        if isinstance(goal_image, str) and goal_image != "auto":
            raise ValueError(f"goal_image must be 'auto', a uint8 frame (H, W, 3), a function or None, "
                             f"got {goal_image!r}")
        kwargs = preset.encoder_kwargs(device)
        kwargs.update({k: v for k, v in (("half", half), ("pre_crop", pre_crop)) if v is not None})
        encoder = make_encoder(vlm, device=device, **kwargs)
        if reward_model is None:
            for prompt in (text, baseline_text):  # cached by VLMEncoder: from_encoder does not encode again
                if prompt is not None:
                    _check_encoded(encoder, encoder.encode_text([prompt]), f"text embedding of {prompt!r}")
            reward_model = RewardModel.from_encoder(encoder, text, baseline_text=baseline_text, alpha=alpha,
                                                    mode=mode, seed=seed)
        if isinstance(goal_image, str):  # "auto"
            goal_image = instance.goal_image if instance is not None and reward_model.trainable else None
        return cls(encoder, reward_model, text=text, rho=rho, include_task_reward=include_task_reward,
                   goal_image=goal_image, image_preset=preset.name)

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        """Embedding size D."""
        return self.reward_model.dim

    @property
    def device(self) -> torch.device:
        """Where the reward model runs."""
        return self.reward_model.device

    @property
    def trainable(self) -> bool:
        """Whether the heads train (reward model mode ``"learned"``)."""
        return self.reward_model.trainable

    @property
    def has_goal(self) -> bool:
        """Whether a goal image (or embedding) is set, without rendering or encoding it."""
        return self._goal_embedding is not None or self._goal_image is not None

    @property
    def goal_embedding(self) -> np.ndarray | None:
        """Φ_I(goal image) float32 ``(D,)``; the goal image is rendered and encoded on first use."""
        if self._goal_embedding is None and self._goal_image is not None:
            frame = self._goal_image() if callable(self._goal_image) else self._goal_image
            if frame is None:
                raise ValueError("the goal_image function returned None, not a uint8 frame (H, W, 3): if it "
                                 "renders an env, that env's render_mode must be \"rgb_array\"")
            _check_goal_image(frame)
            assert self.encoder is not None  # __init__ refuses a goal image without an encoder
            with torch.inference_mode():
                embedding = self.encoder.encode_images(frame[None])[0]
            _check_encoded(self.encoder, embedding, "goal-image embedding")
            self._goal_embedding = self._check_goal_embedding(embedding)
        return self._goal_embedding

    def _check_goal_embedding(self, embedding: Any) -> np.ndarray:
        goal = np.asarray(torch.as_tensor(embedding).detach().float().cpu(), dtype=np.float32).reshape(-1)
        if goal.size != self.dim:
            raise ValueError(f"goal embedding has size {goal.size}, the reward's embeddings {self.dim}")
        if not np.isfinite(goal).all():
            raise ValueError(f"goal embedding contains {nonfinite_kind(goal)}: pass a finite vector (D,)")
        return goal

    def describe(self) -> str:
        """The encoder (saying plainly whether it is pretrained), the instruction and ρ."""
        name = "no encoder (relabelling only)" if self.encoder is None else describe(self.encoder)
        return f"{name}; text {self.text!r}; rho {self.rho}"

    def __repr__(self) -> str:
        return f"VLMReward({self.describe()}, mode={self.reward_model.mode!r})"

    def __reduce__(self) -> tuple:
        # Never pickled (it holds the encoder): SB3 saves ``replay_buffer_kwargs``, so a reward passed there would
        # otherwise land in every model zip. It pickles to None; loaders re-attach the live one.
        return (_detached, ())

    # ----------------------------------------------------------------- reward
    def combine(self, task_rewards: np.ndarray, r_vlm: np.ndarray) -> np.ndarray:
        """``task + ρ·r_VLM`` (``ρ·r_VLM`` without the task reward), ``(N,)`` in the inputs' float dtype."""
        total = self.rho * np.asarray(r_vlm)
        return total + np.asarray(task_rewards) if self.include_task_reward else total

    def score(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embed and score a batch of frames in one forward pass.

        Args:
            frames: uint8 ``(N, H, W, 3)``.

        Returns:
            ``(embeddings float32 (N, D), r_vlm float32 (N,))`` as numpy arrays.
        """
        if self.encoder is None:
            raise RuntimeError("this VLMReward has no encoder (it only relabels stored embeddings)")
        check_frames(frames)
        with torch.inference_mode():
            embeddings = self.encoder.encode_images(frames)
            if not isinstance(embeddings, torch.Tensor):
                embeddings = torch.as_tensor(np.asarray(embeddings))
            if embeddings.shape != (frames.shape[0], self.dim):
                raise ValueError(f"the encoder returned embeddings of shape {tuple(embeddings.shape)}, expected "
                                 f"({frames.shape[0]}, {self.dim})")
            if not torch.isfinite(embeddings).all():  # one check on the batch; the details only on error
                values = embeddings.float().cpu().numpy()
                bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
                more = f" (and {len(bad) - 1} more env(s))" if len(bad) > 1 else ""
                raise _encoder_error(self.encoder, f"image embedding of env {bad[0]}'s frame{more}", values[bad[0]])
            r_vlm = self.reward_model.reward(embeddings)
        return embeddings.float().cpu().numpy(), r_vlm.float().cpu().numpy()

    def annotate(self, frames: np.ndarray, infos: Sequence[dict[str, Any]],
                 rewards: Sequence[SupportsFloat] | np.ndarray) -> np.ndarray:
        """Score a batch and write ``vlm_reward`` / ``vlm_embedding`` into each info.

        Args:
            frames: uint8 ``(N, H, W, 3)``, the frame after each env's step.
            infos: the N step infos (their ``task_reward`` is used, else ``rewards``).
            rewards: the envs' own rewards ``(N,)``.

        Returns:
            float64 ``(N,)``: ``task_reward + ρ·r_VLM`` (``ρ·r_VLM`` without the task reward).
        """
        embeddings, r_vlm = self.score(frames)
        task = np.array([float(info.get("task_reward", rewards[i])) for i, info in enumerate(infos)], np.float64)
        if not np.isfinite(task).all():
            i = int(np.flatnonzero(~np.isfinite(task))[0])
            key = "info['task_reward']" if "task_reward" in infos[i] else "reward (returned by step())"
            raise ValueError(f"env {i}'s {key} is {task[i]}, not a finite number: check the env's reward "
                             "(the VLM reward adds to it, and the replay buffer would store it)")
        for i, info in enumerate(infos):
            info["vlm_reward"] = float(r_vlm[i])
            info["vlm_embedding"] = embeddings[i]
        return self.combine(task, r_vlm.astype(np.float64))

    def relabel(self, embeddings: np.ndarray, task_rewards: np.ndarray) -> np.ndarray:
        """Rewards of stored transitions with the current heads.

        Args:
            embeddings: frozen frame embeddings ``(N, D)`` (any float dtype).
            task_rewards: ``(N,)``.

        Returns:
            float32 ``(N,)``.
        """
        emb = torch.as_tensor(np.asarray(embeddings)).to(self.device, torch.float32)
        r_vlm = self.reward_model.reward(emb).cpu().numpy()
        return self.combine(np.asarray(task_rewards, np.float32), r_vlm).astype(np.float32)
