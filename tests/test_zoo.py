"""zoo_configs: every file parses, builds its model, carries the paper's hyperparameters; rl-zoo runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import furl_wrappers
from furl_wrappers.zoo import (
    CONFIG_DIR,
    METHODS,
    ConfigError,
    algo_class,
    load_config,
    make_env_fn_wrapper,
    make_vec_wrapper,
    split_config,
)

TINY = {"image_size": 32, "max_episode_steps": 30}


def test_one_file_per_method_with_all_mt10_ids() -> None:
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yml")) == sorted(METHODS)
    for method in METHODS:
        blocks = yaml.safe_load((CONFIG_DIR / f"{method}.yml").read_text())
        ids = {k for k in blocks if k != "defaults"}
        expected = {furl_wrappers.env_id(t, g) for t in furl_wrappers.MT10_TASKS for g in ("fixed", "random")}
        assert ids == expected, method


@pytest.mark.parametrize("method", list(METHODS))
def test_paper_hyperparameters(method: str) -> None:
    cfg = load_config(method, "furl/drawer-open-v3")
    assert cfg["_algo"] == METHODS[method]["algo"]
    assert (cfg["learning_rate"], cfg["batch_size"], cfg["tau"], cfg["gamma"]) == (1e-4, 256, 0.01, 0.99)
    assert (cfg["learning_starts"], cfg["n_timesteps"], cfg["target_entropy"]) == (10_000, 1_000_000, -2.0)
    assert cfg["buffer_size"] == 1_000_000 and cfg["gradient_steps"] == 1
    if method == "sac":
        assert "vec_env_wrapper" not in cfg
        return
    (wrapper, kwargs), = cfg["vec_env_wrapper"][0].items()
    assert wrapper == "furl_wrappers.wrappers.VecFuzzyVLMReward"
    expected_mode = {"vlm": "raw", "vlm_rm": "raw", "vlm_rm_gb": "raw", "vlm_proj": "frozen", "relay": "raw",
                     "furl_no_goal": "learned", "furl": "learned", "vlm_clip": "raw", "furl_clip": "learned"}[method]
    # Table 1 rows: LIV through the reference image pipeline; Table 3 rows: CLIP through the same crop
    clip = method.endswith("_clip") or method.startswith("vlm_rm")  # VLM-RMs is a CLIP reward
    assert kwargs["vlm"] == ("openai/clip-vit-base-patch32" if clip else "liv")
    assert cfg["env_kwargs"] == {"image_preset": "reference"}
    assert kwargs["mode"] == expected_mode
    assert kwargs["rho"] == (1.0 if method.startswith("vlm_rm") else 0.05)
    if method.startswith("vlm_rm"):
        assert kwargs["include_task_reward"] is False
    if METHODS[method]["algo"] == "relay":
        assert (cfg["relay_threshold"], cfg["relay_lengths"], cfg["relay_noise"]) == (2500, [50, 100, 150, 200], 0.2)
    if method.startswith("furl"):
        align, store = cfg["alignment_kwargs"], cfg["replay_buffer_kwargs"]
        assert (align["margin"], align["goal_margin"], align["lr"], align["batch_size"]) == (0.1, 0.25, 1e-4, 256)
        assert (store["lag"], store["alignment_buffer_size"]) == (10, 20_000)
        assert kwargs["goal_image"] == ("auto" if method in ("furl", "furl_clip") else None)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_config_builds_its_model(method: str) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    cfg = load_config(method, "furl/reach-v3-random-goal", {"buffer_size": 100})
    algo_kwargs, zoo = split_config(cfg)
    venv = make_vec_env("furl/reach-v3-random-goal", n_envs=1, seed=0, env_kwargs=TINY,
                        wrapper_class=make_env_fn_wrapper(zoo.get("env_wrapper")))
    wrap = make_vec_wrapper(zoo.get("vec_env_wrapper"), vlm="random-clip:tiny", device="cpu")
    if wrap is not None:
        venv = wrap(venv)
    model = algo_class(zoo["_algo"])(env=venv, device="cpu", **algo_kwargs)
    assert model.learning_rate == 1e-4 and model.target_entropy == -2.0
    assert type(model).__name__ == ("RelayPolicy" if METHODS[method]["algo"] == "relay" else "SAC")
    venv.close()


def test_rho_from_yaml_reaches_env_and_sampled_rewards_alike() -> None:
    """rho has one home, the VLM reward: the env's reward and the buffer's relabelled reward both use the YAML's."""
    import numpy as np
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    cfg = load_config("furl", "furl/reach-v3", {"buffer_size": 200, "learning_starts": 10, "batch_size": 8})
    cfg["vec_env_wrapper"][0]["furl_wrappers.wrappers.VecFuzzyVLMReward"]["rho"] = 0.1
    algo_kwargs, zoo = split_config(cfg)
    venv = make_vec_env("furl/reach-v3", n_envs=1, seed=0, env_kwargs=TINY,
                        wrapper_class=make_env_fn_wrapper(zoo["env_wrapper"]))
    venv = make_vec_wrapper(zoo["vec_env_wrapper"], vlm="random-clip:tiny", device="cpu")(venv)
    model = algo_class("relay")(env=venv, device="cpu", **algo_kwargs)  # no vlm_reward given: found on the env
    assert model.vlm_reward is venv.vlm_reward and model.replay_buffer.vlm_reward is venv.vlm_reward
    venv.reset()
    _, rewards, _, infos = venv.step(np.zeros((1, 4)))
    assert rewards[0] == np.float32(infos[0]["task_reward"] + 0.1 * infos[0]["vlm_reward"])
    model.learn(20)
    buf = model.replay_buffer
    sampled = buf.sample(8).rewards.squeeze(1).numpy()
    inds, envs, _ = buf.last_batch
    r_vlm = venv.reward_model.reward(torch.as_tensor(buf.embeddings[inds, envs]).float()).numpy()
    np.testing.assert_allclose(sampled, buf.task_rewards[inds, envs] + 0.1 * r_vlm, rtol=1e-6, atol=1e-7)
    venv.close()


