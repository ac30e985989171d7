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
    from furl_wrappers.relay import RelayPolicy
    from furl_wrappers.vlm_buffer import VLMReplayBuffer

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


def test_a_wheel_install_trains_from_another_directory(tmp_path) -> None:
    """pip install . (not editable): the zoo configs ship inside the package, furl train finds them."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(root)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    assert "absent from the `packages` configuration" not in build.stderr  # package data declared properly
    (wheel,) = (tmp_path / "dist").glob("furl_wrappers-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                              str(tmp_path / "site"), str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import furl_wrappers, furl_wrappers.runs.zoo_config as zoo; from furl_wrappers.cli import main; "
            "print(furl_wrappers.__file__); print(zoo.CONFIG_DIR); "
            "raise SystemExit(main(['train', '--method', 'sac', '--task', 'reach', '--steps', '20', '--eval-freq', "
            "'20', '--quiet', '--device', 'cpu', '--hyperparams', 'learning_starts=10', '--env-kwargs', "
            "'max_episode_steps=10', '--out', 'run']))")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=600,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    package, configs = out.stdout.splitlines()[:2]
    assert package.startswith(str(tmp_path / "site")) and configs == str(tmp_path / "site" / "furl_wrappers" /
                                                                        "zoo_configs")
    assert (elsewhere / "run" / "summary.json").is_file()
