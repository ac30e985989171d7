"""VLMReplayBuffer: an SB3 replay buffer that relabels r_VLM with the current heads at every sample.

Per transition it stores the frozen image embedding of the frame after the step (``info["vlm_embedding"]`` from
:class:`~furl_wrappers.wrappers.FuzzyVLMRewardWrapper`), the task reward (``info["task_reward"]``), and — when the
VLM reward has a goal image — the L2 distance of that embedding to the goal image's. ``sample()`` returns SB3's
own samples with

    rewards = task_reward + ρ · r_VLM(embedding)     (r_VLM from the reward model's heads *now*)

(``ρ · r_VLM`` alone with ``include_task_reward=False``), normalised by ``VecNormalize`` like SB3's own buffer.
ρ and ``include_task_reward`` belong to the attached :class:`~furl_wrappers.VLMReward` (pass
``replay_buffer_kwargs={"vlm_reward": reward}`` or call :meth:`attach`; ``RelayPolicy`` and
``RewardAlignmentCallback`` attach it for you). :meth:`task_reward_view` is a second view of the same storage
whose ``sample()`` returns the task reward only (for the relay's task agent); with ``share_batch=True`` it
returns the very batch the main view sampled last, as the reference code trains both agents on one batch.

Embeddings are stored as float16 by default (half the memory of float32); the relabelled reward differs from the
float32 one by < 1e-3 (tested), against a task reward step of 1 and ρ = 0.05. Pass ``embedding_dtype="float32"``
to keep full precision.

Episodes are tracked per env (``n_envs > 1`` with interleaved ends works); when one ends, its frames are labelled
and go to an :class:`~furl_wrappers.alignment_store.AlignmentStore` (positive/negative rings that survive the RL
buffer's wrap-around; its capacity, the pos-pos window k and its sampling seed are this buffer's arguments).
Time-limit truncation is not a terminal transition (SB3's ``handle_timeout_termination``). The VLM reward is
never pickled: ``save_replay_buffer`` / ``load_replay_buffer`` round-trip, then re-attach.

Example:
    >>> from stable_baselines3 import SAC
    >>> import furl_wrappers
    >>> from furl_wrappers.vlm_buffer import VLMReplayBuffer
    >>> venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", env_kwargs={"image_size": 32})
    >>> model = SAC("MlpPolicy", venv, replay_buffer_class=VLMReplayBuffer,
    ...             replay_buffer_kwargs={"vlm_reward": venv.vlm_reward}, learning_starts=10, buffer_size=1000)
    >>> _ = model.learn(20)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from furl_wrappers._safe_files import CheckpointMismatchError, CorruptFileError
from furl_wrappers.alignment_store import AlignmentStore
from furl_wrappers.indexed_buffer import IndexedReplayBuffer
from furl_wrappers.validation import check_int
from furl_wrappers.vlm_reward import EmbeddingReward, nonfinite_kind

__all__ = ["VLMReplayBuffer", "TaskRewardView", "MAX_EMBEDDING_DIM"]

#: the widest embedding a saved buffer state may declare (CLIP ViT-L/14: 768, LIV: 1024)
MAX_EMBEDDING_DIM = 8192

_HINT = "wrap the env in furl_wrappers.FuzzyVLMRewardWrapper (or use furl_wrappers.make_vlm_vec_env)"


class VLMReplayBuffer(IndexedReplayBuffer):
    """SB3 ``ReplayBuffer`` with FuRL's reward relabelling and episode labelling.

    Args:
        buffer_size, observation_space, action_space, device, n_envs: as for SB3's ``ReplayBuffer``.
        optimize_memory_usage, handle_timeout_termination: as for SB3's ``ReplayBuffer``.
        vlm_reward: the :class:`~furl_wrappers.VLMReward` to relabel with (or :meth:`attach` it later).
        embedding_dim: D; inferred from the first ``add`` when ``None``.
        embedding_dtype: ``"float16"`` (default) or ``"float32"`` storage of the RL buffer's embeddings.
        alignment_buffer_size: frames per alignment ring (20,000).
        lag: window k of pos-pos pairs (10).
        seed: seeds the alignment store's sampling.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: torch.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        vlm_reward: EmbeddingReward | None = None,
        embedding_dim: int | None = None,
        embedding_dtype: str = "float16",
        alignment_buffer_size: int = 20_000,
        lag: int = 10,
        seed: int | None = None,
    ) -> None:
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage,
                         handle_timeout_termination)
        if embedding_dtype not in ("float16", "float32"):
            raise ValueError(f"embedding_dtype must be 'float16' or 'float32', got {embedding_dtype!r}")
        self.alignment_buffer_size = check_int("alignment_buffer_size", alignment_buffer_size, hint="20000")
        self.lag = check_int("lag", lag, hint="10 in the paper")
        self.embedding_dtype = np.dtype(embedding_dtype)
        self.seed = seed
        self.vlm_reward: EmbeddingReward | None = None
        self.embedding_dim: int | None = None
        # the last relabelled batch: (batch_inds, env_indices, SB3 samples), shared with the task-reward view
        self.last_batch: tuple[np.ndarray, np.ndarray, ReplayBufferSamples] | None = None
        self.batches_sampled = 0
        if embedding_dim is not None:
            self._allocate(int(embedding_dim))
        if vlm_reward is not None:
            self.attach(vlm_reward)

    # ------------------------------------------------------------------ storage
    def _allocate(self, dim: int) -> None:
        self.embedding_dim = dim
        self.embeddings = np.zeros((self.buffer_size, self.n_envs, dim), dtype=self.embedding_dtype)
        self.task_rewards = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.goal_distances = np.full((self.buffer_size, self.n_envs), np.nan, dtype=np.float32)
        store_seed, frame_seed = np.random.SeedSequence(self.seed).spawn(2)
        self.alignment = AlignmentStore(dim, self.alignment_buffer_size, self.lag, store_seed)
        self._frame_rng = np.random.default_rng(frame_seed)  # draws stage-1 frames from the whole buffer
        self._episodes: list[list[tuple[np.ndarray, bool, float]]] = [[] for _ in range(self.n_envs)]

    def _widen_embeddings(self) -> None:
        self.embedding_dtype = np.dtype(np.float32)
        if self.embedding_dim is not None:
            self.embeddings = self.embeddings.astype(np.float32)

    def attach(self, vlm_reward: EmbeddingReward) -> VLMReplayBuffer:
        """Attach the VLM reward to relabel with (it is not pickled with the buffer: re-attach after loading)."""
        if not isinstance(vlm_reward, EmbeddingReward):
            raise TypeError(f"attach takes the VLM reward (a furl_wrappers.VLMReward, which holds rho and the "
                            f"heads), got {type(vlm_reward).__name__}")
        if self.embedding_dim is not None and int(vlm_reward.dim) != self.embedding_dim:
            raise ValueError(f"VLM reward dim {vlm_reward.dim} != the buffer's embeddings ({self.embedding_dim})")
        self.vlm_reward = vlm_reward
        return self

    @property
    def reward_model(self) -> Any:
        """The attached VLM reward's reward model (``None`` when nothing is attached)."""
        return getattr(self.vlm_reward, "reward_model", None)

    def sample_goal_frames(self, batch_size: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(embeddings float32 (B, D), goal distances (B,))`` drawn uniformly from every stored frame (all envs,
        the unfinished episodes included), as the reference code draws its stage-1 batches; ``None`` when the
        buffer is empty or a drawn frame has no goal distance (stored before a goal image was set)."""
        if self.embedding_dim is None or self.size() == 0:
            return None
        inds = self._frame_rng.integers(0, self.size(), size=batch_size)
        envs = self._frame_rng.integers(0, self.n_envs, size=batch_size)
        distances = self.goal_distances[inds, envs]
        if np.isnan(distances).any():
            return None
        return self.embeddings[inds, envs].astype(np.float32), distances

    @property
    def positive_count(self) -> int:
        """Positive frames labelled so far (the relay's switch reads this)."""
        return 0 if self.embedding_dim is None else self.alignment.positive_count

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        embeddings, task_rewards, successes = self._read_infos(infos)
        for name, value in (("obs", obs), ("next_obs", next_obs), ("reward", reward)):  # what SB3 stores
            value = np.asarray(value)
            if name != "reward" and isinstance(self.observation_space, spaces.Box) and value.shape != (
                    self.n_envs, *self.obs_shape):  # refused before anything is stored or labelled
                raise ValueError(f"VLMReplayBuffer.add: {name} must have shape {(self.n_envs, *self.obs_shape)}, "
                                 f"got {value.shape}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                env = int(np.flatnonzero(~np.isfinite(value.reshape(self.n_envs, -1)).all(axis=1))[0])
                raise ValueError(f"VLMReplayBuffer.add: {name} of env {env} contains "
                                 f"{nonfinite_kind(value.reshape(self.n_envs, -1)[env])}; check the env (and any "
                                 "wrapper or normalisation): it would turn the policy's weights NaN")
        if self.embedding_dim is None:
            self._allocate(embeddings.shape[1])
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"info['vlm_embedding'] has size {embeddings.shape[1]}, expected {self.embedding_dim}")
        if self.embedding_dtype == np.float16:
            peak = float(np.abs(embeddings).max())
            if peak > np.finfo(np.float16).max:  # float16 would store inf, and every relabelled reward be NaN
                warnings.warn(f"VLMReplayBuffer: embedding storage switched from float16 to float32 because "
                              f"embedding values reached {peak:.4g} (float16 holds at most 65504); pass "
                              f"embedding_dtype='float32' to start with it", RuntimeWarning, stacklevel=2)
                self._widen_embeddings()
        goal = None if self.vlm_reward is None else self.vlm_reward.goal_embedding
        if goal is not None:  # float64: huge finite embeddings must not overflow the norm
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
                distances = np.linalg.norm(embeddings.astype(np.float64) - goal, axis=1).astype(np.float32)
            if not np.isfinite(distances).all():
                env = int(np.flatnonzero(~np.isfinite(distances))[0])
                raise ValueError(f"VLMReplayBuffer.add: the goal distance of env {env}'s embedding is "
                                 f"{distances[env]} (beyond float32): the embeddings or the goal embedding are "
                                 "far too large; check the encoder")
        else:
            distances = np.full(self.n_envs, np.nan, np.float32)
        self.embeddings[self.pos] = embeddings
        self.task_rewards[self.pos] = task_rewards
        self.goal_distances[self.pos] = distances
        for env, (emb, ok, dist, finished) in enumerate(zip(embeddings, successes, distances, np.asarray(done))):
            episode = self._episodes[env]
            episode.append((emb, bool(ok), float(dist)))
            if finished:  # terminated or truncated: the episode is over either way
                self.alignment.add_episode(
                    np.stack([e for e, _, _ in episode]),
                    np.array([s for _, s, _ in episode], dtype=bool),
                    np.array([d for _, _, d in episode], dtype=np.float32),
                )
                episode.clear()
        super().add(obs, next_obs, action, reward, done, infos)

    def _read_infos(self, infos: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(infos) != self.n_envs:
            raise ValueError(f"expected {self.n_envs} infos, got {len(infos)}")
        rows, task_rewards, successes = [], [], []
        for i, info in enumerate(infos):
            if "vlm_embedding" not in info:
                raise KeyError(f"info of env {i} has no 'vlm_embedding': VLMReplayBuffer needs it; {_HINT}")
            rows.append(np.asarray(info["vlm_embedding"], dtype=np.float32).reshape(-1))
            success = bool(info.get("is_success", info.get("success", False)))
            successes.append(success)
            task_rewards.append(float(info.get("task_reward", float(success) - 1.0)))
        if len({r.size for r in rows}) != 1:
            raise ValueError(f"info['vlm_embedding'] sizes differ across envs: {[r.size for r in rows]}")
        embeddings = np.stack(rows)
        task = np.asarray(task_rewards, np.float32)
        for key, values in (("vlm_embedding", embeddings), ("task_reward", task)):
            if not np.isfinite(values).all():  # one check per array; the env index only on the error path

                env = int(np.flatnonzero(~np.isfinite(values.reshape(len(infos), -1)).all(axis=1))[0])
                raise ValueError(f"VLMReplayBuffer.add: info[{key!r}] of env {env} contains "
                                 f"{nonfinite_kind(values[env])} (a value beyond float32 is inf too); check "
                                 f"{'the encoder' if key == 'vlm_embedding' else 'the env'}: it cannot be stored")
        return embeddings, task, np.asarray(successes, bool)

    # ----------------------------------------------------------------- sampling
    def stored_samples(self, batch_inds: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None
                       ) -> ReplayBufferSamples:
        """The storage's samples at ``(batch_inds, env_indices)`` with the rewards as collected (not relabelled)."""
        return super().samples_at(batch_inds, env_indices, env)  # SB3's layout, or the pixel frames'

    def with_rewards(self, samples: ReplayBufferSamples, rewards: np.ndarray,
                     env: VecNormalize | None = None) -> ReplayBufferSamples:
        """``samples`` with their rewards replaced by ``rewards`` ``(B,)``, normalised as SB3 does."""
        return samples._replace(rewards=self.to_torch(self._normalize_reward(
            np.asarray(rewards, np.float32).reshape(-1, 1), env)))

    def samples_at(self, batch_inds: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None
                   ) -> ReplayBufferSamples:
        """The transitions at ``(batch_inds, env_indices)`` with rewards relabelled by the current heads; noted as
        :attr:`last_batch` for the task-reward view."""
        if self.vlm_reward is None:
            raise RuntimeError(
                "VLMReplayBuffer has no VLM reward: pass replay_buffer_kwargs={'vlm_reward': ...} or call "
                "buffer.attach(vlm_reward) (RelayPolicy and RewardAlignmentCallback do it; needed again after "
                "load_replay_buffer)"
            )
        samples = self.stored_samples(batch_inds, env_indices, env)
        self.last_batch = (batch_inds, env_indices, samples)
        self.batches_sampled += 1
        rewards = self.vlm_reward.relabel(self.embeddings[batch_inds, env_indices],
                                          self.task_rewards[batch_inds, env_indices])
        if not np.isfinite(rewards).all():  # never hand the critic NaN targets
            bad = int((~np.isfinite(rewards)).sum())
            raise ValueError(f"VLMReplayBuffer: {bad} of {len(rewards)} relabelled rewards are NaN or inf: the "
                               "reward model's heads are not finite (check the alignment callback's losses)")
        return self.with_rewards(samples, rewards, env)

    def task_reward_view(self, share_batch: bool = True) -> TaskRewardView:
        """A view of this storage whose ``sample()`` returns task rewards only (see :class:`TaskRewardView`)."""
        return TaskRewardView(self, share_batch)

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """FuRL's state beside the per-row arrays (embeddings, task rewards and goal distances are per row, written
        with SB3's by a buffer file): the embedding layout, the batch count and, once embeddings exist, the
        stage-1 frame generator, each env's unfinished episode (``episodes/...``) and the alignment store
        (``alignment/...``). Values: numpy arrays or JSON-able values."""
        state = super().state_dict()
        state.update(embedding_dim=self.embedding_dim, embedding_dtype=self.embedding_dtype.str,
                     batches_sampled=self.batches_sampled)
        if self.embedding_dim is None:
            return state
        frames = [f for episode in self._episodes for f in episode]  # (embedding, success, distance)
        state.update({
            "frame_rng": self._frame_rng.bit_generator.state,
            "episode_lengths": [len(episode) for episode in self._episodes],
            "episodes/embeddings": (np.stack([e for e, _, _ in frames]) if frames else
                                    np.zeros((0, self.embedding_dim), np.float32)),
            "episodes/success": np.array([s for _, s, _ in frames], dtype=bool),
            "episodes/distance": np.array([d for _, _, d in frames], dtype=np.float64),
        })
        state.update({f"alignment/{k}": v for k, v in self.alignment.state_dict().items()})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Undo :meth:`state_dict` on a buffer built with the same settings, allocating the embeddings when this
        buffer has stored none yet (JSON values are read before any array).

        Raises:
            CheckpointMismatchError: the state is of a buffer with another embedding width, dtype, alignment
                capacity or window.
            CorruptFileError: a malformed value.
        """
        super().load_state_dict(state)
        dim, dtype = state["embedding_dim"], state["embedding_dtype"]
        if dtype not in ("<f2", "<f4"):
            raise CorruptFileError(f"embedding_dtype {dtype!r} is not float16 ('<f2') or float32 ('<f4')")
        if (self.embedding_dtype.str, dtype) == ("<f2", "<f4"):
            self._widen_embeddings()  # float16 storage switched to float32 during the run
        elif self.embedding_dtype.str != dtype:
            raise CheckpointMismatchError(f"embedding dtype is {dtype!r} in the saved state, "
                                          f"{self.embedding_dtype.str!r} here")
        self.batches_sampled, self.last_batch = int(state["batches_sampled"]), None
        if dim is None:
            return
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_EMBEDDING_DIM:
            raise CorruptFileError(f"embedding_dim {dim!r} is not an integer in [1, {MAX_EMBEDDING_DIM}]")
        for name, saved, have in (("embedding width", dim, self.embedding_dim or dim),
                                  ("alignment_buffer_size", state["alignment/capacity"], self.alignment_buffer_size),
                                  ("lag", state["alignment/lag"], self.lag)):
            if saved != have:
                raise CheckpointMismatchError(f"{name} is {saved!r} in the saved state, {have!r} here")
        if self.embedding_dim is None:
            self._allocate(dim)
        self.alignment.load_state_dict({k[len("alignment/"):]: state[k] for k in state if k.startswith("alignment/")})
        self._frame_rng.bit_generator.state = state["frame_rng"]
        self._episodes = self._unfinished_episodes(state)

    def _unfinished_episodes(self, state: Mapping[str, Any]) -> list[list[tuple[np.ndarray, bool, float]]]:
        lengths = state["episode_lengths"]
        emb, ok, dist = state["episodes/embeddings"], state["episodes/success"], state["episodes/distance"]
        if (not isinstance(lengths, list) or len(lengths) != self.n_envs
                or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in lengths)
                or not len(emb) == len(ok) == len(dist) == sum(lengths) or emb.shape[1:] != (self.embedding_dim,)):
            raise CorruptFileError(f"the unfinished episodes do not fit {self.n_envs} envs of {self.embedding_dim}-d "
                                   f"embeddings (lengths {str(lengths)[:60]})")
        ends = np.cumsum([0, *lengths])
        return [[(emb[i], bool(ok[i]), float(dist[i])) for i in range(a, b)] for a, b in zip(ends[:-1], ends[1:])]

    # ------------------------------------------------------------------- pickle
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["vlm_reward"] = None  # never pickle the encoder and heads: re-attach after loading
        state["last_batch"] = None
        return state


class TaskRewardView:
    """Samples of a :class:`VLMReplayBuffer` with the task reward only (for the relay's task agent).

    Assign it as that agent's ``replay_buffer``: SB3's ``SAC.train`` only calls ``sample``. With
    ``share_batch=True`` each ``sample`` returns the transitions of the main buffer's most recent batch (once),
    so both agents learn from one batch as in the reference code; otherwise, or when there is none, it draws its
    own.

    Example:
        >>> view = buffer.task_reward_view()  # doctest: +SKIP
        >>> task_agent.replay_buffer = view   # doctest: +SKIP
    """

    def __init__(self, buffer: VLMReplayBuffer, share_batch: bool = True) -> None:
        self.buffer = buffer
        self.share_batch = share_batch
        self._consumed: int | None = None

    def __getattr__(self, name: str) -> Any:  # size(), pos, full, device, ... of the shared storage
        return getattr(self.buffer, name)

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        buffer = self.buffer
        last = buffer.last_batch
        fresh = self._consumed != buffer.batches_sampled
        if self.share_batch and last is not None and len(last[0]) == batch_size and fresh:
            self._consumed = buffer.batches_sampled
            batch_inds, env_indices, samples = last
        else:
            batch_inds, env_indices = buffer.sample_indices(batch_size)
            samples = buffer.stored_samples(batch_inds, env_indices, env)
        return buffer.with_rewards(samples, buffer.task_rewards[batch_inds, env_indices], env)
