"""IndexedReplayBuffer: SB3's ``ReplayBuffer`` whose ``sample`` draws its (row, env) indices once, explicitly.

SB3's ``ReplayBuffer.sample`` draws the rows and ``_get_samples`` draws the env of each row inside, so a subclass
cannot know which transitions a batch holds without guessing SB3's draw. Like SB3's ``HerReplayBuffer``, this base
draws both itself (:meth:`sample_indices`) and builds the batch from them (:meth:`samples_at`): FuRL's buffers
relabel the very transitions drawn, and the relay's second agent trains on the same (row, env) pairs.

The draws come from numpy's global generator, rows first and then envs, as SB3's own (so a seeded run samples the
same batches as with SB3's buffer; the generator is seeded by SB3 and captured by checkpoints).

Example:
    >>> from gymnasium import spaces
    >>> box = spaces.Box(-1, 1, (3,))
    >>> buffer = IndexedReplayBuffer(10, box, box, device="cpu", n_envs=2)
    >>> for step in range(4):
    ...     buffer.add(np.full((2, 3), step), np.full((2, 3), step + 1), np.zeros((2, 3)), np.ones(2),
    ...                np.zeros(2), [{}, {}])
    >>> rows, envs = buffer.sample_indices(5)
    >>> bool((buffer.samples_at(rows, envs).observations[:, 0].numpy() == rows).all())
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

__all__ = ["IndexedReplayBuffer"]


class IndexedReplayBuffer(ReplayBuffer):
    """SB3 ``ReplayBuffer`` sampling through explicit ``(rows, envs)`` indices (arguments: SB3's)."""

    def row_indices(self, batch_size: int) -> np.ndarray:
        """Rows ``(B,)`` drawn uniformly from the stored ones, by SB3's rule (with ``optimize_memory_usage``, never
        the row about to be overwritten)."""
        if self.optimize_memory_usage and self.full:
            return (np.random.randint(1, self.buffer_size, size=batch_size) + self.pos) % self.buffer_size
        return np.random.randint(0, self.buffer_size if self.full else self.pos, size=batch_size)

    def sample_indices(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows (B,), envs (B,))`` of a uniform batch: rows by :meth:`row_indices`, then one env per row."""
        rows = self.row_indices(batch_size)
        return rows, np.random.randint(0, high=self.n_envs, size=(batch_size,))

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        return self.samples_at(*self.sample_indices(batch_size), env)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        # SB3's hook for callers that pick the rows themselves: the envs are drawn here, as SB3 does
        return self.samples_at(batch_inds, np.random.randint(0, high=self.n_envs, size=(len(batch_inds),)), env)

    def observations_at(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(observations, next_observations)`` of the given transitions, unnormalised (the storage's layout:
        SB3's here; a subclass that stores observations otherwise overrides this)."""
        if self.optimize_memory_usage:
            next_obs = self.observations[(batch_inds + 1) % self.buffer_size, env_indices, :]
        else:
            next_obs = self.next_observations[batch_inds, env_indices, :]
        return self.observations[batch_inds, env_indices, :], next_obs

    def samples_at(self, batch_inds: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None
                   ) -> ReplayBufferSamples:
        """The transitions at ``(batch_inds[i], env_indices[i])`` (each ``(B,)``), normalised as SB3 does."""
        obs, next_obs = self.observations_at(batch_inds, env_indices)
        data = (
            self._normalize_obs(obs, env),
            self.actions[batch_inds, env_indices, :],
            self._normalize_obs(next_obs, env),
            # time-limit ends are not terminal (SB3's handle_timeout_termination)
            (self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])).reshape(-1, 1),
            self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))

    def state_dict(self) -> dict[str, Any]:
        """State beside the per-row storage arrays (``(buffer_size, n_envs, ...)``, which a buffer file writes
        itself) and ``pos``/``full``: none here; subclasses add theirs (numpy arrays or JSON-able values)."""
        return {}

    def load_state_dict(self, state: Any) -> None:
        """Undo :meth:`state_dict` (``state``: a mapping; nothing to restore here)."""
