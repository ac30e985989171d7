"""The relay over SAC (RelayPolicy), TQC, CrossQ and DrQ (pixels), and over sbx's JAX SAC, CrossQ and TQC: schedule,
threshold, shared batch, save/load, exact resume, furl train — the same behaviour whatever the algorithm of the two
relay agents (the JAX ones skip where the jax extra is not installed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sb3_contrib import TQC, CrossQ
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

import furl_wrappers
from furl_wrappers.backbones import RelayCrossQ, RelayDrQ, RelayTQC
from furl_wrappers.drq import DrQ
from furl_wrappers.pixel_buffer import VLMPixelReplayBuffer
from furl_wrappers.relay import RelayPolicy, is_relay
from furl_wrappers.runs.zoo_config import algo_class
from furl_wrappers.serialization import load_model
from tests.test_relay import SIZE, _Record  # the relay tests' frame size and step recorder

CLASSES = [RelayPolicy, RelayTQC, RelayCrossQ, RelayDrQ]
ids = [c.__name__ for c in CLASSES]
NET = {"net_arch": [32, 32]}  # small policies (DrQ reads pixels: vlm_venv(pixels=True), without action repeat)
HAVE_SBX = importlib.util.find_spec("sbx") is not None
_NO_SBX = pytest.mark.skipif(not HAVE_SBX, reason="the jax extra (sbx) is not installed")


def _relays(*jax: str) -> list:
    """The SB3 relay algorithms by zoo name, and ``jax`` of the sbx ones (resolved only where sbx is installed; each
    sbx agent compiles its own update, so the JAX backbones run the tests that depend on the algorithm)."""
    return ["relay", "relay_tqc", "relay_crossq", "relay_drq"] + [pytest.param(name, marks=_NO_SBX) for name in jax]


#: every relay algorithm, and the JAX ones on the paper's SAC and on CrossQ
RELAYS = _relays("relay_sbx", "relay_crossq_sbx", "relay_tqc_sbx")
RELAYS_SAC_CROSSQ = _relays("relay_sbx", "relay_crossq_sbx")


def _weights(agent) -> list[torch.Tensor]:
    """An agent's learned state: its torch policy (BatchRenorm statistics included) and entropy coefficient, or every
    JAX leaf of an sbx agent (networks, targets, optimiser states, random keys)."""
    params = agent.get_parameters()
    if "jax" in params:
        return [t.clone() for t in params["jax"].values()]
    return [t.detach().clone() for t in agent.policy.state_dict().values()] + [agent.log_ent_coef.detach().clone()]


def test_backbones_and_relay_check() -> None:
    assert [c.backbone for c in CLASSES] == [SAC, TQC, CrossQ, DrQ]
    assert all(is_relay(c) for c in CLASSES) and not is_relay(SAC) and not is_relay(CrossQ)
    assert issubclass(RelayTQC, TQC) and issubclass(RelayCrossQ, CrossQ) and issubclass(RelayPolicy, SAC)
    assert furl_wrappers.RelayTQC is RelayTQC and furl_wrappers.RelayCrossQ is RelayCrossQ
    assert furl_wrappers.RelayDrQ is RelayDrQ and furl_wrappers.DrQ is DrQ


def test_second_agent_gets_the_vlm_agents_settings(vlm_venv, relay_model) -> None:
    tqc = relay_model(vlm_venv(), cls=RelayTQC, policy_kwargs=NET, top_quantiles_to_drop_per_net=3,
                      learning_rate=5e-4, tau=0.02, target_entropy="paper")
    assert type(tqc.task_agent) is TQC and tqc.task_agent.top_quantiles_to_drop_per_net == 3
    assert (tqc.task_agent.learning_rate, tqc.task_agent.tau, tqc.task_agent.target_entropy) == (5e-4, 0.02, -2.0)
    assert tqc.task_agent.replay_buffer.buffer_size == tqc.replay_buffer.buffer_size  # the shared buffer's view
    drq = relay_model(vlm_venv(pixels=True), cls=RelayDrQ, image_pad=2, ent_coef=0.1, gradient_steps=2,
                      policy_kwargs={"net_arch": [32, 32], "features_extractor_kwargs": {"features_dim": 20}})
    assert type(drq.task_agent) is DrQ and drq.task_agent.image_pad == 2
    assert (drq.task_agent.ent_coef, drq.task_agent.gradient_steps, drq.task_agent.device.type) == (0.1, 2, "cpu")
    assert drq.task_agent.policy.critic.features_extractor.features_dim == 20  # SAC's settings reach DrQ too
    assert type(drq.replay_buffer) is VLMPixelReplayBuffer  # each frame once, shared by both agents
    crossq = relay_model(cls=RelayCrossQ, policy_kwargs=NET, venv=vlm_venv(), policy_delay=2)
    assert type(crossq.task_agent) is CrossQ and crossq.task_agent.policy_delay == 2
    assert crossq.learning_rate == crossq.task_agent.learning_rate == 1e-3  # CrossQ's own default


@pytest.mark.parametrize("algo", RELAYS_SAC_CROSSQ)
def test_schedule_per_env_with_alternating_start(algo, vlm_venv, relay_model) -> None:
    cls = algo_class(algo)
    model = relay_model(cls=cls, policy_kwargs=NET, venv=vlm_venv(pixels=cls is RelayDrQ, n_envs=2, steps=7),
                        relay_lengths=(3,), learning_starts=10_000)
    rec = _Record(lambda cb: cb.model.task_agent_acting().copy())
    model.learn(2 * 14, callback=rec)
    acting = np.array(rec.rows)
    ep1, ep2 = [0, 0, 0, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0, 1]
    np.testing.assert_array_equal(acting[:, 0], ep1 + ep2)
    np.testing.assert_array_equal(acting[:, 1], ep2 + ep1)


@pytest.mark.parametrize("algo", _relays("relay_sbx"))
def test_threshold_ends_relay_and_second_agent_training(algo, vlm_venv, relay_model) -> None:
    cls = algo_class(algo)
    model = relay_model(cls=cls, policy_kwargs=NET, venv=vlm_venv(pixels=cls is RelayDrQ), relay_lengths=(2,),
                        relay_threshold=5)

    def bump(cb: BaseCallback):
        if cb.num_timesteps == 20:
            cb.model.replay_buffer.alignment.positive_count = 5
        return (cb.model.relay_active, cb.model.task_agent._n_updates, cb.model.task_agent_acting()[0])

    rec = _Record(bump)
    model.learn(40, callback=rec)
    active = [r[0] for r in rec.rows]
    assert all(active[:20]) and not any(active[21:])
    updates = [r[1] for r in rec.rows]
    assert updates[-1] == updates[21] and updates[19] > 0
    assert not any(r[2] for r in rec.rows[21:]) and any(r[2] for r in rec.rows[:20])


@pytest.mark.parametrize("algo", RELAYS_SAC_CROSSQ)
def test_one_batch_task_rewards_for_second_relabelled_for_vlm(algo, monkeypatch: pytest.MonkeyPatch, vlm_venv,
                                                              relay_model) -> None:
    cls = algo_class(algo)
    model = relay_model(cls=cls, policy_kwargs=NET, venv=vlm_venv(pixels=cls is RelayDrQ), relay_lengths=(2,),
                        align=False)
    model.learn(20)
    buf, view = model.replay_buffer, model.task_agent.replay_buffer
    seen: dict = {}
    main_sample, view_sample = buf.sample, view.sample
    monkeypatch.setattr(buf, "sample", lambda *a, **k: seen.setdefault("vlm", main_sample(*a, **k)))
    monkeypatch.setattr(view, "sample", lambda *a, **k: seen.setdefault("sac", view_sample(*a, **k)))
    updates = model.task_agent._n_updates
    model.train(1, 8)
    assert model.task_agent._n_updates == updates + 1
    inds, envs, _ = buf.last_batch
    torch.testing.assert_close(seen["vlm"].observations, seen["sac"].observations)
    task = torch.as_tensor(buf.task_rewards[inds, envs]).reshape(-1, 1)
    torch.testing.assert_close(seen["sac"].rewards, task)
    r_vlm = buf.reward_model.reward(torch.as_tensor(buf.embeddings[inds, envs]).float()).reshape(-1, 1)
    torch.testing.assert_close(seen["vlm"].rewards, task + 0.05 * r_vlm, rtol=1e-5, atol=1e-6)



@pytest.mark.parametrize("cls", CLASSES, ids=ids)
def test_gradient_steps_train_each_agent_as_its_backbone_does(cls, monkeypatch: pytest.MonkeyPatch, vlm_venv,
                                                              relay_model) -> None:
    """train(4) with target_update_interval=2: both agents count and log 4 updates and update their targets at
    steps 0 and 2 of the call, as the backbone's own train(4) does (CrossQ has no target networks)."""
    from sb3_contrib.tqc import tqc as tqc_module
    from stable_baselines3.sac import sac as sac_module

    module = tqc_module if cls is RelayTQC else sac_module  # DrQ trains through SAC's train
    polyak: list = []
    real = module.polyak_update
    monkeypatch.setattr(module, "polyak_update", lambda *a: (polyak.append(a[2]), real(*a))[1])
    interval = {} if cls is RelayCrossQ else {"target_update_interval": 2}
    model = relay_model(cls=cls, policy_kwargs=NET, venv=vlm_venv(pixels=cls is RelayDrQ), gradient_steps=4,
                        learning_starts=10_000, align=False, **interval)
    model.learn(20)  # fills the buffer, no training (learning_starts)
    model.train(4, 8)
    logged = model.logger.name_to_value
    assert model._n_updates == model.task_agent._n_updates == 4
    assert logged["train/n_updates"] == logged["task_agent/n_updates"] == 4
    assert len(polyak) == (0 if cls is RelayCrossQ else 2 * 2 * 2)  # agents x updates x (critic, batch-norm stats)


