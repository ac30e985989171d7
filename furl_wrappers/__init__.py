"""furl_wrappers: FuRL (VLMs as fuzzy rewards, ICML 2024) for Stable-Baselines3 users.

Importing the package registers the Gymnasium ids ``furl/<task>-v3`` and ``furl/<task>-v3-random-goal`` for
all 50 Meta-World tasks, and picks headless EGL rendering when there is no display (before MuJoCo is
imported). Heavy modules (MuJoCo, Meta-World, torch) are imported only when used.

Example:
    >>> import gymnasium as gym
    >>> import furl_wrappers
    >>> env = gym.make("furl/drawer-open-v3", image_size=64)
    >>> _ = env.reset(seed=0)
"""
from __future__ import annotations

from furl_wrappers.rendering import configure_headless_gl as _configure_headless_gl

_configure_headless_gl()

from furl_wrappers._version import __version__  # noqa: E402
from furl_wrappers.envs import (  # noqa: E402
    GOAL_SETTINGS,
    MetaWorldGoal,
    SparseTaskReward,
    TaskInstance,
    as_furl_env,
    make_metaworld_env,
)
from furl_wrappers.goal_images import GoalImageError, expert_rollout, goal_image  # noqa: E402
from furl_wrappers.registration import env_id, register_envs  # noqa: E402
from furl_wrappers.rendering import (  # noqa: E402
    CAMERAS,
    FrameRenderer,
    OffscreenRenderWrapper,
    RenderingUnavailableError,
)
from furl_wrappers.tasks import (  # noqa: E402
    ALL_TASKS,
    INSTRUCTIONS,
    MT10_TASKS,
    UnknownTaskError,
    canonical_task,
    instruction,
)

register_envs()

# torch/transformers-backed parts load on first use, so `import furl_wrappers` (and rl-zoo's
# `--gym-packages furl_wrappers`) stays fast.
_LAZY = {
    "FuzzyVLMRewardWrapper": "furl_wrappers.wrappers",
    "VecFuzzyVLMReward": "furl_wrappers.wrappers",
    "FrameInInfo": "furl_wrappers.wrappers",
    "make_vlm_vec_env": "furl_wrappers.wrappers",
    "vlm_reward_of": "furl_wrappers.wrappers",
    "VLMReward": "furl_wrappers.vlm_reward",
    "RewardModel": "furl_wrappers.reward_model",
    "make_encoder": "furl_wrappers.encoders",
    "VLMReplayBuffer": "furl_wrappers.vlm_buffer",
    "RewardAlignmentCallback": "furl_wrappers.callbacks",
    "RelayPolicy": "furl_wrappers.relay",
    "RelayTQC": "furl_wrappers.backbones",
    "RelayCrossQ": "furl_wrappers.backbones",
    "RelayDrQ": "furl_wrappers.backbones",
    "DrQ": "furl_wrappers.drq",
    "PixelReplayBuffer": "furl_wrappers.pixel_buffer",
    "VLMPixelReplayBuffer": "furl_wrappers.pixel_buffer",
    "PixelObservation": "furl_wrappers.pixels",
    "ActionRepeat": "furl_wrappers.pixels",
    "load_model": "furl_wrappers.serialization",
    "save_model": "furl_wrappers.serialization",
    "UnsafeFileError": "furl_wrappers.serialization",
    "CorruptFileError": "furl_wrappers.serialization",
    "RunLockedError": "furl_wrappers.runs.run_lock",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'furl_wrappers' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    *_LAZY,
    "__version__",
    "ALL_TASKS",
    "MT10_TASKS",
    "INSTRUCTIONS",
    "CAMERAS",
    "GOAL_SETTINGS",
    "UnknownTaskError",
    "RenderingUnavailableError",
    "GoalImageError",
    "canonical_task",
    "instruction",
    "make_metaworld_env",
    "as_furl_env",
    "TaskInstance",
    "env_id",
    "register_envs",
    "SparseTaskReward",
    "MetaWorldGoal",
    "OffscreenRenderWrapper",
    "FrameRenderer",
    "goal_image",
    "expert_rollout",
]
