"""VLMReplayBuffer: an SB3 replay buffer that relabels r_VLM with the current heads at every sample.

Per transition it stores the frozen image embedding of the frame after the step (``info["vlm_embedding"]`` from
:class:`~furl_wrappers.wrappers.FuzzyVLMRewardWrapper`), the task reward (``info["task_reward"]``), and — when a
goal image is set — the L2 distance of that embedding to the goal image's. ``sample()`` returns

    rewards = task_reward + ρ · r_VLM(embedding)     (r_VLM from the reward model's heads *now*)

(``ρ · r_VLM`` alone with ``include_task_reward=False``), normalised by ``VecNormalize`` like SB3's own buffer.
:meth:`task_reward_view` is a second view of the same storage whose ``sample()`` returns the task reward only
(for the relay's plain SAC agent); with ``share_batch=True`` it returns the very batch the main view sampled
last, as the reference code trains both agents on one batch.

Embeddings are stored as float16 by default (half the memory of float32: 1 KB per transition for CLIP-B/32); the
relabelled reward differs from the float32 one by < 1e-3 (tested), against a task reward step of 1 and
ρ = 0.05. Pass ``embedding_dtype="float32"`` to keep full precision.

Episodes are tracked per env (``n_envs > 1`` with interleaved ends works); when one ends, its frames are labelled
and go to an :class:`~furl_wrappers.alignment_store.AlignmentStore` (positive/negative rings that survive the RL
buffer's wrap-around). Time-limit truncation is not a terminal transition (SB3's ``handle_timeout_termination``).
The reward model is attached with :meth:`attach` and never pickled: ``save_replay_buffer`` /
``load_replay_buffer`` round-trip, then re-attach (``RewardAlignmentCallback`` does it).

Example:
    >>> from stable_baselines3 import SAC
    >>> import furl_wrappers
    >>> from furl_wrappers.buffers import VLMReplayBuffer
    >>> venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", env_kwargs={"image_size": 32})
    >>> model = SAC("MlpPolicy", venv, replay_buffer_class=VLMReplayBuffer, replay_buffer_kwargs={"rho": 0.05},
    ...             learning_starts=10, buffer_size=1000)
    >>> _ = model.replay_buffer.attach(venv.reward_model)
    >>> _ = model.learn(20)
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from furl_wrappers.alignment_store import AlignmentStore

__all__ = ["VLMReplayBuffer", "TaskRewardView"]

_HINT = "wrap the env in furl_wrappers.FuzzyVLMRewardWrapper (or use furl_wrappers.make_vlm_vec_env)"


class VLMReplayBuffer(ReplayBuffer):
    """SB3 ``ReplayBuffer`` with FuRL's reward relabelling and episode labelling.

    Args:
        buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage,
            handle_timeout_termination: as for SB3's ``ReplayBuffer``.
        rho: weight ρ of r_VLM (0.05).
        include_task_reward: add the task reward (``False``: ρ·r_VLM only, VLM-RMs).
        embedding_dim: D; inferred from the first ``add`` when ``None``.
        embedding_dtype: ``"float16"`` (default) or ``"float32"`` storage of the RL buffer's embeddings.
        alignment_buffer_size: frames per alignment ring (20,000).
        lag: window k of pos-pos pairs (10).
        seed: seeds alignment sampling.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: Union[torch.device, str] = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        rho: float = 0.05,
        include_task_reward: bool = True,
        embedding_dim: Optional[int] = None,
        embedding_dtype: str = "float16",
        alignment_buffer_size: int = 20_000,
        lag: int = 10,
        seed: Optional[int] = None,
    ) -> None:
        super().__init__(buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage,
                         handle_timeout_termination)
        if not np.isfinite(rho) or rho < 0:
            raise ValueError(f"rho must be a finite number >= 0 (0.05 in the paper), got {rho!r}")
        if embedding_dtype not in ("float16", "float32"):
            raise ValueError(f"embedding_dtype must be 'float16' or 'float32', got {embedding_dtype!r}")
        if not isinstance(alignment_buffer_size, int) or alignment_buffer_size < 1:
            raise ValueError(f"alignment_buffer_size must be a positive integer, got {alignment_buffer_size!r}")
        if not isinstance(lag, int) or lag < 1:
            raise ValueError(f"lag must be a positive integer, got {lag!r}")
        self.rho = float(rho)
        self.include_task_reward = bool(include_task_reward)
        self.embedding_dtype = np.dtype(embedding_dtype)
        self.alignment_buffer_size = alignment_buffer_size
        self.lag = lag
        self.seed = seed
        self.reward_model: Any = None
        self.goal_embedding: Optional[np.ndarray] = None
        self.embedding_dim: Optional[int] = None
        self.last_batch_inds: Optional[tuple[np.ndarray, np.ndarray]] = None
        self.batches_sampled = 0
        if embedding_dim is not None:
            self._allocate(int(embedding_dim))

    # ------------------------------------------------------------------ storage
    def _allocate(self, dim: int) -> None:
        self.embedding_dim = dim
        self.embeddings = np.zeros((self.buffer_size, self.n_envs, dim), dtype=self.embedding_dtype)
        self.task_rewards = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.goal_distances = np.full((self.buffer_size, self.n_envs), np.nan, dtype=np.float32)
        self.alignment = AlignmentStore(dim, self.alignment_buffer_size, self.lag, self.seed)
        self._episodes: list[list[tuple[np.ndarray, bool, float]]] = [[] for _ in range(self.n_envs)]

    def attach(self, reward_model: Any) -> "VLMReplayBuffer":
        """Attach the shared reward model used to relabel (not pickled with the buffer)."""
        if self.embedding_dim is not None and int(reward_model.dim) != self.embedding_dim:
            raise ValueError(f"reward model dim {reward_model.dim} != the buffer's embeddings ({self.embedding_dim})")
        self.reward_model = reward_model
        return self

    def set_goal_embedding(self, goal_embedding: Any) -> None:
        """Set Φ_I(goal image), ``(D,)``; later frames get their L2 distance to it (for stage-1 alignment)."""
        goal = np.asarray(torch.as_tensor(goal_embedding).detach().cpu(), dtype=np.float32).reshape(-1)
        if not np.isfinite(goal).all():
            raise ValueError("goal embedding contains NaN or inf")
        if self.embedding_dim is not None and goal.size != self.embedding_dim:
            raise ValueError(f"goal embedding has size {goal.size}, the buffer's embeddings {self.embedding_dim}")
        self.goal_embedding = goal

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
        if self.embedding_dim is None:
            self._allocate(embeddings.shape[1])
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(f"info['vlm_embedding'] has size {embeddings.shape[1]}, expected {self.embedding_dim}")
        distances = (np.linalg.norm(embeddings - self.goal_embedding, axis=1) if self.goal_embedding is not None
                     else np.full(self.n_envs, np.nan, np.float32))
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
        if not np.isfinite(embeddings).all():
            raise ValueError("info['vlm_embedding'] contains NaN or inf")
        return embeddings, np.asarray(task_rewards, np.float32), np.asarray(successes, bool)

    # ----------------------------------------------------------------- sampling
    def sample(self, batch_size: int, env: Optional[VecNormalize] = None) -> ReplayBufferSamples:
        return super().sample(batch_size, env=env)

    def _vlm_rewards(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> torch.Tensor:
        if self.reward_model is None:
            raise RuntimeError(
                "VLMReplayBuffer has no reward model: call buffer.attach(reward_model) (RewardAlignmentCallback "
                "does it at training start; needed again after load_replay_buffer)"
            )
        emb = torch.as_tensor(self.embeddings[batch_inds, env_indices]).to(self.reward_model.device)
        return self.reward_model.reward(emb.float())

    def _get_samples(self, batch_inds: np.ndarray, env: Optional[VecNormalize] = None) -> ReplayBufferSamples:
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        self.last_batch_inds = (batch_inds, env_indices)
        self.batches_sampled += 1
        task = self.task_rewards[batch_inds, env_indices]
        r_vlm = self._vlm_rewards(batch_inds, env_indices).cpu().numpy()
        rewards = self.rho * r_vlm + (task if self.include_task_reward else 0.0)
        return self._assemble(batch_inds, env_indices, rewards.astype(np.float32), env)

    def _assemble(self, batch_inds: np.ndarray, env_indices: np.ndarray, rewards: np.ndarray,
                  env: Optional[VecNormalize]) -> ReplayBufferSamples:
        if self.optimize_memory_usage:
            next_obs = self.observations[(batch_inds + 1) % self.buffer_size, env_indices, :]
        else:
            next_obs = self.next_observations[batch_inds, env_indices, :]
        data = (
            self._normalize_obs(self.observations[batch_inds, env_indices, :], env),
            self.actions[batch_inds, env_indices, :],
            self._normalize_obs(next_obs, env),
            (self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])).reshape(-1, 1),
            self._normalize_reward(rewards.reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))

    def task_reward_view(self, share_batch: bool = True) -> "TaskRewardView":
        """A view of this storage whose ``sample()`` returns task rewards only (see :class:`TaskRewardView`)."""
        return TaskRewardView(self, share_batch)

    # ------------------------------------------------------------------- pickle
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["reward_model"] = None  # never pickle the torch model: re-attach after loading
        return state


