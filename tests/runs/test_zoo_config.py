"""zoo_configs: every file parses, builds its model, carries the paper's hyperparameters; rl-zoo runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional
from unittest import mock

import pytest
import yaml

import furl_wrappers
from furl_wrappers.runs.zoo_config import (
    CONFIG_DIR,
    METHODS,
    RELAY_ALGOS,
    ConfigError,
    algo_class,
    load_config,
    make_env_fn_wrapper,
    make_vec_wrapper,
    missing_extra,
    split_config,
)

TINY = {"image_size": 32, "max_episode_steps": 30}
#: every method; the JAX ones (sbx) are skipped where the jax extra is not installed
ALL_METHODS = [pytest.param(m, marks=pytest.mark.skipif(missing_extra(METHODS[m]["algo"]) is not None,
                                                       reason="the jax extra (sbx) is not installed"))
               for m in METHODS]


def test_one_file_per_method_with_all_mt10_ids() -> None:
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yml")) == sorted(METHODS)
    for method in METHODS:
        blocks = yaml.safe_load((CONFIG_DIR / f"{method}.yml").read_text())
        ids = {k for k in blocks if k != "defaults"}
        expected = {furl_wrappers.env_id(t, g) for t in furl_wrappers.MT10_TASKS for g in ("fixed", "random")}
        assert ids == expected, method


@pytest.mark.parametrize("method", ALL_METHODS)
def test_paper_hyperparameters(method: str) -> None:
    cfg = load_config(method, "furl/drawer-open-v3")
    assert cfg["_algo"] == METHODS[method]["algo"]
    if "crossq" in cfg["_algo"]:  # CrossQ's own: lr 1e-3, no target network (no tau), policy_delay 3
        assert (cfg["learning_rate"], "tau" in cfg, cfg["policy_delay"]) == (1e-3, False, 3)
        cfg = {**cfg, "learning_rate": 1e-4, "tau": 0.01}
    if "tqc" in cfg["_algo"]:
        assert cfg["top_quantiles_to_drop_per_net"] == 2
    pixels = "drq" in cfg["_algo"]
    if pixels:  # paper Table 5's DrQ rows: 84x84 frames, stack 3, repeat 2, buffer 2e5, (256, 256, 256) networks
        env = {k: v for k, v in cfg["env_kwargs"].items() if k not in ("image_preset", "image_size")}
        assert env == {"observation": "pixels", "pixel_size": 84, "frame_stack": 3, "action_repeat": 2}
        assert (cfg["policy"], cfg["image_pad"], cfg["policy_kwargs"]) == (
            "CnnPolicy", 4, "dict(net_arch=[256, 256, 256])")
        assert (cfg["buffer_size"], cfg["n_timesteps"]) == (200_000, 500_000)  # 1e6 simulator steps
        cfg = {**cfg, "buffer_size": 1_000_000, "n_timesteps": 1_000_000,
               "env_kwargs": {"image_preset": cfg["env_kwargs"]["image_preset"]}}
    assert (cfg["learning_rate"], cfg["batch_size"], cfg["tau"], cfg["gamma"]) == (1e-4, 256, 0.01, 0.99)
    assert (cfg["learning_starts"], cfg["n_timesteps"], cfg["target_entropy"]) == (10_000, 1_000_000, -2.0)
    assert cfg["buffer_size"] == 1_000_000 and cfg["gradient_steps"] == 1
    if method in ("sac", "tqc", "crossq", "drq", "sac_sbx", "crossq_sbx"):
        assert "vec_env_wrapper" not in cfg
        return
    (wrapper, kwargs), = cfg["vec_env_wrapper"][0].items()
    assert wrapper == "furl_wrappers.wrappers.VecFuzzyVLMReward"
    expected_mode = {"vlm": "raw", "vlm_rm": "raw", "vlm_rm_gb": "raw", "vlm_proj": "frozen", "relay": "raw",
                     "furl_no_goal": "learned", "furl": "learned", "vlm_clip": "raw", "furl_clip": "learned",
                     "furl_tqc": "learned", "furl_crossq": "learned", "furl_pixels": "learned", "furl_sbx": "learned",
                     "furl_crossq_sbx": "learned"}[method]
    # Table 1 rows: LIV through the reference image pipeline; Table 3 rows: CLIP through the same crop
    clip = method.endswith("_clip") or method.startswith("vlm_rm")  # VLM-RMs is a CLIP reward
    assert kwargs["vlm"] == ("openai/clip-vit-base-patch32" if clip else "liv")
    assert cfg["env_kwargs"] == {"image_preset": "reference"}
    assert kwargs["mode"] == expected_mode
    assert kwargs["rho"] == (1.0 if method.startswith("vlm_rm") else 0.05)
    if method.startswith("vlm_rm"):
        assert kwargs["include_task_reward"] is False
    if METHODS[method]["algo"] in RELAY_ALGOS:
        assert (cfg["relay_threshold"], cfg["relay_lengths"], cfg["relay_noise"]) == (2500, [50, 100, 150, 200], 0.2)
    if method.startswith("furl"):
        align, store = cfg["alignment_kwargs"], cfg["replay_buffer_kwargs"]
        assert (align["margin"], align["goal_margin"], align["lr"], align["batch_size"]) == (0.1, 0.25, 1e-4, 256)
        assert (store["lag"], store["alignment_buffer_size"]) == (10, 20_000)
        assert kwargs["goal_image"] == (None if method == "furl_no_goal" else "auto")


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_config_builds_its_model(method: str) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    cfg = load_config(method, "furl/reach-v3-random-goal", {"buffer_size": 100})
    algo_kwargs, zoo = split_config(cfg)
    pixels = {k: v for k, v in zoo.get("env_kwargs", {}).items()
              if k in ("observation", "frame_stack", "action_repeat")}
    if pixels:
        pixels["pixel_size"] = 24
    venv = make_vec_env("furl/reach-v3-random-goal", n_envs=1, seed=0, env_kwargs={**TINY, **pixels},
                        wrapper_class=make_env_fn_wrapper(zoo.get("env_wrapper")))
    wrap = make_vec_wrapper(zoo.get("vec_env_wrapper"), vlm="random-clip:tiny", device="cpu")
    if wrap is not None:
        venv = wrap(venv)
    model = algo_class(zoo["_algo"])(env=venv, device="cpu", **algo_kwargs)
    assert model.learning_rate == (1e-3 if "crossq" in zoo["_algo"] else 1e-4) and model.target_entropy == -2.0
    assert type(model).__name__ == {"relay": "RelayPolicy", "sac": "SAC", "tqc": "TQC", "crossq": "CrossQ",
                                    "relay_tqc": "RelayTQC", "relay_crossq": "RelayCrossQ", "drq": "DrQ",
                                    "relay_drq": "RelayDrQ", "sac_sbx": "SbxSAC", "crossq_sbx": "SbxCrossQ",
                                    "relay_sbx": "RelaySbxSAC", "relay_crossq_sbx": "RelaySbxCrossQ",
                                    }[METHODS[method]["algo"]]
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
    from furl_wrappers.runs.zoo_launcher import launcher_args

    assert launcher_args(argv) == expected


def test_launcher_keeps_the_yamls_env_kwargs() -> None:
    """rl-zoo replaces the YAML's env_kwargs with the command line's: the launcher carries them over."""
    from furl_wrappers.runs.zoo_launcher import launcher_args

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
FAST = "image_preset:'fast'"  # an --env-kwargs entry: the cheap render path (the YAMLs ask for the reference one)


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


_SBX = pytest.mark.skipif(missing_extra("relay_sbx") is not None, reason="the jax extra (sbx) is not installed")


@pytest.mark.parametrize("algo, config", [("relay", "furl.yml"), ("relay_crossq", "furl_crossq.yml"),
                                          ("relay_drq", "furl_pixels.yml"), ("sac", "vlm.yml"),
                                          pytest.param("relay_sbx", "furl_sbx.yml", marks=_SBX)])
def test_launcher_with_a_relay_config(tmp_path: Path, algo: str, config: str) -> None:
    """Launcher-trained runs enjoy without --trusted; every zip rl-zoo writes (final, and for sac the best model and
    a checkpoint) carries the pickle-free entry."""
    pytest.importorskip("rl_zoo3")
    from furl_wrappers.serialization import SAFE_ENTRY

    pixels = ["pixel_size:32"] if algo == "relay_drq" else []  # the YAML's observation/stack/repeat are kept
    relay = algo in RELAY_ALGOS
    extra = ["alignment_kwargs:{'batch_size': 32}"] if relay else []
    saves = [] if relay else ["--save-freq", "100", "--eval-freq", "100", "--eval-episodes", "1"]  # after ZOO_ARGS
    out = _run(["-m", "furl_wrappers.zoo", "train", "--algo", algo, "--env", "furl/reach-v3", "--conf-file",
                str(CONFIG_DIR / config), "-f", str(tmp_path), *ZOO_ARGS, *pixels, *saves, "-params",
                "learning_starts:50", "batch_size:32", "vec_env_wrapper:[{'furl_wrappers.wrappers.VecFuzzyVLMReward': "
                "{'vlm': 'random-clip:tiny', 'goal_image': 'auto'}}]", *extra], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / algo / "furl-reach-v3_1"
    saved = run / "furl-reach-v3.zip"
    assert saved.exists()
    zips = sorted(p.name for p in run.glob("*.zip"))
    assert zips == (["furl-reach-v3.zip"] if relay else ["best_model.zip", "furl-reach-v3.zip",
                                                         "rl_model_100_steps.zip"])
    for path in run.glob("*.zip"):
        assert SAFE_ENTRY in zipfile.ZipFile(path).namelist(), path.name
    if relay:
        assert "task_agent.zip" in zipfile.ZipFile(saved).namelist()  # RelayPolicy's own save ran
    enjoy = _run(["-m", "furl_wrappers.zoo", "enjoy", "--algo", algo, "--env", "furl/reach-v3", "--gym-packages",
                  "furl_wrappers", "-f", str(tmp_path), "-n", "60", "--no-render", "--env-kwargs", "image_size:32",
                  "max_episode_steps:50", *(["observation:'pixels'", *pixels] if pixels else [])], tmp_path)
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]
    assert "Success rate" in enjoy.stdout


def test_launcher_usage() -> None:
    out = _run(["-m", "furl_wrappers.zoo"], Path.cwd())
    assert out.returncode == 2 and "usage" in out.stderr


# ---- the launcher's hand-over: run files loaded safely, lin_ schedules, -optimize ---------------------------------
def test_zoo_yaml_loader_reads_what_rl_zoo_writes_and_nothing_else() -> None:
    from collections import OrderedDict

    from torch import nn, optim

    from furl_wrappers.runs.zoo_launcher import UnsafeYAMLError, ZooYAMLLoader
    from furl_wrappers.vlm_buffer import VLMReplayBuffer

    written = OrderedDict([("policy_kwargs", {"activation_fn": nn.ReLU, "optimizer_class": optim.AdamW,
                                              "net_arch": [32]}),
                           ("train_freq", (1, "episode")), ("replay_buffer_class", VLMReplayBuffer),
                           ("normalize", "dict(norm_obs=False, norm_reward=True)"), ("n_timesteps", 10),
                           ("env_wrapper", "furl_wrappers.wrappers.FrameInInfo"),
                           ("vec_env_wrapper", [{"furl_wrappers.wrappers.VecFuzzyVLMReward": {"vlm": "liv"}}])])
    text = yaml.dump(written)  # what rl-zoo's _save_config writes
    assert "!!python/object/apply:collections.OrderedDict" in text and "!!python/name:torch.nn" in text
    loaded = yaml.load(text, Loader=ZooYAMLLoader)
    assert type(loaded) is OrderedDict and loaded["policy_kwargs"]["activation_fn"] is nn.ReLU
    assert loaded["replay_buffer_class"] is VLMReplayBuffer and loaded["train_freq"] == (1, "episode")
    assert loaded["normalize"] == {"norm_obs": False, "norm_reward": True}  # parsed, never eval-ed
    assert {k: v for k, v in loaded.items() if k != "normalize"} == {k: v for k, v in written.items()
                                                                      if k != "normalize"}
    for bad, why in [("!!python/object/apply:os.system ['true']", r"YAML tag '!!python/object/apply:os.system'"),
                     ("!!python/object/new:subprocess.Popen [['true']]", r"'!!python/object/new:subprocess.Popen'"),
                     ("a: !!python/name:os.system ''", r"!!python/name:os.system is refused .*outside"),
                     ("!!python/name:builtins.eval ''", r"!!python/name:builtins.eval is refused"),
                     ("!!python/module:os ''", r"YAML tag '!!python/module:os' is refused"),
                     ("!!python/object/apply:collections.OrderedDict {args: [[[a, 1]]]}", "one list of \\[key"),
                     ("normalize: \"__import__('os').system('true')\"", "normalize: '__import__' is not allowed"),
                     ("env_wrapper: [{pydoc.pipepager: {cmd: 'true'}}]", r": env_wrapper 'pydoc\.pipepager' is "
                      r"refused; allowed: gymnasium Wrapper subclasses in furl_wrappers, gymnasium\.wrappers, .*"
                      r"--trusted"),
                     ("vec_env_wrapper: furl_wrappers.wrappers.FrameInInfo", "vec_env_wrapper 'furl_wrappers.wrappers"
                      ".FrameInInfo' is refused; allowed: stable_baselines3 VecEnvWrapper subclasses"),
                     ("env_wrapper: furl_wrappers.cli.main", "env_wrapper 'furl_wrappers.cli.main' is refused"),
                     ("env_wrapper: furl_wrappers.__main__.X", "env_wrapper 'furl_wrappers.__main__.X' is refused")]:
        with pytest.raises(UnsafeYAMLError, match=f"^<unicode string>.*{why}"):
            yaml.load(bad, Loader=ZooYAMLLoader)
    wrappers = "env_wrapper: furl_wrappers.wrappers.FrameInInfo\nvec_env_wrapper: [{pydoc.pipepager: {cmd: 'true'}}]\n"
    with mock.patch.object(ZooYAMLLoader, "trusted_classes", True):  # --trusted: rl-zoo builds what it names
        assert yaml.load(wrappers, Loader=ZooYAMLLoader)["vec_env_wrapper"] == [{"pydoc.pipepager": {"cmd": "true"}}]


_PLANTED = {
    "nested tag": ("config.yml", "!!python/object/apply:collections.OrderedDict\n- - - env_wrapper\n"
                   "    - furl_wrappers.wrappers.FrameInInfo\n  - - policy\n"
                   "    - !!python/object/apply:os.system [\"touch {marker}\"]\n", r"config\.yml, line 5: YAML tag "
                   r"'!!python/object/apply:os\.system' is refused"),
    "args.yml": ("args.yml", "!!python/object/apply:collections.OrderedDict\n- - - env_kwargs\n"
                 "    - !!python/object/apply:os.system [\"touch {marker}\"]\n",
                 r"args\.yml, line 3: YAML tag '!!python/object/apply:os\.system' is refused"),
    "normalize string": ("config.yml", "normalize: \"__import__('os').system('touch {marker}')\"\n",
                         r"config\.yml: normalize: '__import__' is not allowed"),
    "wrapper callable": ("config.yml", "env_wrapper:\n- pydoc.pipepager: {{cmd: 'touch {marker}'}}\n",
                         r"config\.yml: env_wrapper 'pydoc\.pipepager' is refused; allowed: gymnasium Wrapper"),
}


@pytest.mark.parametrize("case", list(_PLANTED))
def test_enjoy_runs_no_code_from_a_planted_logs_folder(tmp_path: Path, case: str) -> None:
    """rl-zoo's enjoy reads config.yml/args.yml with PyYAML's unsafe loader and evals a normalize string: through
    the launcher a planted file runs nothing and is refused in one line naming it."""
    pytest.importorskip("rl_zoo3")
    name, text, error = _PLANTED[case]
    marker = tmp_path / "pwned"
    run = tmp_path / "logs" / "relay" / "furl-reach-v3_1"
    (run / "furl-reach-v3").mkdir(parents=True)
    (run / "furl-reach-v3.zip").write_bytes(b"not read: the run files come first")
    if name == "args.yml":
        (run / "furl-reach-v3" / "config.yml").write_text(yaml.dump({"env_wrapper": "furl_wrappers.wrappers."
                                                                                       "FrameInInfo"}))
    (run / "furl-reach-v3" / name).write_text(text.format(marker=marker))
    out = _run(["-m", "furl_wrappers.zoo", "enjoy", "--algo", "relay", "--env", "furl/reach-v3", "--gym-packages",
                "furl_wrappers", "-f", str(tmp_path / "logs"), "-n", "10", "--no-render"], tmp_path)
    assert not marker.exists()
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith(f"error: {run / 'furl-reach-v3' / name}"), lines[0]
    assert re.search(error, lines[0]), lines[0]


class _Marker:
    """Unpickling it creates ``path`` (what a hostile file would do, harmlessly)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))