@pytest.mark.parametrize("argv, expected", [
    (["--env", "furl/reach-v3", "--seed", "3"], ["--env", "furl/reach-v3", "--seed", "3", "--env-kwargs", "seed:3"]),
    (["--env=furl/reach-v3", "--seed=3", "--env-kwargs=image_size:64"],
     ["--env", "furl/reach-v3", "--seed", "3", "--env-kwargs", "image_size:64", "seed:3"]),
    (["--env", "furl/reach-v3", "--seed", "3", "--env-kwargs", "seed:5"],  # an explicit instance stays
     ["--env", "furl/reach-v3", "--seed", "3", "--env-kwargs", "seed:5"]),
    (["--env", "furl/reach-v3", "--seed", "-1"], ["--env", "furl/reach-v3", "--seed", "-1"]),  # rl-zoo's random
    (["--env", "furl/reach-v3", "-n", "10"], ["--env", "furl/reach-v3", "-n", "10"]),
    (["--env", "furl/reach-v3", "--env-kwargs", "image_size:64"],  # no seed: instance 0, kwargs as given
     ["--env", "furl/reach-v3", "--env-kwargs", "image_size:64"]),
    (["--env", "furl/reach-v3-random-goal", "--seed", "2"],
     ["--env", "furl/reach-v3-random-goal", "--seed", "2", "--env-kwargs", "seed:2", "--eval-env-kwargs",
      "seed:102"]),
])
def test_launcher_ties_seed_to_the_task_instance(argv: list, expected: list) -> None:
    from furl_wrappers.zoo import launcher_args

    assert launcher_args(argv) == expected


def test_launcher_keeps_the_yamls_env_kwargs() -> None:
    """rl-zoo replaces the YAML's env_kwargs with the command line's: the launcher carries them over."""
    from furl_wrappers.zoo import launcher_args

    conf = str(CONFIG_DIR / "furl.yml")
    out = launcher_args(["--env", "furl/reach-v3", "--conf-file", conf, "--seed", "4", "--env-kwargs", "image_size:32"])
    assert out[out.index("--env-kwargs") + 1:] == ["image_preset:'reference'", "image_size:32", "seed:4"]
    mine = launcher_args(["--env", "furl/reach-v3", "-conf", conf, "--seed", "4", "--env-kwargs",
                          "image_preset:'fast'"])
    assert mine[mine.index("--env-kwargs") + 1:] == ["image_preset:'fast'", "seed:4"]  # the user's entry wins


