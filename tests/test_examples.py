"""The examples run, at a tiny budget, through their own main()."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_lines() -> None:
    model = _load("two_lines").main(steps=60, vlm="random-clip:tiny", image_size=32)
    assert model.num_timesteps == 60


def test_sb3_project(tmp_path: Path) -> None:
    model = _load("sb3_project").main(steps=60, vlm="random-clip:tiny", image_size=32, out=str(tmp_path))
    assert model.num_timesteps == 60
    assert (tmp_path / "final.zip").exists() and (tmp_path / "buffer.pkl").exists()
    assert sorted(p.name for p in tmp_path.glob("rl_model_*_steps.zip"))  # CheckpointCallback ran


def test_custom_encoder() -> None:
    model = _load("custom_encoder").main(steps=60, image_size=32)
    assert model.num_timesteps == 60
    assert model.replay_buffer.embedding_dim == 24
