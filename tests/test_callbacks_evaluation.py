"""PaperEvalCallback and evaluate_policy_success on a hand-scripted env: success, returns, schedule, CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import SAC

from furl_wrappers.callbacks import PaperEvalCallback, evaluate_policy_success
from tests._scripted_env import ScriptedSuccessEnv


class _Zero:
    def predict(self, obs, deterministic=False):
        assert deterministic  # the paper evaluates the mean action
        return np.zeros(1, np.float32), None


def test_success_and_return_by_hand() -> None:
    frames: list = []
    success, ret = evaluate_policy_success(_Zero(), ScriptedSuccessEnv(4, success_at=(2,)), 2, frames=frames)
    assert success == 1.0  # success at step 2 (of 4) counts
    assert ret == -3.0  # -1 + 0 - 1 - 1
    assert [int(f[0, 0, 0]) for f in frames] == [1, 2, 3, 4] * 2
    assert evaluate_policy_success(_Zero(), ScriptedSuccessEnv(3, success_at=()), 1) == (0.0, -3.0)


def test_schedule_and_csv(tmp_path: Path) -> None:
    log = tmp_path / "evaluations.csv"
    callback = PaperEvalCallback(ScriptedSuccessEnv(4, success_at=(4,)), eval_freq=4, n_episodes=1, log_path=str(log))
    model = SAC("MlpPolicy", ScriptedSuccessEnv(), learning_starts=100, buffer_size=100, device="cpu", seed=0)
    model.learn(10, callback=callback)
    with open(log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [4, 8, 10]  # every eval_freq steps, and at the end
    assert [float(r["success_rate"]) for r in rows] == [1.0, 1.0, 1.0]
    assert [float(r["mean_task_return"]) for r in rows] == [-3.0] * 3
    assert callback.last_success == 1.0 and callback.best_success == 1.0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="eval_freq must be an integer >= 1"):
        PaperEvalCallback(ScriptedSuccessEnv(), eval_freq=0, n_episodes=1)
    with pytest.raises(ValueError, match="n_episodes must be an integer >= 1"):
        PaperEvalCallback(ScriptedSuccessEnv(), eval_freq=10, n_episodes=1.5)
