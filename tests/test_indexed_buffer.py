"""furl_wrappers.indexed_buffer: explicit (row, env) indices, the same draws and batches as SB3's ReplayBuffer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from furl_wrappers.indexed_buffer import IndexedReplayBuffer

BOX = spaces.Box(-1, 1, (3,), np.float32)


def _fill(buffer: ReplayBuffer, steps: int) -> None:
    rng = np.random.default_rng(0)
    n = buffer.n_envs
    for t in range(steps):
        buffer.add(rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), rng.uniform(-1, 1, (n, 3)),
                   rng.normal(size=n), np.array([t % 5 == 4] * n, np.float32),
                   [{"TimeLimit.truncated": t % 10 == 9} for _ in range(n)])


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("steps", [7, 33])  # before and after the wrap-around
def test_batches_equal_sb3s_for_the_same_seed(optimize: bool, steps: int) -> None:
    ours = IndexedReplayBuffer(40, BOX, BOX, device="cpu", n_envs=2, optimize_memory_usage=optimize,
                               handle_timeout_termination=not optimize)
    theirs = ReplayBuffer(40, BOX, BOX, device="cpu", n_envs=2, optimize_memory_usage=optimize,
                          handle_timeout_termination=not optimize)
    _fill(ours, steps)
    _fill(theirs, steps)
    np.random.seed(5)
    a = ours.sample(64)
    np.random.seed(5)
    b = theirs.sample(64)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_samples_at_returns_the_indexed_transitions() -> None:
    buffer = IndexedReplayBuffer(20, BOX, BOX, device="cpu", n_envs=2)
    _fill(buffer, 6)
    rows, envs = np.array([0, 5, 3]), np.array([1, 0, 1])
    batch = buffer.samples_at(rows, envs)
    np.testing.assert_array_equal(batch.observations.numpy(), buffer.observations[rows, envs])
    np.testing.assert_array_equal(batch.rewards.numpy()[:, 0], buffer.rewards[rows, envs])
    rows, envs = buffer.sample_indices(500)
    assert rows.min() >= 0 and rows.max() < 6 and set(envs.tolist()) == {0, 1}