def _payload(marker: Path) -> dict:
    """A pickled ``data`` value of a model zip whose unpickling creates ``marker``."""
    import base64

    import cloudpickle

    return {":type:": "<class 'numpy.ndarray'>", ":serialized:": base64.b64encode(cloudpickle.dumps(_Marker(marker)))
            .decode()}


def _sac_run(logs: Path, planted: Optional[Path]) -> Path:
    """``logs/sac/furl-reach-v3_1/furl-reach-v3.zip`` of an untrained SAC: SB3's own save (what plain
    ``rl_zoo3.train`` writes) when ``planted`` is None, else furl's safe save plus a new pickled key."""
    import gymnasium as gym
    from stable_baselines3 import SAC

    from furl_wrappers.serialization import save_model

    run = logs / "sac" / "furl-reach-v3_1"
    run.mkdir(parents=True)
    env = gym.make("furl/reach-v3", image_size=32, max_episode_steps=50)
    model = SAC("MlpPolicy", env, buffer_size=10, device="cpu")
    if planted is None:
        model.save(run / "furl-reach-v3.zip")
        return run
    save_model(model, run / "safe.zip")
    with zipfile.ZipFile(run / "safe.zip") as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(entries["data"])
    data["evil"] = _payload(planted)
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(run / "furl-reach-v3.zip", "w") as archive:
        for name, blob in entries.items():
            archive.writestr(name, blob)
    (run / "safe.zip").unlink()
    return run


