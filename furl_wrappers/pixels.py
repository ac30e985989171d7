"""Pixel observations for Meta-World (paper §5.4): stacked small frames from the one render per step, action repeat.

The pixel setting of the paper follows DrQ (paper Table 5): 84×84×3 frames, a stack of 3, action repeat 2.
:func:`~furl_wrappers.envs.make_metaworld_env` builds it with ``observation="pixels"``; the two wrappers here
work on any env whose ``render()`` returns an RGB frame:

- :class:`ActionRepeat` repeats each action ``repeat`` times: rewards are summed (``info["task_reward"]`` and
  ``info["shaped_reward"]`` too), the step succeeded if any repeat did, and it stops early when the episode
  ends, so ``max_episode_steps`` still counts simulator steps (500 → 250 agent steps with ``repeat=2``);
- :class:`PixelObservation` renders **once** per reset and per step, at the env's own (VLM) size, keeps that
  frame for ``render()`` — what the VLM reward wrappers and videos read — and downsizes it to the policy's
  ``size``; the observation is the last ``frame_stack`` small frames, uint8, channel-first
  ``(3·frame_stack, size, size)`` (oldest first; a new episode repeats its first frame), SB3's image layout.

Example:
    >>> import furl_wrappers
    >>> env = furl_wrappers.make_metaworld_env("window-open", observation="pixels", image_size=64, pixel_size=32)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype, env.render().shape
    ((9, 32, 32), dtype('uint8'), (64, 64, 3))
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from furl_wrappers.validation import check_int

__all__ = ["OBSERVATIONS", "PIXEL_DEFAULTS", "ActionRepeat", "PixelObservation", "resize_frame"]

#: what ``make_metaworld_env(observation=...)`` takes
OBSERVATIONS: tuple[str, ...] = ("state", "pixels")
#: the paper's pixel setting (Table 5, after DrQ): policy frame side, frames stacked, action repeat
PIXEL_DEFAULTS: dict[str, int] = {"pixel_size": 84, "frame_stack": 3, "action_repeat": 2}


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """An RGB frame ``(H, W, 3)`` uint8 resized to ``(size, size, 3)`` (bilinear, antialiased when shrinking);
    returned as it is when it already has that size."""
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    from PIL import Image

    # Image.BILINEAR is set at runtime, so mypy misses it; Image.Resampling needs Pillow 9.1 (setup.py allows 9.0).
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))  # type: ignore[attr-defined]


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times (DrQ's action repeat; 2 in the paper's pixel runs).

    Returns the last repeat's observation and ``info`` with: reward summed over the repeats (``task_reward`` and
    ``shaped_reward`` too, when present), ``is_success``/``success`` true if any repeat succeeded, and
    ``action_repeats`` (how many ran: fewer when the episode ended on the way).

    Args:
        env: any env.
        repeat: simulator steps per agent step (≥ 1).

    Example:
        >>> import furl_wrappers
        >>> env = ActionRepeat(furl_wrappers.make_metaworld_env("reach", image_size=32, max_episode_steps=3), 2)
        >>> _ = env.reset(seed=0)
        >>> [env.step(env.action_space.sample())[4]["action_repeats"] for _ in range(2)]
        [2, 1]
    """

    def __init__(self, env: gym.Env, repeat: int) -> None:
        super().__init__(env)
        self.repeat = check_int("action_repeat", repeat, hint="2 in the paper's pixel setting, 1 for none")

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        total, success = 0.0, False
        sums: dict[str, float] = {}
        done_repeats = 0
        for _ in range(self.repeat):
            done_repeats += 1
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            success = success or bool(info.get("is_success", info.get("success", False)))
            for key in ("task_reward", "shaped_reward"):
                if key in info:
                    sums[key] = sums.get(key, 0.0) + float(info[key])
            if terminated or truncated:
                break
        info = {**info, **sums, "is_success": success, "action_repeats": done_repeats}
        if "success" in info:
            info["success"] = float(success)
        return obs, total, terminated, truncated, info


class PixelObservation(gym.Wrapper):
    """Observations made of the frame the env renders once per step (paper §5.4: DrQ's input).

    Each ``reset`` and ``step`` calls the wrapped env's ``render()`` exactly once; ``render()`` of this wrapper
    returns that frame (full size, for the VLM reward and videos) without rendering again. The observation is the
    last ``frame_stack`` frames downsized to ``size``: uint8 ``(3·frame_stack, size, size)``, oldest first.

    Args:
        env: an env whose ``render()`` returns uint8 ``(H, W, 3)`` (``render_mode="rgb_array"``).
        size: side of the policy's frames (84 in the paper).
        frame_stack: frames per observation (3 in the paper).

    Raises:
        ValueError: for a bad ``size``/``frame_stack`` or an env that does not render RGB frames.
    """

    def __init__(self, env: gym.Env, size: int = 84, frame_stack: int = 3) -> None:
        super().__init__(env)
        self.size = check_int("pixel_size", size, 8, 1024, hint="84 in the paper")
        self.frame_stack = check_int("frame_stack", frame_stack, 1, 16, hint="3 in the paper")
        if self.size <= 3 * self.frame_stack:  # else SB3 reads (3k, S, S) as channel-last and transposes it
            raise ValueError(f"pixel_size must exceed 3 * frame_stack = {3 * self.frame_stack} (the channels), got "
                             f"{self.size}")
        if getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(f"PixelObservation needs an env rendering RGB frames (render_mode='rgb_array'), got "
                             f"render_mode={getattr(env, 'render_mode', None)!r}")
        self.observation_space = spaces.Box(0, 255, (3 * self.frame_stack, self.size, self.size), np.uint8)
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)
        self._frame: np.ndarray | None = None

    def _capture(self) -> np.ndarray:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"PixelObservation: render() must return a uint8 (H, W, 3) frame, got "
                             f"{getattr(frame, 'shape', None)} {getattr(frame, 'dtype', type(frame).__name__)}")
        self._frame = frame
        return np.ascontiguousarray(resize_frame(frame, self.size).transpose(2, 0, 1))

    def _observation(self) -> np.ndarray:
        return np.concatenate(list(self._frames), axis=0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        small = self._capture()
        self._frames.clear()
        self._frames.extend([small] * self.frame_stack)
        return self._observation(), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(self._capture())
        return self._observation(), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The frame rendered at the last reset/step (rendered now only before the first reset)."""
        return cast("np.ndarray | None", self.env.render()) if self._frame is None else self._frame
