"""Shared test set-up: a private cache directory (tests never read or write the user's cache) and the factories the
test modules share — tiny VLM vector envs, reward models, relabel-only VLM rewards and relay agents — each with the
small settings that keep the suite fast."""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["FURL_CACHE_DIR"] = str(tmp_path_factory.mktemp("furl_cache"))


#: image side of the tiny envs (the random-clip:tiny encoder reads any size)
IMAGE_SIZE = 32


@pytest.fixture
def vlm_venv() -> Callable[..., Any]:
    """Factory: ``vlm_venv(n_envs=1, steps=10, task="reach", vlm="random-clip:tiny", seed=0, pixels=False)``, a
    Meta-World vector env with the VLM reward (32² frames, ``steps``-step episodes; ``pixels``: stacked-frame
    observations of 32², no action repeat)."""
    import furl_wrappers

    def make(n_envs: int = 1, steps: int = 10, task: str = "reach", vlm: str = "random-clip:tiny", seed: int = 0,
             pixels: bool = False) -> Any:
        env_kwargs: dict[str, Any] = {"image_size": IMAGE_SIZE, "max_episode_steps": steps}
        if pixels:
            env_kwargs.update(observation="pixels", pixel_size=IMAGE_SIZE, action_repeat=1)
        return furl_wrappers.make_vlm_vec_env(task, n_envs=n_envs, seed=seed, vlm=vlm, device="cpu",
                                              env_kwargs=env_kwargs)

    return make


@pytest.fixture
def reward_model() -> Callable[..., Any]:
    """Factory: ``reward_model(seed=0, dim=8, mode="learned", **kwargs)``, a small learned reward model (hidden 16,
    output 4) over ``dim``-d embeddings whose text embedding is all ones."""
    import torch

    from furl_wrappers.reward_model import RewardModel

    def make(seed: int = 0, dim: int = 8, mode: str = "learned", **kwargs: Any) -> Any:
        settings: dict[str, Any] = {"hidden_dim": 16, "output_dim": 4, **kwargs}
        return RewardModel(torch.ones(dim), mode=mode, device="cpu", seed=seed, **settings)

    return make


@pytest.fixture
def relabel_reward() -> Callable[..., Any]:
    """Factory: ``relabel_reward(model, rho=0.05, text="open the drawer", **kwargs)``, a VLM reward without an
    encoder (it relabels stored embeddings only)."""
    from furl_wrappers.vlm_reward import VLMReward

    def make(model: Any, rho: float = 0.05, text: str = "open the drawer", **kwargs: Any) -> Any:
        return VLMReward(None, model, text=text, rho=rho, **kwargs)

    return make


@pytest.fixture
def relay_model() -> Callable[..., Any]:
    """Factory: ``relay_model(venv, cls=RelayPolicy, **kwargs)``, a relay agent with small settings (no warm-up,
    2,000-transition buffer, batches of 8, seed 0, CPU; a pixel backbone gets ``CnnPolicy``)."""
    from furl_wrappers.drq import DrQ
    from furl_wrappers.relay import RelayPolicy

    def make(venv: Any, cls: type = RelayPolicy, **kwargs: Any) -> Any:
        settings: dict[str, Any] = {"learning_starts": 0, "buffer_size": 2000, "batch_size": 8, "seed": 0,
                                    "device": "cpu", "alignment_kwargs": {"batch_size": 8}, **kwargs}
        if isinstance(settings.get("policy_kwargs"), dict):  # sbx's TQC writes into the dict it is given
            settings["policy_kwargs"] = dict(settings["policy_kwargs"])
        return cls("CnnPolicy" if issubclass(cls, DrQ) else "MlpPolicy", venv, **settings)

    return make
