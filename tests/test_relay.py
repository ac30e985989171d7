"""RelayPolicy: schedule, noise, threshold, shared batch, predict, SB3 callbacks, save/load/exact resume."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback

import furl_wrappers
from furl_wrappers.relay import CheckpointMismatchError, RelayPolicy

SIZE = 32


class _Record(BaseCallback):
    """Records, at every step, which envs the SAC agent acted in (the mask used for this step's action)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn, self.rows = fn, []

    def _on_step(self) -> bool:
        self.rows.append(self.fn(self))
        return True


def test_schedule_per_env_with_alternating_start(vlm_venv, relay_model) -> None:
    venv = vlm_venv(n_envs=2, steps=7)
    model = relay_model(venv, relay_lengths=(3,), learning_starts=10_000)  # warm-up: schedule runs, no training
    rec = _Record(lambda cb: cb.model.task_agent_acting().copy())
    model.learn(2 * 14, callback=rec)
    acting = np.array(rec.rows)  # (14 steps, 2 envs)
    # env 0: episode 1 starts with VLM (3 vlm, 3 sac, 1 vlm); episode 2 starts with SAC (3 sac, 3 vlm, 1 sac)
    ep1 = [0, 0, 0, 1, 1, 1, 0]
    ep2 = [1, 1, 1, 0, 0, 0, 1]
    np.testing.assert_array_equal(acting[:, 0], ep1 + ep2)
    np.testing.assert_array_equal(acting[:, 1], ep2 + ep1)  # env 1 starts the other way round


def test_relay_lengths_are_drawn_from_the_set(vlm_venv, relay_model) -> None:
    model = relay_model(vlm_venv(n_envs=4, steps=5), relay_lengths=(50, 100, 150, 200), learning_starts=10_000)
    seen = set()
    rec = _Record(lambda cb: seen.update(cb.model.schedule.relay_length.tolist()))
    model.learn(4 * 60, callback=rec)
    assert seen <= {50, 100, 150, 200} and len(seen) >= 3


def test_noise_only_on_sac_actions(monkeypatch: pytest.MonkeyPatch, vlm_venv, relay_model) -> None:
    model = relay_model(vlm_venv(n_envs=2, steps=8), relay_lengths=(2,), relay_noise=0.2)
    zeros = lambda obs, deterministic=False: (np.zeros((len(obs), 4), np.float32), None)  # noqa: E731
    monkeypatch.setattr(model, "predict", zeros)
    monkeypatch.setattr(model.task_agent, "predict", zeros)
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(None, [""]))
    model._last_obs = model.env.reset()
    for _ in range(6):
        mask = model.task_agent_acting()
        action, buffer_action = model._sample_action(0, None, 2)
        assert np.all(buffer_action[~mask] == 0.0)
        if mask.any():
            assert np.all(np.abs(buffer_action[mask]) > 0) and np.all(np.abs(buffer_action[mask]) <= 1.0)
            assert 0.05 < np.std(buffer_action[mask]) < 0.5  # N(0, 0.2), clipped
        model._store_transition(model.replay_buffer, buffer_action, model._last_obs, np.zeros(2),
                                np.zeros(2, bool), [_fake_info(), _fake_info()])


def _fake_info() -> dict:
    return {"vlm_embedding": np.zeros(32, np.float32), "is_success": False, "task_reward": -1.0}


def test_threshold_ends_relay_and_sac_training(vlm_venv, relay_model) -> None:
    model = relay_model(vlm_venv(n_envs=1, steps=10), relay_lengths=(2,), relay_threshold=5)

    def bump(cb: BaseCallback):
        if cb.num_timesteps == 20:
            cb.model.replay_buffer.alignment.positive_count = 5  # as if 5 positive frames had been labelled
        return (cb.model.relay_active, cb.model.task_agent._n_updates, cb.model.task_agent_acting()[0])

    rec = _Record(bump)
    model.learn(40, callback=rec)
    active = [r[0] for r in rec.rows]
    assert all(active[:20]) and not any(active[21:])
    updates = [r[1] for r in rec.rows]
    assert updates[-1] == updates[21] and updates[19] > 0  # the SAC agent stopped training
    assert not any(r[2] for r in rec.rows[21:])  # and stopped acting
    assert any(r[2] for r in rec.rows[:20])


