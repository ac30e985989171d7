"""Bounded stores of labelled frame embeddings for FuRL's reward alignment.

When an episode ends its frames are labelled (paper §3.3.1, Eqn. 4, as the reference code does it):

- failed episode (no success step) → every frame **negative**;
- successful episode → the frames from the start through the first success, plus the unbroken run of success
  frames right after it, are **positive** (frames after that run are dropped); a positive frame whose index in
  the episode is ≥ k can be the later frame of a pos-pos pair.

Positives and negatives each live in a ring of ``capacity`` frames (20,000 by default), separate from the RL
replay buffer, so they survive its wrap-around. A positive's lag-k partner is found by its slot: an episode's
positives are written contiguously, so frame ``i − k`` sits ``k`` slots earlier (modulo the ring capacity) — and
the pair is used only if that slot still holds the same episode's frame ``i − k`` (the reference code took the
modulo over the wrong size and could pair unrelated frames).

Example:
    >>> import numpy as np
    >>> store = AlignmentStore(dim=4, capacity=100, lag=2)
    >>> store.add_episode(np.ones((5, 4), np.float32), np.array([0, 0, 1, 1, 0], bool))
    'positive'
    >>> store.positive_count, store.num_negative
    (4, 0)
"""

from __future__ import annotations

import numpy as np

__all__ = ["label_episode", "AlignmentStore"]


def label_episode(success: np.ndarray) -> tuple[bool, int]:
    """Label one finished episode from its per-step success flags.

    Args:
        success: bool ``(T,)``, ``success[t]`` for the frame after step ``t``.

    Returns:
        ``(successful, n_positive)``: for a successful episode, frames ``0 .. n_positive − 1`` are positive
        (start through first success, plus the unbroken success run after it); for a failed one
        ``n_positive == 0`` and every frame is negative.
    """
    success = np.asarray(success, dtype=bool)
    hits = np.flatnonzero(success)
    if hits.size == 0:
        return False, 0
    end = int(hits[0])
    while end + 1 < success.size and success[end + 1]:
        end += 1
    return True, end + 1


class _Ring:
    def __init__(self, capacity: int, dim: int) -> None:
        self.capacity = capacity
        self.embeddings = np.zeros((capacity, dim), dtype=np.float32)
        self.goal_distances = np.full(capacity, np.nan, dtype=np.float32)
        self.episode_ids = np.full(capacity, -1, dtype=np.int64)
        self.step_indices = np.full(capacity, -1, dtype=np.int64)
        self.pos = 0
        self.size = 0

    def write(self, embeddings: np.ndarray, distances: np.ndarray, episode_id: int) -> np.ndarray:
        n, offset = len(embeddings), 0
        if n > self.capacity:  # only the last `capacity` frames of a huge episode fit
            offset, n = n - self.capacity, self.capacity
            embeddings, distances = embeddings[offset:], distances[offset:]
        slots = (self.pos + np.arange(n)) % self.capacity
        self.embeddings[slots] = embeddings
        self.goal_distances[slots] = distances
        self.episode_ids[slots] = episode_id
        self.step_indices[slots] = offset + np.arange(n)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        return slots


