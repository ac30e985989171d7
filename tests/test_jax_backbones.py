"""sbx's SAC, CrossQ and TQC as FuRL backbones: the task agent's settings, one shared batch per update, NaN weights
stopped at the env, and one line saying what to install where the jax extra is missing. (Schedule, threshold,
save/load and exact resume: tests/test_backbones.py, which runs the SB3 and the JAX relays through the same tests.)"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch

from furl_wrappers.runs import zoo_config
from furl_wrappers.runs.zoo_config import ConfigError, algo_class, missing_extra

NET = {"net_arch": [16, 16]}
_NO_SBX = pytest.mark.skipif(importlib.util.find_spec("sbx") is None, reason="the jax extra (sbx) is not installed")


@_NO_SBX
def test_task_agent_gets_the_vlm_agents_settings(vlm_venv, relay_model) -> None:
    import sbx

    from furl_wrappers.jax_backbones import RelaySbxCrossQ, RelaySbxSAC, SbxCrossQ, SbxSAC, SbxTQC

    assert [issubclass(a, b) for a, b in ((SbxSAC, sbx.SAC), (SbxCrossQ, sbx.CrossQ), (SbxTQC, sbx.TQC))] == [1, 1, 1]
    model = relay_model(vlm_venv(), cls=RelaySbxSAC, policy_kwargs=NET, ent_coef=0.1, qf_learning_rate=3e-4,
                        policy_delay=2, tau=0.02, target_entropy="paper")
    agent = model.task_agent
    assert type(agent) is SbxSAC and model.backbone is SbxSAC
    # sbx keeps ent_coef as ent_coef_init (ent_coef becomes a flax module) and qf_learning_rate as its initial value
    assert (agent.ent_coef_init, agent.initial_qf_learning_rate, agent.qf_learning_rate) == (0.1, 3e-4, 3e-4)
    assert (agent.policy_delay, agent.tau, agent.target_entropy, model.target_entropy) == (2, 0.02, -2.0, -2.0)
    assert agent.replay_buffer.buffer_size == model.replay_buffer.buffer_size  # the shared buffer's view
    crossq = relay_model(vlm_venv(), cls=RelaySbxCrossQ, policy_kwargs=NET)
    assert type(crossq.task_agent) is SbxCrossQ
    assert (crossq.learning_rate, crossq.task_agent.learning_rate, crossq.task_agent.policy_delay) == (1e-3, 1e-3, 3)


@_NO_SBX
def test_gradient_steps_share_one_drawn_batch(monkeypatch: pytest.MonkeyPatch, vlm_venv, relay_model) -> None:
    """sbx draws all ``n`` batches of ``train(n)`` in one call: the task agent gets those rows, with task rewards."""
    from furl_wrappers.jax_backbones import RelaySbxSAC

    model = relay_model(vlm_venv(steps=30), cls=RelaySbxSAC, policy_kwargs=NET, learning_starts=10_000, align=False)
    model.learn(30)  # fills the buffer, no training
    buf, view = model.replay_buffer, model.task_agent.replay_buffer
    seen: dict = {}
    main_sample, view_sample = buf.sample, view.sample
    monkeypatch.setattr(buf, "sample", lambda *a, **k: seen.setdefault("vlm", main_sample(*a, **k)))
    monkeypatch.setattr(view, "sample", lambda *a, **k: seen.setdefault("task", view_sample(*a, **k)))
    model.train(4, 8)
    assert model._n_updates == model.task_agent._n_updates == 4
    logged = model.logger.name_to_value
    assert logged["train/n_updates"] == logged["task_agent/n_updates"] == 4
    assert seen["vlm"].observations.shape == (32, 39)  # 4 x 8 rows in one draw
    torch.testing.assert_close(seen["vlm"].observations, seen["task"].observations)
    inds, envs, _ = buf.last_batch
    torch.testing.assert_close(seen["task"].rewards, torch.as_tensor(buf.task_rewards[inds, envs]).reshape(-1, 1))


@_NO_SBX
def test_nan_weights_are_stopped_at_the_env_in_one_line(vlm_venv, relay_model) -> None:
    """A policy whose weights went NaN in training (loading refuses NaN weights: tests/test_jax_state.py)."""
    import jax

    from furl_wrappers.jax_backbones import RelaySbxSAC

    model = relay_model(vlm_venv(), cls=RelaySbxSAC, policy_kwargs=NET, learning_starts=5)
    actor = model.policy.actor_state
    model.policy.actor_state = actor.replace(params=jax.tree_util.tree_map(lambda x: x * float("nan"), actor.params))
    with pytest.raises(ValueError, match=r"VecFuzzyVLMReward: the action for env 0 contains NaN") as info:
        model.learn(20)
    assert "\n" not in str(info.value)
    assert model.num_timesteps == 5  # the random warm-up steps ran; the first policy action was refused


def test_jax_methods_without_the_extra_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys) -> None:
    from furl_wrappers.cli import main as furl
    from furl_wrappers.runs.zoo_launcher import main as zoo

    monkeypatch.setattr(zoo_config, "_have_sbx", lambda: False)
    assert missing_extra("relay") is None and missing_extra("relay_crossq_sbx") is not None
    with pytest.raises(ConfigError, match=r'relay_sbx.*not installed: pip install "furl_wrappers\[jax\]"'):
        algo_class("relay_sbx")
    with pytest.raises(ConfigError, match="unknown algorithm 'relay_sbq'. Did you mean relay_sbx"):
        algo_class("relay_sbq")
    out = tmp_path / "run"
    assert furl(["train", "--method", "furl_sbx", "--task", "reach", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "furl_wrappers[jax]"' in err and not out.exists()
    with pytest.raises(SystemExit) as exit_info:
        zoo(["train", "--algo", "relay_sbx", "--env", "furl/reach-v3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'relay_sbx' runs on JAX (sbx), which is not installed" in err


def test_importing_the_backbones_without_sbx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sbx", None)  # import sbx fails, as where it is not installed
    monkeypatch.delitem(sys.modules, "furl_wrappers.jax_backbones", raising=False)
    with pytest.raises(ImportError, match=r'need sbx and JAX .*: pip install "furl_wrappers\[jax\]"'):
        importlib.import_module("furl_wrappers.jax_backbones")


@_NO_SBX
def test_predict_and_evaluate_match_after_save_load_of_plain_agents(tmp_path) -> None:
    """The plain sbx agents (the sac_sbx/crossq_sbx methods) round-trip through SB3's own load too."""
    import gymnasium as gym

    from furl_wrappers.jax_backbones import SbxCrossQ

    env = gym.make("Pendulum-v1")
    model = SbxCrossQ("MlpPolicy", env, buffer_size=100, learning_starts=10, batch_size=8, seed=3,
                      policy_kwargs={"net_arch": {"pi": [16], "qf": [32]}})
    model.learn(20)
    model.save(tmp_path / "crossq")  # SB3's save: the JAX state goes in as parameters, never pickled
    loaded = SbxCrossQ.load(tmp_path / "crossq", device="cpu")
    obs = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    stats = "policy.qf_state.batch_stats"
    assert any(k.startswith(stats) for k in loaded.get_parameters()["jax"])  # BatchRenorm statistics travel