class TaskRewardView:
    """Samples of a :class:`VLMReplayBuffer` with the task reward only (for the relay's plain SAC agent).

    Assign it as that agent's ``replay_buffer``: SB3's ``SAC.train`` only calls ``sample``. With
    ``share_batch=True`` each ``sample`` returns the transitions of the main buffer's most recent batch (once),
    so both agents learn from one batch as in the reference code; otherwise, or when there is none, it draws its
    own.

    Example:
        >>> view = buffer.task_reward_view()  # doctest: +SKIP
        >>> sac_agent.replay_buffer = view    # doctest: +SKIP
    """

    def __init__(self, buffer: VLMReplayBuffer, share_batch: bool = True) -> None:
        self.buffer = buffer
        self.share_batch = share_batch
        self._consumed: Optional[int] = None

    def __getattr__(self, name: str) -> Any:  # size(), pos, full, device, ... of the shared storage
        return getattr(self.buffer, name)

    def sample(self, batch_size: int, env: Optional[VecNormalize] = None) -> ReplayBufferSamples:
        last = self.buffer.last_batch_inds
        fresh = self._consumed != self.buffer.batches_sampled
        if self.share_batch and last is not None and len(last[0]) == batch_size and fresh:
            self._consumed = self.buffer.batches_sampled
            batch_inds, env_indices = last
        else:
            upper = self.buffer.buffer_size if self.buffer.full else self.buffer.pos
            batch_inds = np.random.randint(0, upper, size=batch_size)
            env_indices = np.random.randint(0, high=self.buffer.n_envs, size=(batch_size,))
        rewards = self.buffer.task_rewards[batch_inds, env_indices]
        return self.buffer._assemble(batch_inds, env_indices, rewards.astype(np.float32), env)