def _enjoy_sac(logs: Path, *flags: str) -> subprocess.CompletedProcess:
    return _run(["-m", "furl_wrappers.zoo", "enjoy", *flags, "--algo", "sac", "--env", "furl/reach-v3",
                 "--gym-packages", "furl_wrappers", "-f", str(logs), "-n", "10", "--no-render", "--env-kwargs",
                 "image_size:32", "max_episode_steps:50"], logs.parent)


def _one_error_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("case", ["sb3 save", "planted pickle"])
def test_enjoy_loads_a_non_relay_zip_without_unpickling(tmp_path: Path, case: str) -> None:
    """rl-zoo's enjoy loads a SAC zip with SB3's unpickling: through the launcher a zip without furl's entry (plain
    rl_zoo3.train) or with a planted pickle is refused in one line; --trusted is the opt-in (the payload runs)."""
    pytest.importorskip("rl_zoo3")
    marker = tmp_path / "pwned"
    run = _sac_run(tmp_path / "logs", marker if case == "planted pickle" else None)
    line = _one_error_line(_enjoy_sac(tmp_path / "logs"))
    assert not marker.exists()
    key = "evil" if case == "planted pickle" else "[a-z_]+"
    assert re.match(rf"error: '{re.escape(str(run / 'furl-reach-v3.zip'))}': '{key}' is stored only as a pickle "
                    r".*--trusted", line), line
    if case == "planted pickle":
        trusted = _enjoy_sac(tmp_path / "logs", "--trusted")
        assert trusted.returncode == 0, trusted.stderr[-3000:]
        assert marker.exists()  # the explicit opt-in: SB3 unpickled the file


