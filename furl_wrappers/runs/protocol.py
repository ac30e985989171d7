"""The paper's evaluation protocol, as the reference code runs it: which instance, how many episodes, what counts.

- **Fixed goal** (Table 1): run seed ``s`` trains on task instance ``s`` (every env copy: SB3's ``seed + i`` only
  reseeds episodes) and is evaluated on that same instance, one episode (the policy's mean action is
  deterministic, and so is the instance).
- **Random goal** (Table 2): evaluation on an env seeded ``s + 100``, ten episodes.
- **Success** is ``info["success"]`` at the episode's **final step**. Meta-World's usual "at any step" is recorded
  beside it (``success_any_step``), never mixed up with it.

Example:
    >>> eval_seed(3, "fixed"), eval_seed(3, "random"), eval_episodes("fixed"), eval_episodes("random")
    (3, 103, 1, 10)
"""

from __future__ import annotations

from furl_wrappers.envs import check_goal

__all__ = ["RANDOM_GOAL_EVAL_OFFSET", "eval_seed", "eval_episodes"]

#: the evaluation env of a random-goal run ``s`` is seeded ``s + 100`` (the reference code's choice)
RANDOM_GOAL_EVAL_OFFSET = 100
_EPISODES = {"fixed": 1, "random": 10}


def eval_seed(seed: int, goal: str) -> int:
    """The evaluation env's instance seed for run seed ``seed``: ``seed`` (fixed goal), ``seed + 100`` (random)."""
    return int(seed) if check_goal(goal) == "fixed" else int(seed) + RANDOM_GOAL_EVAL_OFFSET


def eval_episodes(goal: str) -> int:
    """Episodes per evaluation: 1 for a fixed goal, 10 for random goals."""
    return _EPISODES[check_goal(goal)]
