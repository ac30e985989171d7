"""Evaluation as in the paper, as an SB3 callback.

:class:`PaperEvalCallback`: every ``eval_freq`` env steps, run the agent's *mean* action (``deterministic=True``;
for ``RelayPolicy`` that is the VLM agent) for ``n_episodes`` episodes on a separate env seeded with
``seed + 100`` — one episode for a fixed goal (success is 0 or 1 per seed), ten for random goals. Appends a row to
``evaluations.csv`` (step, success rate, mean task return, wall time) and logs ``eval/success_rate``.

Example:
    >>> cb = PaperEvalCallback(make_metaworld_env("reach", seed=100), eval_freq=10_000, n_episodes=1)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from furl_wrappers.validation import check_int

__all__ = ["evaluate_policy_success", "PaperEvalCallback"]


def evaluate_policy_success(model: Any, env: gym.Env, n_episodes: int, frames: Optional[list] = None
                            ) -> tuple[float, float]:
    """Success rate and mean task return of ``model.predict(obs, deterministic=True)`` over ``n_episodes``.

    An episode counts as successful if ``info["is_success"]`` (or ``"success"``) is true at any step. With
    ``frames`` (a list), every rendered frame of the episodes is appended to it.
    """
    successes, returns = [], []
    for _ in range(n_episodes):
        obs, _ = env.reset()
        done, success, total = False, False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(info.get("task_reward", reward))
            success = success or bool(info.get("is_success", info.get("success", False)))
            done = terminated or truncated
            if frames is not None:
                frames.append(env.render())
        successes.append(success)
        returns.append(total)
    return float(np.mean(successes)), float(np.mean(returns))


class PaperEvalCallback(BaseCallback):
    """Periodic evaluation with the paper's protocol (see the module docstring).

    Args:
        eval_env: a single (non-vector) env, seeded with ``seed + 100``.
        eval_freq: env steps between evaluations (also evaluated at the end of training).
        n_episodes: 1 for a fixed goal, 10 for random goals.
        log_path: where ``evaluations.csv`` is appended (``None``: no file).
    """

    def __init__(self, eval_env: gym.Env, eval_freq: int, n_episodes: int, log_path: Optional[str] = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        self.eval_env = eval_env
        self.eval_freq = check_int("eval_freq", eval_freq)
        self.n_episodes = check_int("n_episodes", n_episodes)
        self.log_path = None if log_path is None else Path(log_path)
        self.last_success: Optional[float] = None
        self.best_success: Optional[float] = None
        self._last_eval_step = -1
        self._start = time.time()

    def _init_callback(self) -> None:
        # continue the schedule after a resume
        steps = self.model.num_timesteps
        self._last_eval_step = steps - steps % self.eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_eval_step >= self.eval_freq:
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        if self._last_eval_step != self.num_timesteps:
            self.evaluate()

    def evaluate(self) -> float:
        """Run the evaluation now; returns the success rate."""
        success, ret = evaluate_policy_success(self.model, self.eval_env, self.n_episodes)
        self._last_eval_step = self.num_timesteps
        self.last_success = success
        self.best_success = success if self.best_success is None else max(self.best_success, success)
        self.logger.record("eval/success_rate", success)
        self.logger.record("eval/mean_task_return", ret)
        if self.log_path is not None:
            new = not self.log_path.exists()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", newline="") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(["step", "success_rate", "mean_task_return", "wall_time_s"])
                writer.writerow([self.num_timesteps, success, ret, round(time.time() - self._start, 2)])
        return success
