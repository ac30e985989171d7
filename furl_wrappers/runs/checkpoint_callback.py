"""ResumeCheckpointCallback: the model, its replay buffer and the step, as one consistent set, for exact resume.

Every ``save_freq`` env steps it writes a :class:`~furl_wrappers.runs.checkpoint_set.CheckpointSet` (model, replay
buffer, RNG states, how each env's episode started) into a run directory's checkpoint folder. It writes between
two steps, after SB3 stored the last step's transition and trained on it, at the first point where every env has
just started an episode, so a resumed run is the uninterrupted run (see :mod:`furl_wrappers.runs.checkpoint_set`).
An env that never lines up (episodes of different lengths in one vector env) gets a checkpoint anyway once
another ``save_freq`` steps have passed, marked inexact.

Example:
    >>> cb = ResumeCheckpointCallback("runs/furl/reach/seed0/checkpoint", save_freq=10_000)
    >>> cb.save_freq
    10000
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from furl_wrappers.runs.checkpoint_set import CheckpointSet
from furl_wrappers.runs.run_clock import RunClock
from furl_wrappers.validation import check_int

__all__ = ["ResumeCheckpointCallback"]


class ResumeCheckpointCallback(BaseCallback):
    """Every ``save_freq`` env steps (at the next episode start of all envs), write a checkpoint set to ``path``.

    Args:
        path: the checkpoint directory (a run directory's ``checkpoint/``).
        save_freq: env steps between checkpoints.
        clock: the run's clock, whose reading each checkpoint records (default: one started now).
    """

    def __init__(self, path: str | Path, save_freq: int, verbose: int = 0, clock: RunClock | None = None) -> None:
        super().__init__(verbose)
        self.clock = RunClock() if clock is None else clock
        self.checkpoints = CheckpointSet(path)
        self.path = self.checkpoints.path
        self.save_freq = check_int("save_freq", save_freq)
        self._last = 0
        self._episode_start = True

    def _init_callback(self) -> None:
        self._last = self.model.num_timesteps
        self._episode_start = True

    def _on_step(self) -> bool:
        dones = self.locals.get("dones")
        self._episode_start = dones is None or bool(np.all(dones))
        return True

    def _on_rollout_start(self) -> None:
        # between two steps: the last transition is stored and trained on (SB3 calls this before collecting more)
        due = self.model.num_timesteps - self._last
        if due >= self.save_freq and (self._episode_start or due >= 2 * self.save_freq):
            self.save()

    def _episode_starts(self) -> list[dict[str, Any]] | None:
        env = self.training_env
        if not self._episode_start or env is None or not env.has_attr("episode_start"):
            return None  # envs that cannot say how their episode started: the resume is inexact
        return list(env.env_method("episode_start"))

    def save(self) -> None:
        """Write the checkpoint set now."""
        self.checkpoints.write(self.model, episode_starts=self._episode_starts(), wall_time_s=self.clock.elapsed())
        self._last = self.model.num_timesteps