def test_enjoy_refuses_a_planted_vecnormalize_pkl(tmp_path: Path) -> None:
    """rl-zoo's enjoy unpickles <run>/<env>/vecnormalize.pkl when the run's config asks for normalize."""
    pytest.importorskip("rl_zoo3")
    import cloudpickle

    marker = tmp_path / "pwned"
    stats = tmp_path / "logs" / "sac" / "furl-reach-v3_1" / "furl-reach-v3"
    stats.mkdir(parents=True)
    (stats.parent / "furl-reach-v3.zip").write_bytes(b"not read: the statistics come first")
    (stats / "config.yml").write_text(yaml.dump({"normalize": True}))
    (stats / "vecnormalize.pkl").write_bytes(cloudpickle.dumps(_Marker(marker)))
    line = _one_error_line(_enjoy_sac(tmp_path / "logs"))
    assert not marker.exists()
    assert line.startswith(f"error: '{stats / 'vecnormalize.pkl'}': VecNormalize statistics (rl-zoo's normalize) "
                           "are a pickle, so they are not loaded") and "--trusted" in line, line


def test_guarded_algorithms_save_the_entry_once_and_refuse_pickles(tmp_path: Path) -> None:
    """The classes the launcher registers: SB3's save gains the entry (the relay agents' own save is kept: nothing
    is done twice), load rebuilds from it into the same class, SB3's replay-buffer and VecNormalize pickles are
    refused unless trusted."""
    import gymnasium as gym
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from furl_wrappers.relay import RelayPolicy
    from furl_wrappers.runs.zoo_launcher import tunable
    from furl_wrappers.runs.zoo_safety import guard_pickles, guarded
    from furl_wrappers.serialization import SAFE_ENTRY, UnsafeFileError

    assert guarded(RelayPolicy).save is RelayPolicy.save and guarded(tunable(RelayPolicy)).save is RelayPolicy.save
    model = guarded(SAC)("MlpPolicy", gym.make("Pendulum-v1"), buffer_size=10, device="cpu")
    model.save(tmp_path / "guarded")  # SB3's rule: ".zip" added
    assert SAFE_ENTRY in zipfile.ZipFile(tmp_path / "guarded.zip").namelist()
    loaded = guarded(SAC).load(tmp_path / "guarded.zip", device="cpu")
    assert type(loaded) is guarded(SAC) and type(loaded).__name__ == "SAC"  # a continued run saves through it too
    SAC.save(model, tmp_path / "plain.zip")
    with pytest.raises(UnsafeFileError, match=r"plain\.zip'.*stored only as a pickle.*--trusted"):
        guarded(SAC).load(tmp_path / "plain.zip")
    assert type(guarded(SAC, True).load(tmp_path / "plain.zip", device="cpu")) is guarded(SAC, True)
    model.save_replay_buffer(tmp_path / "replay_buffer.pkl")
    with pytest.raises(UnsafeFileError, match=r"replay_buffer\.pkl'.*is a pickle.*--trusted"):
        loaded.load_replay_buffer(tmp_path / "replay_buffer.pkl")
    guarded(SAC, True).load(tmp_path / "guarded.zip", device="cpu").load_replay_buffer(tmp_path / "replay_buffer.pkl")
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    venv.save(str(tmp_path / "vecnormalize.pkl"))
    with guard_pickles(), pytest.raises(UnsafeFileError, match=r"vecnormalize\.pkl'.*--trusted"):
        VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), venv.venv)
    with guard_pickles(trusted=True):
        assert isinstance(VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), venv.venv), VecNormalize)
    assert isinstance(VecNormalize.load(str(tmp_path / "vecnormalize.pkl"), venv.venv), VecNormalize)  # restored