def test_batches_task_rewards_for_sac_relabelled_for_vlm(monkeypatch: pytest.MonkeyPatch, vlm_venv,
                                                         relay_model) -> None:
    model = relay_model(vlm_venv(), relay_lengths=(2,), align=False)
    model.learn(20)
    buf = model.replay_buffer
    seen = {}
    main_sample, view_sample = buf.sample, model.task_agent.replay_buffer.sample

    def spy_main(*a, **k):
        seen["vlm"] = main_sample(*a, **k)
        return seen["vlm"]

    def spy_view(*a, **k):
        seen["sac"] = view_sample(*a, **k)
        return seen["sac"]

    monkeypatch.setattr(buf, "sample", spy_main)
    monkeypatch.setattr(model.task_agent.replay_buffer, "sample", spy_view)
    model.train(1, 8)
    inds, envs, _ = buf.last_batch
    torch.testing.assert_close(seen["vlm"].observations, seen["sac"].observations)  # one batch for both
    task = torch.as_tensor(buf.task_rewards[inds, envs]).reshape(-1, 1)
    torch.testing.assert_close(seen["sac"].rewards, task)
    r_vlm = buf.reward_model.reward(torch.as_tensor(buf.embeddings[inds, envs]).float()).reshape(-1, 1)
    torch.testing.assert_close(seen["vlm"].rewards, task + 0.05 * r_vlm, rtol=1e-5, atol=1e-6)


def test_predict_is_the_vlm_agent(vlm_venv, relay_model) -> None:
    model = relay_model(vlm_venv())
    obs = model.env.reset()
    action, _ = model.predict(obs, deterministic=True)
    own, _ = model.policy.predict(obs, deterministic=True)
    other, _ = model.task_agent.predict(obs, deterministic=True)
    np.testing.assert_array_equal(action, own)
    assert not np.allclose(action, other)


def test_no_relay_configuration(vlm_venv, relay_model) -> None:
    model = relay_model(vlm_venv(), relay=False)
    assert model.task_agent is None
    model.learn(20)
    assert model.schedule.task_agent_steps == 0 and model.schedule.vlm_steps == 20


def test_eval_and_checkpoint_callbacks(tmp_path, vlm_venv, relay_model) -> None:
    venv, eval_env = vlm_venv(), vlm_venv(seed=100)
    model = relay_model(venv, learning_starts=5)
    ckpt = CheckpointCallback(save_freq=15, save_path=str(tmp_path), name_prefix="relay")
    evaluation = EvalCallback(eval_env, n_eval_episodes=1, eval_freq=15, log_path=str(tmp_path), verbose=0)
    model.learn(30, callback=[ckpt, evaluation], progress_bar=False)
    files = sorted(p.name for p in tmp_path.glob("relay_*.zip"))
    assert files == ["relay_15_steps.zip", "relay_30_steps.zip"]
    assert (tmp_path / "evaluations.npz").exists()
    loaded = RelayPolicy.load(tmp_path / "relay_30_steps.zip", env=venv)
    assert loaded.num_timesteps == 30



@pytest.mark.parametrize("in_list", [False, True], ids=["alone", "in_a_list"])
def test_function_callbacks_as_sb3_calls_them(in_list: bool, vlm_venv, relay_model) -> None:
    """A plain function (alone or in a list with BaseCallbacks) gets (locals, globals) each step; False stops."""
    model = relay_model(vlm_venv(), learning_starts=5)  # align=True: the alignment callback runs beside it
    calls: list = []

    def fn(locals_: dict, globals_: dict) -> bool:
        calls.append((locals_["self"] is model, "__name__" in globals_, model.num_timesteps))
        return len(calls) < 7

    rec = _Record(lambda cb: cb.num_timesteps)
    model.learn(30, callback=[rec, fn] if in_list else fn)
    assert calls == [(True, True, t) for t in range(1, 8)]  # stopped by the function at step 7
    assert model.num_timesteps == 7 and model.alignment_callback.n_calls == 7
    assert rec.rows == (list(range(1, 8)) if in_list else [])


def test_save_and_load_through_file_objects(tmp_path, monkeypatch: pytest.MonkeyPatch, vlm_venv, relay_model) -> None:
    import cloudpickle

    venv = vlm_venv()
    model = relay_model(venv, learning_starts=10)
    model.learn(20)
    memory = io.BytesIO()
    model.save(memory)
    with open(tmp_path / "ckpt.zip", "wb") as handle:
        model.save(handle)
    with zipfile.ZipFile(tmp_path / "ckpt.zip") as a, zipfile.ZipFile(io.BytesIO(memory.getvalue())) as b:
        assert a.namelist() == b.namelist() and a.read("data") == b.read("data")  # (zip times may differ)
    monkeypatch.setattr(cloudpickle, "loads", lambda *a, **k: pytest.fail("unpickled"))  # trusted=False: none
    obs = venv.reset()
    memory.seek(0)
    with open(tmp_path / "ckpt.zip", "rb") as handle:
        for source in (memory, handle):
            loaded = RelayPolicy.load(source, env=vlm_venv(), device="cpu")
            assert loaded.num_timesteps == 20 and loaded.schedule.state_dict() == model.schedule.state_dict()
            for a, b in ((model, loaded), (model.task_agent, loaded.task_agent)):
                np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0],
                                              b.predict(obs, deterministic=True)[0])
    with pytest.raises(ValueError, match=r"^'<stream>' is not a RelayPolicy checkpoint"):
        from stable_baselines3 import SAC

        plain = io.BytesIO()
        SAC("MlpPolicy", vlm_venv(), buffer_size=10).save(plain)
        plain.seek(0)
        RelayPolicy.load(plain, env=vlm_venv(), trusted=True)


