"""The Gymnasium ids of the 50 Meta-World tasks in the paper's setting, and the names runs use for them.

``import furl_wrappers`` calls :func:`register_envs`: ``furl/<task>-v3`` (fixed goal) and
``furl/<task>-v3-random-goal`` make :func:`furl_wrappers.envs.make_metaworld_env` environments.

Example:
    >>> env_id("drawer-open", "random"), run_name("drawer-open-v3", "random")
    ('furl/drawer-open-v3-random-goal', 'drawer-open-random-goal')
"""

from __future__ import annotations

import gymnasium as gym

from furl_wrappers.envs import GOAL_SETTINGS, GoalSetting, check_goal
from furl_wrappers.tasks import ALL_TASKS, canonical_task, short_task

__all__ = ["RANDOM_GOAL_SUFFIX", "env_id", "run_name", "register_envs"]

#: what a random-goal id and run name end with
RANDOM_GOAL_SUFFIX = "-random-goal"


def env_id(task: str, goal: GoalSetting = "fixed") -> str:
    """The registered Gymnasium id: ``env_id("drawer-open") == "furl/drawer-open-v3"``."""
    check_goal(goal)
    return f"furl/{canonical_task(task)}" + (RANDOM_GOAL_SUFFIX if goal == "random" else "")


def run_name(task: str, goal: GoalSetting = "fixed") -> str:
    """The task's name in run directories and reports: ``"drawer-open"``, ``"drawer-open-random-goal"``."""
    check_goal(goal)
    return short_task(task) + (RANDOM_GOAL_SUFFIX if goal == "random" else "")


def register_envs() -> list[str]:
    """Register ``furl/<task>-v3`` (fixed goal) and ``furl/<task>-v3-random-goal`` for all 50 tasks.

    Idempotent. Keyword arguments of :func:`make_metaworld_env` pass through ``gymnasium.make``.

    Returns:
        The registered ids.
    """
    ids = []
    for task in ALL_TASKS:
        for goal in GOAL_SETTINGS:
            eid = env_id(task, goal)
            if eid not in gym.registry:
                gym.register(
                    id=eid,
                    entry_point="furl_wrappers.envs:make_metaworld_env",
                    kwargs={"task": short_task(task), "goal": goal},
                    # a hidden goal is three zeros, bounded by [0, 0]: correct, but Gymnasium's passive checker
                    # warns about equal bounds on every make, so it is skipped for fixed goals only
                    disable_env_checker=goal == "fixed",
                )
            ids.append(eid)
    return ids