def test_launcher_train_parses_config_strings_rl_zoo_would_eval(tmp_path: Path) -> None:
    pytest.importorskip("rl_zoo3")
    marker = tmp_path / "pwned"
    block = yaml.safe_load((CONFIG_DIR / "sac.yml").read_text())["furl/reach-v3"]
    conf = tmp_path / "evil.yml"
    block["policy_kwargs"] = f"__import__('os').system('touch {marker}')"  # rl-zoo would eval it
    conf.write_text(yaml.dump({"furl/reach-v3": block}))
    out = _run(["-m", "furl_wrappers.zoo", "train", "--algo", "sac", "--env", "furl/reach-v3", "--conf-file", str(conf),
                "-f", str(tmp_path), *ZOO_ARGS], tmp_path)
    assert not marker.exists()
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("error: config string: '__import__' is not allowed (literals, dict(...), nn."), lines[0]


def test_relay_zip_with_lin_schedule_loads_without_trusted_and_enjoys(tmp_path: Path) -> None:
    """rl-zoo's lin_1e-4 becomes SB3's LinearSchedule (pickle-free); config.yml holds rl-zoo's OrderedDict and
    class tags, which enjoy's safe loader reads."""
    pytest.importorskip("rl_zoo3")
    from stable_baselines3.common.utils import FloatSchedule, LinearSchedule
    from torch import nn

    from furl_wrappers.relay import RelayPolicy
    from furl_wrappers.serialization import load_model

    out = _run(["-m", "furl_wrappers.zoo", "train", "--algo", "relay", "--env", "furl/reach-v3", "--conf-file",
                str(CONFIG_DIR / "furl.yml"), "-f", str(tmp_path), *ZOO_ARGS, FAST, "-params", "learning_starts:50",
                "batch_size:32", "learning_rate:'lin_1e-4'", "policy_kwargs:dict(net_arch=[32], activation_fn=nn.ReLU)",
                "vec_env_wrapper:[{'furl_wrappers.wrappers.VecFuzzyVLMReward': {'vlm': 'random-clip:tiny'}}]",
                "alignment_kwargs:{'batch_size': 32}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "relay" / "furl-reach-v3_1"
    config = (run / "furl-reach-v3" / "config.yml").read_text()
    assert "!!python/object/apply:collections.OrderedDict" in config and "!!python/name:torch.nn" in config
    for model in (RelayPolicy.load(run / "furl-reach-v3.zip", device="cpu"),  # trusted=False: no unpickling
                  load_model(RelayPolicy, run / "furl-reach-v3.zip", device="cpu")):
        assert type(model.learning_rate) is LinearSchedule and type(model.lr_schedule) is FloatSchedule
        lr = model.learning_rate
        assert (lr.start, lr.end, lr.end_fraction) == (1e-4, 0.0, 1.0)
        for agent in (model, model.task_agent):
            for progress in (1.0, 0.5, 0.2, 0.0):  # rl-zoo's: progress_remaining * 1e-4
                assert agent.lr_schedule(progress) == pytest.approx(1e-4 * progress, rel=1e-12, abs=1e-20)
        assert model.policy_kwargs["activation_fn"] is nn.ReLU
        assert model.actor.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 * model._current_progress_remaining)
    enjoy = _run(["-m", "furl_wrappers.zoo", "enjoy", "--algo", "relay", "--env", "furl/reach-v3", "--gym-packages",
                  "furl_wrappers", "-f", str(tmp_path), "-n", "60", "--no-render", "--env-kwargs", "image_size:32",
                  "max_episode_steps:50"], tmp_path)
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]
    assert "Success rate" in enjoy.stdout


