"""Goal images: the frame at first success of Meta-World's scripted expert, cached on disk.

FuRL's stage-1 alignment (before the agent's first success) ranks frames by their distance to a goal image.
As in the paper, the goal image is the frame at the first success of a scripted-expert rollout on the same
task instance (same seed, so the same object and goal positions as ``make_metaworld_env(task, seed=seed)``).

The expert sees the goal (it runs on the goal-observable twin of the env); the frame is rendered exactly as
the env's ``render()`` would. Results are cached in ``$FURL_CACHE_DIR`` (default
``$XDG_CACHE_HOME/furl_wrappers`` or ``~/.cache/furl_wrappers``), keyed by every argument and the Meta-World
version, and written to a temp file and renamed so a crash never leaves a broken entry.

Example:
    >>> from furl_wrappers import goal_image
    >>> frame = goal_image("drawer-open", seed=0, image_size=64)
    >>> frame.shape, frame.dtype
    ((64, 64, 3), dtype('uint8'))
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from furl_wrappers._atomic import atomic_write
from furl_wrappers.rendering import RenderQuality, check_camera, check_image_size, check_render_quality
from furl_wrappers.scripted import run_scripted_episode, scripted_policy
from furl_wrappers.tasks import canonical_task
from furl_wrappers.validation import check_int

__all__ = ["GoalImageError", "GoalRollout", "cache_dir", "expert_rollout", "goal_image"]

_CACHE_FORMAT = 1


class GoalImageError(RuntimeError):
    """The scripted expert did not reach success, so there is no goal image."""


@dataclass(frozen=True)
class GoalRollout:
    """The result of a scripted-expert rollout.

    Attributes:
        frame: uint8 ``(image_size, image_size, 3)`` frame right after the first successful step.
        success_step: 1-based index of the env step at which ``info["success"]`` first became true.
        frames: with ``keep_frames``, every frame of the rollout ``(T, H, W, 3)`` (frame ``t`` after step
            ``t + 1``), else ``None``.
    """

    frame: np.ndarray
    success_step: int
    frames: np.ndarray | None = None


def cache_dir() -> Path:
    """The user cache directory of furl_wrappers (``$FURL_CACHE_DIR`` overrides it)."""
    if os.environ.get("FURL_CACHE_DIR"):
        return Path(os.environ["FURL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "furl_wrappers"


def expert_rollout(
    task: str,
    *,
    seed: int = 0,
    camera: str = "corner2",
    image_size: int = 224,
    render_quality: RenderQuality = "fast",
    max_steps: int = 500,
    keep_frames: bool = False,
    steps_after_success: int = 0,
) -> GoalRollout:
    """Run Meta-World's scripted expert on the task instance of ``seed`` until first success (no cache).

    With ``keep_frames`` every frame is kept (and rendered), and the rollout goes on for
    ``steps_after_success`` more steps.

    Raises:
        GoalImageError: if the expert does not succeed within ``max_steps``.
    """
    name = canonical_task(task)
    episode = run_scripted_episode(name, seed, scripted_policy(name), max_steps=max_steps, camera=camera,
                                   image_size=image_size, render_quality=render_quality,
                                   render="all" if keep_frames else "goal",
                                   stop_after_success=steps_after_success if keep_frames else 0)
    if episode.first_success > 0:
        goal_frame = episode.frames[episode.first_success - 1] if keep_frames else episode.frames[0]
        return GoalRollout(goal_frame, episode.first_success, episode.frames if keep_frames else None)
    raise GoalImageError(
        f"The scripted expert for {name!r} (seed {seed}) did not succeed within {max_steps} steps, so there is "
        "no goal image; try another seed, or run FuRL without the goal-image stage."
    )


def goal_image(
    task: str,
    *,
    seed: int = 0,
    camera: str = "corner2",
    image_size: int = 224,
    render_quality: RenderQuality = "fast",
    use_cache: bool = True,
    return_step: bool = False,
) -> np.ndarray | tuple[np.ndarray, int]:
    """The goal image of a task instance: the frame at the scripted expert's first success.

    Args:
        task: any Meta-World task name.
        seed: the task instance (as in ``make_metaworld_env(task, seed=seed)``).
        camera: camera name (``"corner2"`` is the paper's).
        image_size: side of the square frame.
        render_quality: ``"fast"`` or ``"full"``, matching the env's frames.
        use_cache: read and write the on-disk cache.
        return_step: also return the 1-based step of first success.

    Returns:
        uint8 ``(image_size, image_size, 3)``; with ``return_step``, ``(frame, success_step)``.

    Raises:
        GoalImageError: if the expert fails on this instance.
        ValueError: for bad arguments (unknown task lists close matches).
    """
    name = canonical_task(task)
    seed = check_int("seed", seed, 0, 2**32 - 1)
    check_camera(camera)
    image_size = check_image_size(image_size)
    check_render_quality(render_quality)
    import metaworld

    key = {
        "format": _CACHE_FORMAT,
        "task": name,
        "seed": seed,
        "camera": camera,
        "image_size": image_size,
        "render_quality": render_quality,
        "metaworld": getattr(metaworld, "__version__", "unknown"),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "goal_images" / f"{name}-seed{seed}-{camera}-{image_size}-{render_quality}-{digest}.npz"
    if use_cache and path.exists():
        try:
            with np.load(path) as cached:
                frame, step = cached["frame"], int(cached["success_step"])
            if frame.shape == (image_size, image_size, 3) and frame.dtype == np.uint8:
                return (frame, step) if return_step else frame
        except (OSError, ValueError, KeyError):
            pass  # unreadable entry: recompute and overwrite it
    rollout = expert_rollout(name, seed=seed, camera=camera, image_size=image_size, render_quality=render_quality)
    if use_cache:
        atomic_write(
            path,
            lambda handle: np.savez(
                handle, frame=rollout.frame, success_step=rollout.success_step, key=json.dumps(key)
            ),
        )
    return (rollout.frame, rollout.success_step) if return_step else rollout.frame
