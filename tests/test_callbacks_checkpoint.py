"""ResumeCheckpointCallback: model, replay buffer and step written atomically every save_freq steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.save_util import load_from_pkl

from furl_wrappers.callbacks import ResumeCheckpointCallback
from furl_wrappers.run_dir import RunDir
from tests._scripted_env import ScriptedSuccessEnv


def test_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    model = SAC("MlpPolicy", ScriptedSuccessEnv(), learning_starts=100, buffer_size=100, device="cpu", seed=0)
    model.learn(12, callback=ResumeCheckpointCallback(run.checkpoint, save_freq=5))
    assert json.loads(run.checkpoint_meta.read_text())["num_timesteps"] == 10  # the last multiple of 5
    assert run.checkpoint_step() == 10 and run.state() == "interrupted"
    assert sorted(p.name for p in run.checkpoint.iterdir()) == ["meta.json", "model.zip", "replay_buffer.pkl"]
    loaded = SAC.load(run.checkpoint_model, device="cpu")
    assert loaded.num_timesteps == 10
    buffer = load_from_pkl(run.checkpoint_buffer)
    assert isinstance(buffer, ReplayBuffer) and 9 <= buffer.size() <= 10


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="save_freq must be an integer >= 1"):
        ResumeCheckpointCallback("ckpt", save_freq=0)