def test_gradient_steps_count_update_targets_and_log_as_the_backbone(monkeypatch: pytest.MonkeyPatch, vlm_venv,
                                                                     relay_model) -> None:
    """train(4) with target_update_interval=2: each agent updates its targets twice (steps 0 and 2, as SAC's own
    train(4)), counts 4 updates and logs them and its losses' means over the 4 steps."""
    from stable_baselines3 import SAC
    from stable_baselines3.sac import sac as sac_module

    settings = dict(gradient_steps=4, target_update_interval=2, learning_starts=10_000)
    models = {"relay": relay_model(vlm_venv(), align=False, **settings),
              "sac": SAC("MlpPolicy", vlm_venv(), buffer_size=2000, batch_size=8, seed=0, device="cpu", **settings)}
    polyak, mse = [], []
    real_polyak, real_mse = sac_module.polyak_update, sac_module.F.mse_loss
    monkeypatch.setattr(sac_module, "polyak_update", lambda *a: (polyak.append(a[2]), real_polyak(*a))[1])
    monkeypatch.setattr(sac_module.F, "mse_loss", lambda *a, **k: (lambda v: (mse.append(v.item()), v)[1])(
        real_mse(*a, **k)))
    counts = {}
    for name, model in models.items():
        model.learn(20)  # fills the buffer, no training (learning_starts)
        polyak.clear(), mse.clear()
        model.train(4, 8)
        counts[name] = len(polyak)
        logged = model.logger.name_to_value
        assert model._n_updates == logged["train/n_updates"] == 4
        steps = [0.5 * (a + b) for a, b in zip(mse[0::2], mse[1::2])]  # 2 critics per step
        assert len(steps) == (8 if name == "relay" else 4)
        assert logged["train/critic_loss"] == pytest.approx(np.mean(steps[:4]), rel=1e-6)
        if name == "relay":
            assert model.task_agent._n_updates == logged["task_agent/n_updates"] == 4
            assert logged["task_agent/critic_loss"] == pytest.approx(np.mean(steps[4:]), rel=1e-6)
    assert counts == {"sac": 4, "relay": 8}  # 2 target updates x (critic + batch-norm stats) per agent


def _params(model: RelayPolicy) -> list[torch.Tensor]:
    out = [p.detach().clone() for p in model.policy.parameters()]
    if model.task_agent is not None:
        out += [p.detach().clone() for p in model.task_agent.policy.parameters()]
    out += [model.log_ent_coef.detach().clone()]
    return out