class AlignmentStore:
    """Positive and negative frame embeddings for the alignment losses.

    Args:
        dim: embedding size D.
        capacity: frames per ring (positives and negatives each), 20,000 by default.
        lag: window k of the pos-pos pairs (10).
        seed: seeds the sampling generator.
    """

    def __init__(self, dim: int, capacity: int = 20_000, lag: int = 10,
                 seed: int | np.random.SeedSequence | None = None) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"alignment buffer capacity must be a positive integer, got {capacity!r}")
        if not isinstance(lag, int) or lag < 1:
            raise ValueError(f"lag (window k) must be a positive integer, got {lag!r}")
        self.dim, self.capacity, self.lag = int(dim), capacity, lag
        self.positives = _Ring(capacity, self.dim)
        self.negatives = _Ring(capacity, self.dim)
        self.positive_count = 0  # positives ever labelled (monotone: the relay switch reads it)
        self.successful_episodes = 0
        self.failed_episodes = 0
        self._next_episode = 0
        self._valid = np.zeros(capacity, dtype=bool)  # positive slots usable as the later frame of a pair
        self.rng = np.random.default_rng(seed)

    @property
    def num_positive(self) -> int:
        """Positive frames held now."""
        return self.positives.size

    @property
    def num_negative(self) -> int:
        """Negative frames held now."""
        return self.negatives.size

    def add_episode(
        self, embeddings: np.ndarray, success: np.ndarray, goal_distances: np.ndarray | None = None
    ) -> str:
        """Label a finished episode and store its frames.

        Args:
            embeddings: float ``(T, D)``, the frame after each step.
            success: bool ``(T,)``.
            goal_distances: float ``(T,)`` L2 distances of the embeddings to the goal image's (or ``None``).

        Returns:
            ``"positive"`` or ``"negative"``.
        """
        embeddings = np.asarray(embeddings, dtype=np.float32)
        distances = (np.full(len(embeddings), np.nan, np.float32) if goal_distances is None
                     else np.asarray(goal_distances, dtype=np.float32))
        successful, n_pos = label_episode(success)
        episode = self._next_episode
        self._next_episode += 1
        if successful:
            slots = self.positives.write(embeddings[:n_pos], distances[:n_pos], episode)
            self._valid[slots] = self.positives.step_indices[slots] >= self.lag
            self.positive_count += n_pos
            self.successful_episodes += 1
            return "positive"
        self.negatives.write(embeddings, distances, episode)
        self.failed_episodes += 1
        return "negative"

    def _lag_slots(self, slots: np.ndarray) -> np.ndarray:
        return (slots - self.lag) % self.capacity

    def _valid_slots(self) -> np.ndarray:
        ring = self.positives
        candidates = np.flatnonzero(self._valid[: ring.size] if ring.size < self.capacity else self._valid)
        if candidates.size == 0:
            return candidates
        lag = self._lag_slots(candidates)
        same = (ring.episode_ids[lag] == ring.episode_ids[candidates]) & (
            ring.step_indices[lag] == ring.step_indices[candidates] - self.lag
        )
        return candidates[same]

    def can_sample_triples(self) -> bool:
        """Whether a (positive, negative, lag-k positive) batch can be drawn (stage 2)."""
        return self.num_negative > 0 and self._valid_slots().size > 0

    def sample_triples(self, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(pos, neg, lag)`` embeddings, each float32 ``(B, D)``; ``None`` if not possible yet.

        ``pos[i]`` is frame ``t ≥ k`` of a successful episode and ``lag[i]`` frame ``t − k`` of the same
        episode; ``neg[i]`` is a frame of a failed episode.
        """
        valid = self._valid_slots()
        if valid.size == 0 or self.num_negative == 0:
            return None
        pos = self.rng.choice(valid, size=batch_size)
        neg = self.rng.integers(0, self.num_negative, size=batch_size)
        ring = self.positives
        return ring.embeddings[pos], self.negatives.embeddings[neg], ring.embeddings[self._lag_slots(pos)]

    def sample_negatives(self, batch_size: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(embeddings (B, D), goal_distances (B,))`` of failed-episode frames with a goal distance."""
        if self.num_negative == 0:
            return None
        idx = self.rng.integers(0, self.num_negative, size=batch_size)
        distances = self.negatives.goal_distances[idx]
        if np.isnan(distances).any():
            return None  # frames stored before a goal image was set
        return self.negatives.embeddings[idx], distances

    def state_dict(self) -> dict:
        """Everything needed to restore the store (numpy arrays and ints; no pickle of objects needed)."""
        out = {"dim": self.dim, "capacity": self.capacity, "lag": self.lag, "positive_count": self.positive_count,
               "successful_episodes": self.successful_episodes, "failed_episodes": self.failed_episodes,
               "next_episode": self._next_episode, "valid": self._valid.copy(), "rng": self.rng.bit_generator.state}
        for name, ring in (("pos", self.positives), ("neg", self.negatives)):
            for field in ("embeddings", "goal_distances", "episode_ids", "step_indices"):
                out[f"{name}_{field}"] = getattr(ring, field).copy()
            out[f"{name}_pos"], out[f"{name}_size"] = ring.pos, ring.size
        return out

    def load_state_dict(self, state: dict) -> None:
        if (state["dim"], state["capacity"], state["lag"]) != (self.dim, self.capacity, self.lag):
            raise ValueError(
                "alignment store mismatch: saved (dim, capacity, lag) = "
                f"{(state['dim'], state['capacity'], state['lag'])}, "
                f"this store has {(self.dim, self.capacity, self.lag)}"
            )
        self.positive_count = int(state["positive_count"])
        self.successful_episodes = int(state["successful_episodes"])
        self.failed_episodes = int(state["failed_episodes"])
        self._next_episode = int(state["next_episode"])
        self._valid = np.array(state["valid"], dtype=bool)
        self.rng.bit_generator.state = state["rng"]
        for name, ring in (("pos", self.positives), ("neg", self.negatives)):
            for field in ("embeddings", "goal_distances", "episode_ids", "step_indices"):
                setattr(ring, field, np.array(state[f"{name}_{field}"]))
            ring.pos, ring.size = int(state[f"{name}_pos"]), int(state[f"{name}_size"])
