"""Replay buffers for stacked-frame pixel observations that store each frame once.

SB3's ``ReplayBuffer`` keeps every observation and next observation whole: with a stack of 3 frames that is six
copies of each 84×84×3 frame, 127 KB per transition, 25 GB for the paper's 2e5 transitions. A transition's next
observation shares all frames but its newest with the observation, and consecutive transitions share the rest,
so :class:`PixelReplayBuffer` keeps per transition only the newest frame of the next observation (uint8) and
its step within the episode; an episode's first frame is kept once beside it. Stacks are put together again at
sampling, exactly as the env made them (a new episode repeats its first frame). A new episode is recognised by the
previous transition's ``done`` or, when the env was reset without one (a new ``learn()``, a loaded model), by an
observation whose newest frame is not the previous transition's. Per transition and env:
``3·H·W`` bytes of frame + SB3's action, reward, done and timeout + 4 bytes of step (21,200 bytes at 84²
with 4 actions), plus one frame per episode.

:class:`VLMPixelReplayBuffer` is FuRL's :class:`~furl_wrappers.vlm_buffer.VLMReplayBuffer` (relabelling, episode
labelling, task-reward view) over this storage: the two compose by inheritance, nothing is copied.

Observations must be uint8 ``(3·k, H, W)`` (``k`` RGB frames, oldest first, channel-first: SB3's image layout and
:class:`~furl_wrappers.pixels.PixelObservation`'s).

Example:
    >>> from gymnasium import spaces
    >>> buffer = PixelReplayBuffer(1000, spaces.Box(0, 255, (9, 84, 84), np.uint8), spaces.Box(-1, 1, (4,)),
    ...                            device="cpu")
    >>> buffer.frame_stack, buffer.bytes_per_transition
    (3, 21200)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer

from furl_wrappers._safe_files import CorruptFileError
from furl_wrappers.indexed_buffer import IndexedReplayBuffer
from furl_wrappers.vlm_buffer import VLMReplayBuffer

__all__ = ["PixelReplayBuffer", "VLMPixelReplayBuffer", "check_pixel_space"]

_CHANNELS = 3  # RGB frames


def check_pixel_space(space: spaces.Space, who: str) -> tuple[int, int, int]:
    """``(k, H, W)`` of a stacked-frame space uint8 ``(3·k, H, W)``, else a ``ValueError`` naming the space."""
    shape: Any = getattr(space, "shape", None)
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8 or len(shape) != 3 or shape[0] % _CHANNELS:
        raise ValueError(f"{who} needs uint8 observations of shape (3*k, H, W) (k stacked RGB frames, channel-first, "
                         f"e.g. make_metaworld_env(..., observation='pixels')), got {space}")
    return shape[0] // _CHANNELS, shape[1], shape[2]


class PixelReplayBuffer(IndexedReplayBuffer):
    """SB3 ``ReplayBuffer`` for stacked-frame pixel observations, each frame stored once (see the module).

    Args:
        buffer_size, observation_space, action_space, device, n_envs, handle_timeout_termination: as for SB3's
            ``ReplayBuffer`` (observations: uint8 ``(3·k, H, W)``).
        optimize_memory_usage: must be False: frames are stored once already.
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
    ) -> None:
        self.frame_stack, height, width = check_pixel_space(observation_space, type(self).__name__)
        if optimize_memory_usage:
            raise ValueError(f"{type(self).__name__} stores each frame once already: optimize_memory_usage must be "
                             "False")
        # SB3's ReplayBuffer.__init__ would allocate whole stacked observations: set up its fields here instead
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        rows = (self.buffer_size, self.n_envs)
        self.frames = np.zeros((*rows, _CHANNELS, height, width), dtype=np.uint8)  # newest frame of next_obs
        self.episode_steps = np.zeros(rows, dtype=np.int32)  # the transition's step within its episode
        self.actions = np.zeros((*rows, self.action_dim), dtype=self._maybe_cast_dtype(action_space.dtype))
        self.rewards = np.zeros(rows, dtype=np.float32)
        self.dones = np.zeros(rows, dtype=np.float32)
        self.timeouts = np.zeros(rows, dtype=np.float32)
        # an episode's first frame, keyed by (row, env) of its first transition; dropped when that row is rewritten
        self.first_frames: dict[tuple[int, int], np.ndarray] = {}
        self._next_step = np.zeros(self.n_envs, dtype=np.int32)  # step of each env's next transition

    def reset(self) -> None:
        super().reset()
        self.first_frames = {}
        self._next_step = np.zeros(self.n_envs, dtype=np.int32)

    @property
    def bytes_per_transition(self) -> int:
        """Bytes stored per transition and env (one frame, action, reward, done, timeout, step), not counting the
        one frame per episode."""
        per_row: list[np.ndarray] = [self.frames, self.episode_steps, self.actions, self.rewards, self.dones,
                                     self.timeouts]
        return int(sum(a.nbytes for a in per_row) // (self.buffer_size * self.n_envs))

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        expected = (self.n_envs, *self.obs_shape)
        if obs.shape != expected or next_obs.shape != expected:
            raise ValueError(f"{type(self).__name__}.add: obs/next_obs must have shape {expected}, got {obs.shape} "
                             f"and {next_obs.shape}")
        if self.pos > 0 or self.full:  # an env reset without a done (a new learn(), a load): a new episode
            # one frame per env, not a rebuilt stack: this runs every step
            newest = self.frames[(self.pos - 1) % self.buffer_size]
            continuing = (obs[:, -_CHANNELS:] == newest).reshape(self.n_envs, -1).all(axis=1)
            self._next_step = np.where(continuing, self._next_step, 0).astype(np.int32)
        for env in range(self.n_envs):
            key = (self.pos, env)
            if self._next_step[env] == 0:  # the episode's first transition: keep its first frame
                self.first_frames[key] = obs[env, -_CHANNELS:].copy()
            else:
                self.first_frames.pop(key, None)  # the row's previous episode start is overwritten
        self.frames[self.pos] = next_obs[:, -_CHANNELS:]
        self.episode_steps[self.pos] = self._next_step
        self.actions[self.pos] = np.asarray(action).reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = np.asarray(reward)
        self.dones[self.pos] = np.asarray(done)
        if self.handle_timeout_termination:
            self.timeouts[self.pos] = np.array([info.get("TimeLimit.truncated", False) for info in infos])
        self._next_step = np.where(np.asarray(done, dtype=bool), 0, self._next_step + 1).astype(np.int32)
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full, self.pos = True, 0

    def row_indices(self, batch_size: int) -> np.ndarray:
        """Uniform rows whose frame stacks are complete: once the buffer has wrapped, the ``frame_stack`` oldest
        rows are skipped (their stacks reach into rows already rewritten)."""
        if not self.full:
            return np.random.randint(0, self.pos, size=batch_size)
        span = self.buffer_size - self.frame_stack
        if span <= 0:
            raise ValueError(f"buffer_size {self.buffer_size} must exceed frame_stack {self.frame_stack}")
        return (np.random.randint(0, span, size=batch_size) + self.pos + self.frame_stack) % self.buffer_size

    def stacks(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(observations, next_observations)`` uint8 ``(B, 3·k, H, W)`` of the given transitions."""
        k, size = self.frame_stack, self.buffer_size
        steps = self.episode_steps[batch_inds, env_indices].astype(np.int64)
        offsets = np.arange(k + 1)  # frames j = t-k+1 .. t+1 of the episode; j ≥ 1 is in row b - k + offset
        rows = (batch_inds[:, None] - k + offsets[None, :]) % size
        frames = self.frames[rows, env_indices[:, None]]  # (B, k+1, 3, H, W)
        for i in np.flatnonzero(steps < k):  # stacks reaching back to the episode's first frame
            start = ((int(batch_inds[i]) - int(steps[i])) % size, int(env_indices[i]))
            if start not in self.first_frames:  # rows claimed (full, pos) but never written by add()
                raise ValueError(f"{type(self).__name__}: row {int(batch_inds[i])} of env {start[1]} was never "
                                 f"written (no episode start frame at row {start[0]}), yet the buffer claims it "
                                 f"(full={self.full}, pos={self.pos}): only add() or loading a saved buffer may "
                                 "mark rows as filled")
            frames[i, : k - steps[i]] = self.first_frames[start]
        shape = (len(batch_inds), k * _CHANNELS, *frames.shape[-2:])
        return frames[:, :k].reshape(shape), frames[:, 1:].reshape(shape)

    def observations_at(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stacks of the given transitions, put together again (see :meth:`stacks`)."""
        return self.stacks(np.asarray(batch_inds), np.asarray(env_indices))

    def state_dict(self) -> dict[str, Any]:
        """Beside the per-row frames and steps: each episode's first frame (``first_keys`` ``(E, 2)`` of (row, env),
        ``first_frames`` uint8 ``(E, 3, H, W)``) and each env's next step (``next_step`` ``(n_envs,)``)."""
        keys = sorted(self.first_frames)
        return {**super().state_dict(),
                "first_keys": np.array(keys, dtype=np.int64).reshape(-1, 2),
                "first_frames": (np.stack([self.first_frames[k] for k in keys]) if keys else
                                 np.zeros((0, *self.frames.shape[2:]), np.uint8)),
                "next_step": self._next_step.copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Undo :meth:`state_dict`.

        Raises:
            CorruptFileError: keys outside the buffer, frames of another size, or a step count per env that does
                not fit.
        """
        super().load_state_dict(state)
        keys, frames, steps = state["first_keys"], state["first_frames"], state["next_step"]
        inside = keys.ndim == 2 and keys.shape[1] == 2 and (
            len(keys) == 0 or bool((keys >= 0).all() and (keys.max(axis=0) < (self.buffer_size, self.n_envs)).all()))
        if (not inside or len(keys) != len(frames) or frames.shape[1:] != self.frames.shape[2:]
                or frames.dtype != np.uint8 or steps.shape != (self.n_envs,)):
            raise CorruptFileError(f"the episode first frames or steps do not fit this {type(self).__name__} "
                                   f"({len(keys)} keys, frames {frames.shape}, steps {steps.shape})")
        self.first_frames = {(int(r), int(e)): frame for (r, e), frame in zip(keys, frames)}
        self._next_step = steps.astype(np.int32)


class VLMPixelReplayBuffer(VLMReplayBuffer, PixelReplayBuffer):
    """FuRL's :class:`~furl_wrappers.vlm_buffer.VLMReplayBuffer` (relabelling with the current heads, episode labelling,
    the alignment store, the task-reward view) over :class:`PixelReplayBuffer`'s frame storage. Arguments: those of
    ``VLMReplayBuffer``; observations uint8 ``(3·k, H, W)``."""
