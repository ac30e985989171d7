"""PaperEvalCallback and evaluate_policy_success on a hand-scripted env: success, returns, schedule, CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.logger import configure

from furl_wrappers.runs.evaluation import PaperEvalCallback, evaluate_policy_success
from furl_wrappers.runs.run_clock import RunClock
from tests._scripted_env import ScriptedSuccessEnv


class _Zero:
    def predict(self, obs, deterministic=False):
        assert deterministic  # the paper evaluates the mean action
        return np.zeros(1, np.float32), None


def test_final_step_success_and_return_by_hand() -> None:
    frames: list = []
    # succeeds at step 2, then fails again: not a success at the final step (the paper's criterion)
    result = evaluate_policy_success(_Zero(), ScriptedSuccessEnv(4, success_at=(2,)), 2, frames=frames)
    assert (result.success, result.success_any_step, result.episodes) == (0.0, 1.0, 2)
    assert result.mean_task_return == -3.0  # -1 + 0 - 1 - 1
    assert [int(f[0, 0, 0]) for f in frames] == [1, 2, 3, 4] * 2
    held = evaluate_policy_success(_Zero(), ScriptedSuccessEnv(4, success_at=(3, 4)), 1)
    assert (held.success, held.success_any_step, held.mean_task_return) == (1.0, 1.0, -2.0)
    never = evaluate_policy_success(_Zero(), ScriptedSuccessEnv(3, success_at=()), 1)
    assert (never.success, never.success_any_step, never.mean_task_return) == (0.0, 0.0, -3.0)


def test_schedule_and_csv(tmp_path: Path) -> None:
    log = tmp_path / "evaluations.csv"
    callback = PaperEvalCallback(ScriptedSuccessEnv(4, success_at=(1, 4)), eval_freq=4, n_episodes=1,
                                 log_path=str(log), clock=RunClock(before=300.0))
    model = SAC("MlpPolicy", ScriptedSuccessEnv(), learning_starts=100, buffer_size=100, device="cpu", seed=0)
    model.learn(10, callback=callback)
    with open(log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", "success", "success_any_step", "mean_task_return", "wall_time_s"]
    assert [int(r["step"]) for r in rows] == [4, 8, 10]  # every eval_freq steps, and at the end
    assert [float(r["success"]) for r in rows] == [1.0, 1.0, 1.0]
    assert [float(r["mean_task_return"]) for r in rows] == [-2.0] * 3
    times = [float(r["wall_time_s"]) for r in rows]  # the run's clock: a resumed run's rows continue its time
    assert 300.0 <= times[0] <= times[1] <= times[2] < 300.0 + 600
    assert callback.last_success == 1.0 and callback.best_success == 1.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="eval_freq must be an integer >= 1"):
        PaperEvalCallback(ScriptedSuccessEnv(), eval_freq=0, n_episodes=1)
    with pytest.raises(ValueError, match="n_episodes must be an integer >= 1"):
        PaperEvalCallback(ScriptedSuccessEnv(), eval_freq=10, n_episodes=1.5)


def test_seeded_evaluations_depend_on_the_step_only() -> None:
    from furl_wrappers.envs import make_metaworld_env

    def goals_of_evaluation_at(step: int, warm_up: int) -> list:
        env = make_metaworld_env("reach", goal="random", seed=102, image_size=32, max_episode_steps=3)
        for _ in range(warm_up):  # a run that was interrupted and resumed has drawn fewer goals before
            env.reset()
        model = SAC("MlpPolicy", env, learning_starts=100, buffer_size=10, device="cpu", seed=0)
        model.set_logger(configure(None, []))
        callback = PaperEvalCallback(env, eval_freq=10, n_episodes=2, seed=102)
        callback.init_callback(model)
        callback.num_timesteps = step
        seen = []
        original = env.reset

        def reset(**kwargs):
            out = original(**kwargs)
            seen.append(env.get_wrapper_attr("goal_position"))
            return out

        env.reset = reset
        callback.evaluate()
        return seen[1:]  # the episodes' goals (after the reseed)

    assert goals_of_evaluation_at(20, warm_up=0) == goals_of_evaluation_at(20, warm_up=5)
    assert goals_of_evaluation_at(20, warm_up=0) != goals_of_evaluation_at(30, warm_up=0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        PaperEvalCallback(ScriptedSuccessEnv(), eval_freq=10, n_episodes=1, seed=-1)
