"""The bare Meta-World env of a task instance: object and goal positions drawn from a seed, as Meta-World's own
constructors draw them, with the observability and episode length asked for (the wrappers in
:mod:`furl_wrappers.envs` and the scripted episodes of :mod:`furl_wrappers.scripted` build on it).

Example:
    >>> env = build_metaworld("reach-v3", seed=0, observable=True, max_episode_steps=50)
    >>> env.observation_space.contains(env.reset()[0].astype(env.observation_space.dtype))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from furl_wrappers.rendering import import_mujoco

__all__ = ["build_metaworld"]


def build_metaworld(task: str, seed: int, observable: bool, max_episode_steps: int) -> Any:
    """Create the bare Meta-World env with its object/goal positions drawn from ``seed``.

    Replicates Meta-World's goal-hidden/goal-observable constructors (numpy's global generator seeded with
    ``seed`` for the first draw, then restored), without their fixed ``render_mode`` and size, so the
    positions for a seed are the same as ``gymnasium.make("Meta-World/goal_hidden", seed=seed)``'s.
    """
    import_mujoco()  # picks headless GL before Meta-World imports MuJoCo
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[task]()
    env._partially_observable = not observable
    if "sawyer_observation_space" in env.__dict__:
        del env.sawyer_observation_space  # cached property: recompute for the new observability
    # MuJoCo's env keeps the space it was built with (goal hidden, goal bounds [0, 0]): give it the one for its
    # observability, whose goal part is bounded by the task's goal_space (what step() clips observations to)
    env.observation_space = env.sawyer_observation_space
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        env._freeze_rand_vec = False
        env._set_task_called = True
        env.reset()
        env._freeze_rand_vec = True
    finally:
        np.random.set_state(state)
    env.seed(seed)
    env.max_path_length = max_episode_steps
    return env