@pytest.mark.parametrize("algo", RELAYS)
def test_save_load_gives_the_same_actions_without_unpickling(algo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            vlm_venv, relay_model) -> None:
    cls = algo_class(algo)
    import cloudpickle

    venv = vlm_venv(pixels=cls is RelayDrQ)
    model = relay_model(cls=cls, policy_kwargs=NET, venv=venv, learning_starts=10)
    model.learn(30)
    model.save(tmp_path / "ckpt")

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(cloudpickle, "loads", refuse)  # SB3's only way to unpickle a model attribute
    obs = venv.reset()
    for loaded in (cls.load(tmp_path / "ckpt", env=vlm_venv(pixels=cls is RelayDrQ), device="cpu"),
                    # trusted=False by default
                   load_model(cls, tmp_path / "ckpt.zip", env=vlm_venv(pixels=cls is RelayDrQ), device="cpu")):
        assert type(loaded) is cls and type(loaded.task_agent) is cls.backbone
        for a, b in ((model, loaded), (model.task_agent, loaded.task_agent)):
            np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])
        assert loaded.schedule.state_dict() == model.schedule.state_dict() and loaded.num_timesteps == 30


def _state(model) -> list[torch.Tensor]:
    return _weights(model) + _weights(model.task_agent)


@pytest.mark.parametrize("algo", RELAYS_SAC_CROSSQ)
def test_save_load_resume_is_exact(algo, tmp_path: Path, vlm_venv, relay_model) -> None:
    cls = algo_class(algo)
    n, m = 30, 20
    kwargs = dict(learning_starts=10, relay_lengths=(3, 4))
    venv = vlm_venv(pixels=cls is RelayDrQ)
    straight = relay_model(cls=cls, policy_kwargs=NET, venv=venv, **kwargs)
    straight.learn(n + m)
    expected = _state(straight) + [p.detach().clone() for p in venv.reward_model.parameters()]

    first = relay_model(cls=cls, policy_kwargs=NET, venv=vlm_venv(pixels=cls is RelayDrQ), **kwargs)
    first.learn(n)
    first.save(tmp_path / "ckpt")
    first.save_replay_buffer(tmp_path / "buffer")
    del first
    venv_b = vlm_venv(pixels=cls is RelayDrQ)
    resumed = cls.load(tmp_path / "ckpt", env=venv_b, device="cpu")
    resumed.load_replay_buffer(tmp_path / "buffer")
    resumed.learn(m, reset_num_timesteps=False)
    got = _state(resumed) + [p.detach().clone() for p in venv_b.reward_model.parameters()]
    assert resumed.schedule.state_dict() == straight.schedule.state_dict()
    assert resumed.task_agent._n_updates == straight.task_agent._n_updates > 0
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


