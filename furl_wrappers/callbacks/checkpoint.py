"""ResumeCheckpointCallback: the model and its replay buffer, refreshed every ``save_freq`` env steps, for resume.

Writes into a run directory's checkpoint folder (names from :class:`~furl_wrappers.run_dir.RunDir`): the replay
buffer first, then the model, then ``meta.json`` with the step (what ``furl sweep`` reads), each file through
:func:`~furl_wrappers._atomic.atomic_write`, so an interrupted run resumes from the last complete checkpoint.

Example:
    >>> cb = ResumeCheckpointCallback("runs/furl/reach/seed0/checkpoint", save_freq=10_000)
    >>> cb.save_freq
    10000
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Union

from stable_baselines3.common.callbacks import BaseCallback

from furl_wrappers._atomic import atomic_write, atomic_write_text
from furl_wrappers.run_dir import RunDir
from furl_wrappers.validation import check_int

__all__ = ["ResumeCheckpointCallback"]


class ResumeCheckpointCallback(BaseCallback):
    """Every ``save_freq`` env steps, write the model, its replay buffer and the step into ``path``.

    Args:
        path: the checkpoint directory (a run directory's ``checkpoint/``).
        save_freq: env steps between checkpoints.
    """

    def __init__(self, path: Union[str, Path], save_freq: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.path = Path(path)
        self.save_freq = check_int("save_freq", save_freq)
        self._last = 0

    def _init_callback(self) -> None:
        self._last = self.model.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.save_freq:
            self.save()
        return True

    def save(self) -> None:
        """Write the checkpoint now."""
        from stable_baselines3.common.save_util import save_to_pkl

        # the buffer first: a model checkpoint never points past the buffer it needs
        atomic_write(self.path / RunDir.CHECKPOINT_BUFFER, lambda handle: save_to_pkl(handle, self.model.replay_buffer))
        atomic_write(self.path / RunDir.CHECKPOINT_MODEL, self.model.save)
        atomic_write_text(self.path / RunDir.CHECKPOINT_META,
                          json.dumps({"num_timesteps": int(self.num_timesteps), "time": time.time()}))
        self._last = self.num_timesteps
