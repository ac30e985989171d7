"""RelaySchedule: which of the relay's two agents acts in each env, step by step (the paper's relay RL).

Per env, a relay length T is drawn from ``lengths`` at each episode start; the acting agent switches every T steps
and the starting agent alternates between episodes (env i starts with the VLM agent for even i). The schedule's
own generator draws the lengths and the Gaussian noise on the task agent's actions, in the order the steps ask
for them, so a seeded run (and a resumed one, through :meth:`state_dict`) draws the same.

Example:
    >>> schedule = RelaySchedule(n_envs=2, lengths=[2], seed=0)
    >>> acting = []
    >>> for _ in range(4):
    ...     acting.append(schedule.task_agent_acting().tolist())
    ...     schedule.advance(dones=np.zeros(2, dtype=bool))
    >>> acting
    [[False, True], [False, True], [True, False], [True, False]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RelaySchedule"]


class RelaySchedule:
    """The relay's per-env turn-taking.

    Args:
        n_envs: number of envs.
        lengths: relay lengths to draw from at each episode start ({50, 100, 150, 200} in the paper).
        seed: seeds the schedule's generator (lengths and action noise).
        active: relay on (``False``: the VLM agent acts everywhere, for good).
    """

    def __init__(self, n_envs: int, lengths: Sequence[int], seed: int | None, active: bool = True) -> None:
        self.n_envs, self.lengths, self.active = int(n_envs), list(lengths), bool(active)
        self.rng = np.random.default_rng(seed)
        self.ep_step = np.zeros(self.n_envs, dtype=np.int64)
        self.start_with_task_agent = np.arange(self.n_envs) % 2 == 1
        self.relay_length = self.rng.choice(self.lengths, size=self.n_envs)
        self.vlm_steps = 0
        self.task_agent_steps = 0

    def task_agent_acting(self) -> np.ndarray:
        """Bool ``(n_envs,)``: the envs where the task agent acts at this step (all False once relay is off)."""
        if not self.active:
            return np.zeros(self.n_envs, dtype=bool)
        turn = self.ep_step // self.relay_length
        return (turn + self.start_with_task_agent.astype(np.int64)) % 2 == 1

    def count(self, task_agent: np.ndarray) -> None:
        """Count one step per env, by who acted (``task_agent``: bool ``(n_envs,)``)."""
        self.task_agent_steps += int(task_agent.sum())
        self.vlm_steps += int((~task_agent).sum())

    def stop(self) -> None:
        """Relay off, for good (the VLM agent acts everywhere from now on)."""
        self.active = False

    def noise(self, std: float, shape: tuple[int, ...]) -> np.ndarray:
        """N(0, ``std``) noise for the task agent's (scaled) actions, from the schedule's generator."""
        return self.rng.normal(0.0, std, shape)

    def advance(self, dones: np.ndarray) -> None:
        """One step on (``dones``: ``(n_envs,)``): an env whose episode ended starts the next with the other agent
        and a new relay length."""
        self.ep_step += 1
        for i in np.flatnonzero(dones):
            self.ep_step[i] = 0
            self.start_with_task_agent[i] = not self.start_with_task_agent[i]
            self.relay_length[i] = self.rng.choice(self.lengths)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state: on/off, per env the step within the episode, the starting agent and the relay length,
        the step counts and the generator."""
        return {"active": self.active, "ep_step": self.ep_step.tolist(),
                "start_with_task_agent": self.start_with_task_agent.tolist(),
                "relay_length": self.relay_length.tolist(), "vlm_steps": self.vlm_steps,
                "task_agent_steps": self.task_agent_steps, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Undo :meth:`state_dict` (the per-env part only for the same env count: otherwise every env starts
        afresh).

        Raises:
            ValueError: a malformed state, in one line.
        """
        try:
            per_env = [np.array(state[k], dtype=dtype) for k, dtype in
                       (("ep_step", np.int64), ("start_with_task_agent", bool), ("relay_length", np.int64))]
            if len({a.shape for a in per_env}) != 1 or per_env[0].ndim != 1:
                raise ValueError("per-env lists of different lengths")
            if len(per_env[0]) == self.n_envs:
                self.ep_step, self.start_with_task_agent, self.relay_length = per_env
            self.active = bool(state["active"])
            self.vlm_steps, self.task_agent_steps = int(state["vlm_steps"]), int(state["task_agent_steps"])
            self.rng.bit_generator.state = state["rng"]
        except (KeyError, IndexError, TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"the relay state is malformed ({type(err).__name__}: {str(err)[:80]})") from None