def test_bad_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown method 'furll'.*furl"):
        load_config("furll", "furl/drawer-open-v3")
    with pytest.raises(ConfigError, match="no block for 'furl/drawer-opn-v3'.*furl/drawer-open-v3"):
        load_config("furl", "furl/drawer-opn-v3")
    bad = tmp_path / "typo.yml"
    bad.write_text("furl/reach-v3:\n  learning_rat: 1.0e-4\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rat'.*learning_rate"):
        load_config(str(bad), "furl/reach-v3")
    wrong = tmp_path / "wrong.yml"
    wrong.write_text("furl/reach-v3:\n  learning_rate: 1e-4\n")  # YAML 1.1 reads this as a string
    with pytest.raises(ConfigError, match="learning_rate must be int or float.*1.0e-4"):
        load_config(str(wrong), "furl/reach-v3")
    with pytest.raises(ConfigError, match="relay_threshold must be int"):
        load_config("furl", "furl/reach-v3", {"relay_threshold": "lots"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yml"), "furl/reach-v3")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


ZOO_ARGS = ["--gym-packages", "furl_wrappers", "-n", "150", "--eval-freq", "-1", "--seed", "0",
            "--env-kwargs", "image_size:32", "max_episode_steps:50"]


def test_rl_zoo_train_with_a_non_relay_config(tmp_path: Path) -> None:
    pytest.importorskip("rl_zoo3")
    out = _run(["-m", "rl_zoo3.train", "--algo", "sac", "--env", "furl/reach-v3", "--conf-file",
                str(CONFIG_DIR / "vlm.yml"), "-f", str(tmp_path), *ZOO_ARGS, "-params", "learning_starts:50",
                "batch_size:32", "vec_env_wrapper:[{'furl_wrappers.wrappers.VecFuzzyVLMReward': "
                "{'vlm': 'random-clip:tiny', 'mode': 'raw'}}]"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((tmp_path / "sac").glob("furl-reach-v3_1/furl-reach-v3.zip"))


def test_rl_zoo_picks_the_vlm_with_one_env_kwarg(tmp_path: Path) -> None:
    """The short, documented override: --env-kwargs vlm:"'NAME'" (the YAML asks for LIV, which the hub-less
    machine cannot load: the run only succeeds because the override reached the VLM reward)."""
    pytest.importorskip("rl_zoo3")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "rl_zoo3.train", "--algo", "sac", "--env", "furl/reach-v3",
                          "--conf-file", str(CONFIG_DIR / "vlm.yml"), "-f", str(tmp_path), "--gym-packages",
                          "furl_wrappers", "-n", "60", "--eval-freq", "-1", "-params", "learning_starts:30",
                          "batch_size:16", "--env-kwargs", "image_size:32", "max_episode_steps:30",
                          "vlm:'random-clip:tiny'"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((tmp_path / "sac").glob("furl-reach-v3_1/furl-reach-v3.zip"))


def test_launcher_with_a_relay_config(tmp_path: Path) -> None:
    pytest.importorskip("rl_zoo3")
    out = _run(["-m", "furl_wrappers.zoo", "train", "--algo", "relay", "--env", "furl/reach-v3", "--conf-file",
                str(CONFIG_DIR / "furl.yml"), "-f", str(tmp_path), *ZOO_ARGS, "-params", "learning_starts:50",
                "batch_size:32", "vec_env_wrapper:[{'furl_wrappers.wrappers.VecFuzzyVLMReward': "
                "{'vlm': 'random-clip:tiny', 'goal_image': 'auto'}}]", "alignment_kwargs:{'batch_size': 32}"],
               tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = tmp_path / "relay" / "furl-reach-v3_1" / "furl-reach-v3.zip"
    assert saved.exists()
    import zipfile

    assert "relay_sac.zip" in zipfile.ZipFile(saved).namelist()  # RelayPolicy's own save ran
    enjoy = _run(["-m", "furl_wrappers.zoo", "enjoy", "--algo", "relay", "--env", "furl/reach-v3", "--gym-packages",
                  "furl_wrappers", "-f", str(tmp_path), "-n", "60", "--no-render", "--env-kwargs", "image_size:32",
                  "max_episode_steps:50"], tmp_path)
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]
    assert "Success rate" in enjoy.stdout


def test_launcher_usage() -> None:
    out = _run(["-m", "furl_wrappers.zoo"], Path.cwd())
    assert out.returncode == 2 and "usage" in out.stderr