@pytest.mark.parametrize("algo", ["relay", "relay_tqc", "relay_crossq", "relay_drq", "drq", "crossq",
                                  *(pytest.param(a, marks=_SBX) for a in ("sac_sbx", "relay_sbx", "relay_crossq_sbx",
                                                                          "relay_tqc_sbx"))])
def test_samplers_give_what_the_converter_rebuilds(algo: str) -> None:
    """-optimize samples with rl-zoo's SAC (TQC) sampler plus FuRL's knobs; --trial-id converts a trial back."""
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("rl_zoo3")
    from furl_wrappers.runs.zoo_config import _valid_keys
    from furl_wrappers.runs.zoo_launcher import convert_params, sample_params

    params = {"one_minus_gamma": 0.01, "batch_size_pow": 5, "learning_rate": 3e-4, "train_freq": 2, "tau": 0.02,
              "net_arch": "small", "n_quantiles": 10, "top_quantiles_to_drop_per_net": 2, "relay_threshold": 1200,
              "relay_length": 25, "relay_noise": 0.3, "rho": 0.1, "alignment_lr": 2e-4, "alignment_margin": 0.2,
              "alignment_goal_margin": 0.3}
    sampled = sample_params(algo, optuna.trial.FixedTrial(params), 4, 1, {"using_her_replay_buffer": False})
    assert sampled == convert_params(algo, {k: v for k, v in params.items()
                                            if "tqc" in algo or "quantiles" not in k})
    assert (sampled["batch_size"], sampled["gamma"], sampled["gradient_steps"]) == (32, 0.99, 2)
    assert sampled["policy_kwargs"]["net_arch"] == [64, 64] and ("tau" in sampled) == ("crossq" not in algo)
    assert set(sampled) - {"furl_tuning"} <= _valid_keys(algo)  # nothing the algorithm does not take
    if algo.startswith("relay"):
        assert (sampled["relay_threshold"], sampled["relay_lengths"], sampled["relay_noise"]) == (
            1200, [25, 50, 75, 100], 0.3)
        assert sampled["furl_tuning"] == {"rho": 0.1, "alignment_kwargs": {"lr": 2e-4, "margin": 0.2,
                                                                           "goal_margin": 0.3}}
    else:
        assert not {"relay_threshold", "furl_tuning"} & set(sampled)