SPLIT = {"furl_pixels": 100.0, "furl_sbx": 50.0}  # a failed evaluation episode's task return (-1 a step)
ALGO = {"furl_tqc": "relay_tqc", "furl_crossq": "relay_crossq", "furl_pixels": "relay_drq", "furl_sbx": "relay_sbx",
        "furl_crossq_sbx": "relay_crossq_sbx"}


@pytest.mark.parametrize("method", ["furl_tqc", "furl_crossq", "furl_pixels", pytest.param("furl_sbx", marks=_NO_SBX)])
def test_furl_train_runs_and_reports_its_own_row(method: str, tmp_path: Path) -> None:
    from furl_wrappers.runs.report import load_run, results_table
    from furl_wrappers.runs.training import RunSpec, train_run

    pixels = {"pixel_size": SIZE} if method == "furl_pixels" else {}  # the YAML sets observation/stack/repeat
    spec = RunSpec(method=method, task="reach", seed=0, steps=150, vlm="random-clip:tiny", out=str(tmp_path / method),
                   device="cpu", eval_freq=150, env_kwargs={"image_size": SIZE, "max_episode_steps": 50, **pixels},
                   hyperparams={"learning_starts": 50, "batch_size": 16, "alignment_kwargs": {"batch_size": 16},
                                "policy_kwargs": "dict(net_arch=[32, 32])", "buffer_size": 1000},
                   quiet=True, checkpoint_freq=150, image_preset="fast")
    run = train_run(spec)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["method"] == method and summary["timesteps_done"] == 150
    assert summary["algo"] == ALGO[method]
    assert "furl/relay_on" in (run / "progress.csv").read_text().splitlines()[0]
    table = results_table([load_run(run)])
    assert f"| {method} |" in table
    if method in ("furl_pixels", "furl_sbx"):  # furl_pixels: 50 agent steps an episode (repeat 2), as in training
        from furl_wrappers.runs.evaluation import evaluate_run

        result = evaluate_run(run, episodes=1)  # without trusted: nothing unpickled
        assert result["mean_task_return"] == -SPLIT[method] or result["success_rate_any_step"] > 0


