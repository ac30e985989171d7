"""Evaluation as in the paper (:mod:`furl_wrappers.runs.protocol`): the SB3 callback of a run, and `furl evaluate`.

:class:`PaperEvalCallback`: every ``eval_freq`` env steps, run the agent's *mean* action (``deterministic=True``;
for ``RelayPolicy`` that is the VLM agent) for ``n_episodes`` episodes on the evaluation env (the training
instance for a fixed goal, ``seed + 100`` for random goals). An episode succeeds when ``info["success"]`` holds at
its **final step** (the reference code's criterion); success at any step is recorded beside it. Appends a row to
``evaluations.csv`` (step, success, success_any_step, mean task return, wall time) and logs
``eval/success_rate`` (final step) and ``eval/success_rate_any_step``.

Example:
    >>> cb = PaperEvalCallback(make_metaworld_env("reach", seed=0), eval_freq=10_000, n_episodes=1)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from furl_wrappers._atomic import atomic_write
from furl_wrappers._safe_files import CorruptFileError, open_regular
from furl_wrappers.envs import GoalSetting
from furl_wrappers.registration import env_id
from furl_wrappers.runs.protocol import eval_episodes, eval_seed
from furl_wrappers.runs.run_clock import RunClock
from furl_wrappers.runs.run_dir import RunDir, read_evaluation_rows
from furl_wrappers.runs.zoo_config import algo_class
from furl_wrappers.serialization import load_model
from furl_wrappers.validation import check_int

__all__ = ["EvalResult", "evaluate_policy_success", "PaperEvalCallback", "EVALUATION_COLUMNS", "make_eval_env",
           "evaluate_run"]

#: the columns of ``evaluations.csv``
EVALUATION_COLUMNS = ("step", "success", "success_any_step", "mean_task_return", "wall_time_s")


@dataclass(frozen=True)
class EvalResult:
    """Rates over the evaluated episodes.

    Attributes:
        success: fraction of episodes with success at their final step (the paper's criterion).
        success_any_step: fraction with success at any step (Meta-World's usual criterion).
        mean_task_return: mean sum of task rewards.
        episodes: how many episodes.
    """

    success: float
    success_any_step: float
    mean_task_return: float
    episodes: int


def _succeeded(info: dict[str, Any]) -> bool:
    return bool(info.get("is_success", info.get("success", False)))


def evaluate_policy_success(model: Any, env: gym.Env, n_episodes: int, frames: list | None = None) -> EvalResult:
    """Run ``model.predict(obs, deterministic=True)`` for ``n_episodes`` episodes.

    With ``frames`` (a list), every rendered frame of the episodes is appended to it.
    """
    final, any_step, returns = [], [], []
    for _ in range(check_int("n_episodes", n_episodes)):
        obs, _ = env.reset()
        done, ever, total = False, False, 0.0
        info: dict[str, Any] = {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(info.get("task_reward", reward))
            ever = ever or _succeeded(info)
            done = terminated or truncated
            if frames is not None:
                frames.append(env.render())
        final.append(_succeeded(info))
        any_step.append(ever)
        returns.append(total)
    return EvalResult(float(np.mean(final)), float(np.mean(any_step)), float(np.mean(returns)), len(final))


class PaperEvalCallback(BaseCallback):
    """Periodic evaluation with the paper's protocol (see the module docstring).

    Args:
        eval_env: a single (non-vector) env on the evaluation instance (:func:`furl_wrappers.runs.protocol.eval_seed`).
        eval_freq: env steps between evaluations (also evaluated at the end of training).
        n_episodes: 1 for a fixed goal, 10 for random goals.
        log_path: where ``evaluations.csv`` is appended (``None``: no file).
        seed: when given, the evaluation at step N first resets ``eval_env`` with a seed drawn from ``(seed, N)``,
            so its episodes (random goals) depend on the step only: a resumed run evaluates as an uninterrupted
            one (fixed goals do not move on a reseed).
        clock: the run's clock, read for the ``wall_time_s`` column (default: one started now).
    """

    def __init__(self, eval_env: gym.Env, eval_freq: int, n_episodes: int, log_path: str | None = None,
                 verbose: int = 0, seed: int | None = None, clock: RunClock | None = None) -> None:
        super().__init__(verbose)
        self.eval_env = eval_env
        self.eval_freq = check_int("eval_freq", eval_freq)
        self.n_episodes = check_int("n_episodes", n_episodes)
        self.log_path = None if log_path is None else Path(log_path)
        self.seed = None if seed is None else check_int("seed", seed, 0)
        self.last_result: EvalResult | None = None
        self.last_success: float | None = None
        self.best_success: float | None = None
        self._last_eval_step = -1
        self.clock = RunClock() if clock is None else clock

    def _init_callback(self) -> None:
        if self.log_path is not None:
            self._read_earlier_rows()
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

    def _read_earlier_rows(self) -> None:
        # a resumed run: its best and last success count the evaluations made before it was stopped
        assert self.log_path is not None  # called only with a log file
        successes = [row["success"] for row in read_evaluation_rows(self.log_path)]
        if successes:
            self.last_success, self.best_success = successes[-1], max(successes)

    def evaluate(self) -> float:
        """Run the evaluation now; returns the (final-step) success rate."""
        if self.seed is not None:
            self.eval_env.reset(seed=int(np.random.SeedSequence([self.seed, self.num_timesteps]).generate_state(1)[0]))
        result = evaluate_policy_success(self.model, self.eval_env, self.n_episodes)
        self._last_eval_step = self.num_timesteps
        self.last_result = result
        self.last_success = result.success
        self.best_success = result.success if self.best_success is None else max(self.best_success, result.success)
        self.logger.record("eval/success_rate", result.success)
        self.logger.record("eval/success_rate_any_step", result.success_any_step)
        self.logger.record("eval/mean_task_return", result.mean_task_return)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open_regular(self.log_path, "a", newline="") as handle:  # never appended through a link
                writer = csv.writer(handle)
                if os.fstat(handle.fileno()).st_size == 0:
                    writer.writerow(EVALUATION_COLUMNS)
                writer.writerow([self.num_timesteps, result.success, result.success_any_step,
                                 result.mean_task_return, round(self.clock.elapsed(), 2)])
        return result.success


def make_eval_env(task: str, goal: GoalSetting, seed: int, env_kwargs: dict[str, Any]) -> Any:
    """The evaluation env, made as the training envs are (``gymnasium.make`` of the registered id): the same
    ``env_kwargs`` mean the same episodes (``max_episode_steps`` is Gymnasium's time limit, in agent steps)."""
    return gym.make(env_id(task, goal), seed=seed, **env_kwargs)


def evaluate_run(run_dir: str | Path, episodes: int | None = None, video: str | None = None,
                 seed: int | None = None, device: str = "auto", trusted: bool = False) -> dict[str, Any]:
    """Evaluate a finished run's final model with the paper's protocol (or ``episodes``); optionally save a GIF.
    The model loads without unpickling anything; ``trusted=True`` also loads zips that need SB3's unpickling
    (models saved by SB3 itself or an older furl_wrappers: they run code from the file).

    Returns:
        ``{"success_rate" (final step), "success_rate_any_step", "mean_task_return", "episodes", "seed"}``.
    """
    run = RunDir(run_dir)
    if not run.config.exists() or not run.model.exists():
        raise FileNotFoundError(f"{str(run.path)!r} is not a finished furl run (needs {RunDir.CONFIG} and "
                                f"{RunDir.MODEL})")
    config = run.read_json(run.config)
    if "algo" not in config or "task" not in config or "seed" not in config:
        raise CorruptFileError(f"{str(run.config)!r} does not describe a furl run (algo, task, seed)")
    cls = algo_class(config["algo"])
    model = load_model(cls, run.model, device=device, trusted=trusted, buffer_size=1)  # inference: no big buffer
    goal = config.get("goal", "fixed")
    seed = eval_seed(config["seed"], goal) if seed is None else seed
    episodes = episodes or eval_episodes(goal)
    env_kwargs = config.get("env_kwargs") or {}  # the run's own env settings (image preset included)
    env = make_eval_env(config["task"], goal, seed, env_kwargs)
    frames: list | None = [] if video else None
    result = evaluate_policy_success(model, env, episodes, frames=frames)
    env.close()
    if video and frames:
        from PIL import Image

        images = [Image.fromarray(f) for f in frames[::2]]
        atomic_write(video, lambda handle: images[0].save(handle, format="GIF", save_all=True,
                                                          append_images=images[1:], duration=40, loop=0))
    return {"success_rate": result.success, "success_rate_any_step": result.success_any_step,
            "mean_task_return": result.mean_task_return, "episodes": episodes, "seed": seed}