def test_tunable_sets_rho_and_updates_alignment_kwargs() -> None:
    from furl_wrappers.relay import RelayPolicy
    from furl_wrappers.runs.zoo_launcher import tunable

    venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", env_kwargs={"image_size": 32})
    model = tunable(RelayPolicy)("MlpPolicy", venv, buffer_size=100, alignment_kwargs={"batch_size": 16},
                                 furl_tuning={"rho": 0.12, "alignment_kwargs": {"lr": 3e-4, "margin": 0.2}})
    assert venv.vlm_reward.rho == 0.12 and model.vlm_reward is venv.vlm_reward
    assert model.alignment_kwargs == {"batch_size": 16, "lr": 3e-4, "margin": 0.2}
    assert (model.alignment_callback.lr, model.alignment_callback.batch_size) == (3e-4, 16)
    with pytest.raises(ConfigError, match=r"^furl_tuning: unknown key 'rhoo' \(valid: alignment_kwargs, rho\)"):
        tunable(RelayPolicy)("MlpPolicy", venv, buffer_size=100, furl_tuning={"rhoo": 0.1})
    venv.close()


@pytest.mark.parametrize("algo, config", [("sac", "sac.yml"), ("relay", "furl.yml")])
def test_launcher_optimize(tmp_path: Path, algo: str, config: str) -> None:
    """-optimize: relay had no sampler (KeyError: 'relay'); SAC's report needs pandas (the zoo extra has it)."""
    pytest.importorskip("rl_zoo3")
    import csv
    import math

    vlm = (["vec_env_wrapper:[{'furl_wrappers.wrappers.VecFuzzyVLMReward': {'vlm': 'random-clip:tiny'}}]",
            "alignment_kwargs:{'batch_size': 32}"] if algo == "relay" else [])
    out = _run(["-m", "furl_wrappers.zoo", "train", "--algo", algo, "--env", "furl/reach-v3", "--conf-file",
                str(CONFIG_DIR / config), "-f", str(tmp_path), *ZOO_ARGS, FAST, "-n", "200", "-optimize", "--n-trials",
                "2", "--n-jobs", "1", "--sampler", "random", "--pruner", "none", "--n-evaluations", "1",
                "--eval-episodes", "1", "--no-optim-plots", "-params", "learning_starts:150", *vlm], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    report, = (tmp_path / algo).glob("report_furl-reach-v3_2-trials-200-random-none_*.csv")
    rows = list(csv.DictReader(report.open()))
    assert [row["state"] for row in rows] == ["COMPLETE", "COMPLETE"]
    for row in rows:
        assert math.isfinite(float(row["value"])) and row["params_net_arch"] in ("small", "medium", "big")
        if algo == "relay":
            assert 500 <= int(row["params_relay_threshold"]) <= 10_000 and row["params_relay_length"] in (
                "25", "50", "100")
            assert 0.01 <= float(row["params_rho"]) <= 0.25 and 1e-5 <= float(row["params_alignment_lr"]) <= 1e-3
        else:
            assert "params_rho" not in row


# ---- policy_kwargs / replay_buffer_* strings: a restricted grammar, not eval --------------------------------------
def _split(key: str, text: str, algo: str = "sac") -> dict:
    algo_kwargs, _ = split_config({key: text, "_algo": algo})
    return algo_kwargs[key]


def test_config_strings_never_run_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^policy_kwargs: '__import__' is not allowed \(literals, dict\(\.\.\.\)"):
        _split("policy_kwargs", "__import__('os').system('touch X')")
    with pytest.raises(ConfigError, match="replay_buffer_kwargs: '__import__' is not allowed"):
        _split("replay_buffer_kwargs", "dict(lag=__import__('os').system('touch X'))")
    assert not (tmp_path / "X").exists()


def test_config_strings_in_the_grammar_give_the_exact_objects() -> None:
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
    from torch import nn, optim

    from furl_wrappers.vlm_buffer import VLMReplayBuffer

    assert _split("policy_kwargs", "dict(net_arch=[256, 256], activation_fn=nn.ReLU)") == {
        "net_arch": [256, 256], "activation_fn": nn.ReLU}
    got = _split("policy_kwargs", "dict(net_arch=dict(pi=[64, 64], qf=[400, 300]), activation_fn=th.nn.Tanh, "
                                  "log_std_init=-3, use_sde=False, optimizer_class=torch.optim.AdamW, "
                                  "optimizer_kwargs=dict(eps=1e-5, betas=(0.9, 0.999)), n_critics=+2, x=None)")
    assert got == {"net_arch": {"pi": [64, 64], "qf": [400, 300]}, "activation_fn": nn.Tanh, "log_std_init": -3,
                   "use_sde": False, "optimizer_class": optim.AdamW, "optimizer_kwargs": {"eps": 1e-5,
                   "betas": (0.9, 0.999)}, "n_critics": 2, "x": None}
    assert isinstance(got["optimizer_kwargs"]["betas"], tuple) and got["activation_fn"] is nn.Tanh
    assert _split("policy_kwargs", "{'net_arch': [32], 'activation_fn': torch.nn.LeakyReLU}") == {
        "net_arch": [32], "activation_fn": nn.LeakyReLU}
    for name in ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid"):
        for prefix in ("nn", "th.nn", "torch.nn"):
            assert _split("policy_kwargs", f"dict(activation_fn={prefix}.{name})")["activation_fn"] is getattr(nn, name)
    for name in ("Adam", "AdamW", "SGD", "RMSprop"):
        for prefix in ("th.optim", "torch.optim"):
            assert _split("policy_kwargs", f"dict(optimizer_class={prefix}.{name})")["optimizer_class"] is getattr(
                optim, name)
    assert _split("replay_buffer_kwargs", "dict(lag=5, alignment_buffer_size=100)", "relay") == {
        "lag": 5, "alignment_buffer_size": 100}
    for text, cls in [("HerReplayBuffer", HerReplayBuffer), ("ReplayBuffer", ReplayBuffer),
                      ("DictReplayBuffer", DictReplayBuffer), ("VLMReplayBuffer", VLMReplayBuffer),
                      ("stable_baselines3.HerReplayBuffer", HerReplayBuffer),
                      ("furl_wrappers.vlm_buffer.VLMReplayBuffer", VLMReplayBuffer), ("None", None)]:
        assert _split("replay_buffer_class", text) is cls
    classes = split_config({"replay_buffer_class": VLMReplayBuffer, "_algo": "relay"})[0]  # a class stays a class
    assert classes["replay_buffer_class"] is VLMReplayBuffer


def test_every_zoo_config_parses_as_eval_did() -> None:
    """Each block of every zoo_configs/*.yml gives the objects rl-zoo's eval gave, here without eval."""
    import importlib

    import numpy as np
    import torch as th
    from torch import nn

    scope = {"importlib": importlib, "nn": nn, "th": th, "np": np}  # the scope split_config used to eval in
    for method in [m for m in METHODS if missing_extra(METHODS[m]["algo"]) is None]:
        for env in yaml.safe_load((CONFIG_DIR / f"{method}.yml").read_text()):
            if env == "defaults":
                continue
            cfg = load_config(method, env)
            algo_kwargs, zoo = split_config(cfg)
            expected = {k: eval(v, scope) if k in ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs")  # noqa: S307
                        and isinstance(v, str) else v for k, v in cfg.items() if k not in zoo}
            assert algo_kwargs == expected, (method, env)
            assert algo_kwargs["policy_kwargs"] == {
                "tqc": {"net_arch": [256, 256], "n_quantiles": 25, "n_critics": 2},
                "crossq": {"net_arch": {"pi": [256, 256], "qf": [1024, 1024]}},
                "drq": {"net_arch": [256, 256, 256]},
            }.get(cfg["_algo"].removeprefix("relay_").removesuffix("_sbx"), {"net_arch": [256, 256]})


def test_nested_typos_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "typo.yml"
    bad.write_text("furl/reach-v3:\n  relay_threshold: 10\n  alignment_kwargs: {goal_margn: 0.1}\n")
    cfg = load_config(str(bad), "furl/reach-v3")
    with pytest.raises(ConfigError, match=r"^alignment_kwargs: unknown key 'goal_margn'; did you mean 'goal_margin'\? "
                                          r"\(valid: batch_size, goal_margin, lr, margin, "):
        split_config(cfg)
    with pytest.raises(ConfigError, match=r"replay_buffer_kwargs: unknown key 'lagg'.*valid: .*alignment_buffer_size"):
        split_config(load_config("furl", "furl/reach-v3", {"replay_buffer_kwargs": {"lagg": 10}}))
    with pytest.raises(ConfigError, match="replay_buffer_kwargs: unknown key 'buffer_size'"):  # SB3 sets it
        split_config(load_config("furl", "furl/reach-v3", {"replay_buffer_kwargs": {"buffer_size": 10}}))
    with pytest.raises(ConfigError, match="replay_buffer_kwargs: unknown key 'lag'"):  # SAC's plain ReplayBuffer
        split_config(load_config("sac", "furl/reach-v3", {"replay_buffer_kwargs": "dict(lag=10)"}))
    her = split_config(load_config("sac", "furl/reach-v3", {"replay_buffer_class": "HerReplayBuffer",
                                                            "replay_buffer_kwargs": {"n_sampled_goal": 4}}))[0]
    assert her["replay_buffer_kwargs"] == {"n_sampled_goal": 4}
    with pytest.raises(ConfigError, match=r"alignment_kwargs: unknown key 'lag'"):  # the buffer's (no shim moves it)
        split_config(load_config("furl", "furl/reach-v3", {"alignment_kwargs": {"margin": 0.1, "lag": 3}}))
