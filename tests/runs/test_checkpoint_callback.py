"""ResumeCheckpointCallback: one consistent set, taken between steps at an episode start of every env."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env

from furl_wrappers.envs import make_metaworld_env
from furl_wrappers.runs.checkpoint_callback import ResumeCheckpointCallback
from furl_wrappers.runs.run_clock import RunClock
from furl_wrappers.runs.run_dir import RunDir
from tests._scripted_env import ScriptedSuccessEnv


def test_writes_a_loadable_set_after_the_step_is_stored(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    model = SAC("MlpPolicy", ScriptedSuccessEnv(), learning_starts=100, buffer_size=100, device="cpu", seed=0)
    model.learn(12, callback=ResumeCheckpointCallback(run.checkpoint, save_freq=5))
    # due at step 5, taken at the next episode start (episodes of 4 steps), between steps: step 8's transition is
    # in the buffer it saved with
    assert json.loads(run.checkpoint_meta.read_text())["num_timesteps"] == 8
    assert run.checkpoint_step() == 8 and run.state() == "interrupted"
    assert sorted(p.name for p in run.checkpoint.iterdir()) == ["meta.json", "model.zip", "replay_buffer.npz"]
    assert not run.checkpoint_set.staging.exists() and not run.checkpoint_set.previous.exists()
    loaded = run.checkpoint_set.load(SAC, None, device="cpu")
    assert loaded.num_timesteps == 8 and loaded.replay_buffer.size() == 8
    np.testing.assert_array_equal(loaded.replay_buffer.observations[:8], model.replay_buffer.observations[:8])
    assert loaded.replay_buffer.timeouts[7].all() and not loaded.replay_buffer.timeouts[6].any()
    assert json.loads(run.checkpoint_meta.read_text())["exact"] is False  # this env cannot replay its episodes


def test_waits_for_every_env_to_start_an_episode(tmp_path: Path) -> None:
    venv = make_vec_env(lambda: make_metaworld_env("reach", seed=0, max_episode_steps=7, image_size=32), n_envs=2,
                        seed=0)
    ckpt = ResumeCheckpointCallback(tmp_path / "checkpoint", save_freq=8, clock=RunClock(before=1000.0))
    model = SAC("MlpPolicy", venv, learning_starts=100, buffer_size=100, device="cpu", seed=0)
    model.learn(20, callback=ckpt)  # 2 envs, 2 steps per call: due at 8, both envs start an episode at 14
    meta = json.loads((tmp_path / "checkpoint" / "meta.json").read_text())
    assert meta["num_timesteps"] == 14 and meta["exact"] is True
    assert 1000.0 < meta["wall_time_s"] < 1000.0 + 600  # the run's clock, continued from a resumed run's reading
    assert len(meta["episode_starts"]) == 2 and all(set(start) == {"rng"} for start in meta["episode_starts"])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="save_freq must be an integer >= 1"):
        ResumeCheckpointCallback("ckpt", save_freq=0)