def test_save_load_resume_is_exact(tmp_path, vlm_venv, relay_model) -> None:
    n, m = 30, 20  # both multiples of the episode length (10): saves at episode boundaries
    kwargs = dict(learning_starts=10, relay_lengths=(3, 4), alignment_kwargs={"batch_size": 8})

    venv = vlm_venv()
    straight = relay_model(venv, **kwargs)
    straight.learn(n + m)
    expected = _params(straight) + [p.detach().clone() for p in venv.reward_model.parameters()]

    venv_a = vlm_venv()
    first = relay_model(venv_a, **kwargs)
    first.learn(n)
    first.save(tmp_path / "ckpt")
    first.save_replay_buffer(tmp_path / "buffer")
    del first

    venv_b = vlm_venv()
    resumed = RelayPolicy.load(tmp_path / "ckpt", env=venv_b, device="cpu")
    resumed.load_replay_buffer(tmp_path / "buffer")
    resumed.learn(m, reset_num_timesteps=False)
    got = _params(resumed) + [p.detach().clone() for p in venv_b.reward_model.parameters()]
    assert resumed.num_timesteps == straight.num_timesteps == n + m
    assert resumed.schedule.state_dict() == straight.schedule.state_dict()
    assert resumed._n_updates == straight._n_updates
    assert resumed.task_agent._n_updates == straight.task_agent._n_updates
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_layout_and_no_pickle_for_project_state(tmp_path, vlm_venv, relay_model) -> None:
    model = relay_model(vlm_venv())
    model.learn(10)
    model.save(tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        names = set(archive.namelist())
        assert {"data", "policy.pth", "task_agent.zip", "furl_state.json", "furl_tensors.pt"} <= names
        import io
        import json

        state = json.loads(archive.read("furl_state.json"))
        assert state["identity"]["task"] == "reach-v3" and "random-clip:tiny" in state["identity"]["encoder"]
        torch.load(io.BytesIO(archive.read("furl_tensors.pt")), weights_only=True)  # tensors only


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch: pytest.MonkeyPatch, vlm_venv,
                                                    relay_model) -> None:
    venv = vlm_venv()
    model = relay_model(venv)
    model.learn(10)
    model.save(tmp_path / "ckpt")
    before = (tmp_path / "ckpt.zip").read_bytes()
    model.learn(10, reset_num_timesteps=False)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr("furl_wrappers.relay.torch.save", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(tmp_path / "ckpt")
    monkeypatch.undo()
    assert (tmp_path / "ckpt.zip").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.zip"]  # no temp file left behind
    assert RelayPolicy.load(tmp_path / "ckpt.zip", env=venv).num_timesteps == 10


def test_mismatched_checkpoint(tmp_path, vlm_venv, relay_model) -> None:
    model = relay_model(vlm_venv())
    model.save(tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatchError, match="task"):
        RelayPolicy.load(tmp_path / "ckpt", env=vlm_venv(task="push"))
    with pytest.raises(CheckpointMismatchError, match="encoder"):
        RelayPolicy.load(tmp_path / "ckpt", env=vlm_venv(vlm="random-clip:tiny:seed1"))
    from stable_baselines3 import SAC

    SAC("MlpPolicy", vlm_venv(), buffer_size=10).save(tmp_path / "plain")
    with pytest.raises(ValueError, match="not a RelayPolicy checkpoint"):
        RelayPolicy.load(tmp_path / "plain.zip", env=vlm_venv())


def test_bad_arguments(vlm_venv, relay_model) -> None:
    venv = vlm_venv()
    with pytest.raises(ValueError, match="relay_threshold"):
        relay_model(venv, relay_threshold=-1)
    with pytest.raises(ValueError, match="relay_lengths"):
        relay_model(venv, relay_lengths=())
    with pytest.raises(ValueError, match="relay_lengths"):
        relay_model(venv, relay_lengths=(50, 0))
    with pytest.raises(ValueError, match="relay_noise"):
        relay_model(venv, relay_noise=-0.1)
    from stable_baselines3.common.buffers import ReplayBuffer

    with pytest.raises(ValueError, match="VLMReplayBuffer"):
        relay_model(venv, replay_buffer_class=ReplayBuffer)


def test_alignment_settings_of_other_homes_are_refused() -> None:
    """lag / alignment_buffer_size are the buffer's (replay_buffer_kwargs), the goal image the VLM reward's: no
    shim moves them from alignment_kwargs."""
    with pytest.raises(ValueError, match=r"^alignment_kwargs: unknown key 'lag'"):
        RelayPolicy("MlpPolicy", None, alignment_kwargs={"batch_size": 8, "lag": 3})


def test_a_mistyped_alignment_key_is_named_before_anything_is_built() -> None:
    with pytest.raises(ValueError, match=r"^alignment_kwargs: unknown key 'goal_margn' \(valid: batch_size, "
                                         r"goal_margin, lr, margin, "):
        RelayPolicy("MlpPolicy", None, alignment_kwargs={"goal_margn": 0.1})


@pytest.mark.parametrize("n_envs", [1, 2])
def test_end_to_end_on_metaworld(n_envs: int, tmp_path) -> None:
    venv = furl_wrappers.make_vlm_vec_env("drawer-open", n_envs=n_envs, vlm="random-clip:tiny", device="cpu",
                                          env_kwargs={"image_size": SIZE, "max_episode_steps": 50})
    model = RelayPolicy("MlpPolicy", venv, learning_starts=100, buffer_size=5000, batch_size=32, seed=0,
                        device="cpu", alignment_kwargs={"batch_size": 32})
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(300, log_interval=1)
    assert model.num_timesteps >= 300 and model.schedule.task_agent_steps > 0 and model.schedule.vlm_steps > 0
    assert model.replay_buffer.alignment.failed_episodes >= 300 // 50 - 1
    assert model.alignment_callback.alignment_steps > 0  # stage 1 with the goal image
    header = (tmp_path / "progress.csv").read_text().splitlines()[0]
    for key in ("furl/relay_on", "furl/positive_count", "furl/relay_length", "furl/loss_neg_neg",
                "task_agent/actor_loss", "train/actor_loss"):
        assert key in header, key