@pytest.mark.parametrize("method", ["tqc", "crossq", "furl_crossq", "drq", "furl_pixels",
                                    pytest.param("sac_sbx", marks=_NO_SBX), pytest.param("furl_sbx", marks=_NO_SBX)])
def test_furl_train_resume_is_exact_for_each_backbone(method: str, tmp_path: Path) -> None:
    import shutil

    from furl_wrappers.runs.training import RunSpec, train_run

    def spec(out: Path, resume: bool = False) -> RunSpec:
        extra = {"alignment_kwargs": {"batch_size": 16}} if method.startswith("furl") else {}
        pixels = {"pixel_size": SIZE} if method in ("drq", "furl_pixels") else {}
        return RunSpec(method=method, task="reach", seed=0, steps=100, vlm="random-clip:tiny", out=str(out),
                       device="cpu", eval_freq=50, env_kwargs={"image_size": SIZE, "max_episode_steps": 25, **pixels},
                       hyperparams={"learning_starts": 30, "batch_size": 16, "buffer_size": 1000,
                                    "policy_kwargs": "dict(net_arch=[32, 32])", **extra},
                       quiet=True, checkpoint_freq=50, image_preset="fast", resume=resume)

    whole = train_run(spec(tmp_path / "whole"))
    assert json.loads((whole / "checkpoint" / "meta.json").read_text())["num_timesteps"] == 50
    # the same run stopped after its checkpoint at step 50 (everything after it is redone on resume)
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    for name in ("summary.json", "model.zip", "reward_model_final.pt"):
        (cut / name).unlink(missing_ok=True)
    train_run(spec(cut, resume=True))
    cls = algo_class(json.loads((whole / "config.json").read_text())["algo"])
    a, b = (load_model(cls, run / "model.zip", device="cpu", buffer_size=1) for run in (whole, cut))
    expected, got = _weights(a), _weights(b)  # BatchRenorm statistics and target networks included
    assert len(expected) == len(got) > 0
    for x, y in zip(expected, got):
        assert torch.equal(x, y)
