"""The package itself: a light import that registers the ids, lazy access to the torch-backed parts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import furl_wrappers


def test_import_is_light_and_registers_ids() -> None:
    code = ("import sys, furl_wrappers, gymnasium as gym; "
            "print('torch' in sys.modules, 'transformers' in sys.modules, 'furl/drawer-open-v3' in gym.registry)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False", "True"], out.stderr[-2000:]


def test_lazy_public_names() -> None:
    from furl_wrappers.buffers import VLMReplayBuffer
    from furl_wrappers.relay import RelayPolicy

    assert furl_wrappers.VLMReplayBuffer is VLMReplayBuffer
    assert furl_wrappers.RelayPolicy is RelayPolicy
    import importlib

    for name, module in furl_wrappers._LAZY.items():  # each lazy name is its module's object
        assert getattr(furl_wrappers, name) is getattr(importlib.import_module(module), name)
    for name in furl_wrappers.__all__:
        assert hasattr(furl_wrappers, name), name
    assert "RelayPolicy" in dir(furl_wrappers)
    try:
        furl_wrappers.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_readme_sb3_snippet_runs() -> None:
    """The README's SB3 example, at a tiny budget."""
    from stable_baselines3 import SAC

    venv = furl_wrappers.make_vlm_vec_env("drawer-open", n_envs=2, vlm="random-clip:tiny", rho=0.05, device="cpu",
                                          env_kwargs={"image_size": 32})
    model = SAC("MlpPolicy", venv, learning_rate=1e-4, batch_size=16, tau=0.01, learning_starts=20, device="cpu")
    model.learn(40)
    rewards = model.replay_buffer.rewards[: model.replay_buffer.pos]  # task reward + 0.05 r_VLM, as collected
    assert rewards.shape == (20, 2) and np.all(rewards >= -1.05) and np.all(rewards <= 0.05)
    assert not np.all(np.isin(rewards, (-1.0, 0.0)))  # the VLM term is there
