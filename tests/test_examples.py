"""The examples run, at a tiny budget, through their own main()."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_lines() -> None:
    model = _load("two_lines").main(steps=60, vlm="random-clip:tiny", image_size=32)
    rewards = model.replay_buffer.rewards[:60, 0]  # task reward + 0.05 * raw cosine, as collected
    assert np.all(rewards >= -1.05) and np.all(rewards <= 0.05) and not np.all(np.isin(rewards, (-1.0, 0.0)))


def test_sb3_project(tmp_path: Path) -> None:
    model = _load("sb3_project").main(steps=60, vlm="random-clip:tiny", image_size=32, out=str(tmp_path))
    # 2 envs, 30 warm-up steps; after them env 0 starts with the VLM agent, env 1 with the SAC agent (relay >= 50)
    assert (model.schedule.vlm_steps, model.schedule.task_agent_steps) == (15, 15)
    assert model.replay_buffer.vlm_reward is model.vlm_reward and model.vlm_reward.has_goal
    assert (tmp_path / "final.zip").exists() and (tmp_path / "buffer.pkl").exists()
    assert sorted(p.name for p in tmp_path.glob("rl_model_*_steps.zip"))  # CheckpointCallback ran


def test_custom_encoder() -> None:
    model = _load("custom_encoder").main(steps=60, image_size=32)
    buffer = model.replay_buffer
    assert buffer.embedding_dim == 24
    # the stored embeddings are the encoder's: three 8-bin colour histograms, each summing to 1
    hist = buffer.embeddings[:60, 0].astype(np.float64).reshape(60, 3, 8)
    np.testing.assert_allclose(hist.sum(axis=2), 1.0, atol=1e-2)
