"""VLMReplayBuffer: relabelling with current heads, task-only view, episode labelling, wrap-around, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl

from furl_wrappers.reward_model import RewardModel
from furl_wrappers.vlm_buffer import VLMReplayBuffer

D = 8
OBS = spaces.Box(-1, 1, (3,), np.float32)
ACT = spaces.Box(-1, 1, (2,), np.float32)


def _buffer(n_envs: int = 1, size: int = 100, **kwargs) -> VLMReplayBuffer:
    return VLMReplayBuffer(size, OBS, ACT, device="cpu", n_envs=n_envs, **kwargs)


def _info(emb: np.ndarray, success: bool = False, truncated: bool = False) -> dict:
    info = {"vlm_embedding": emb.astype(np.float32), "is_success": success, "task_reward": float(success) - 1.0}
    if truncated:
        info["TimeLimit.truncated"] = True
    return info


def _add(buf: VLMReplayBuffer, embs: list[np.ndarray], successes=None, dones=None, truncs=None) -> None:
    n = buf.n_envs
    successes = successes or [False] * n
    dones = dones or [False] * n
    truncs = truncs or [False] * n
    infos = [_info(e, s, t) for e, s, t in zip(embs, successes, truncs)]
    buf.add(np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 2)), np.zeros(n), np.array(dones, np.float32), infos)


def _fill(buf: VLMReplayBuffer, steps: int, rng: np.random.Generator) -> None:
    for t in range(steps):
        _add(buf, [rng.normal(size=D) for _ in range(buf.n_envs)], successes=[t % 7 == 3] * buf.n_envs)


def test_relabel_uses_current_heads_and_task_view_does_not(reward_model, relabel_reward) -> None:
    model = reward_model()
    buf = _buffer(vlm_reward=relabel_reward(model, rho=0.5), embedding_dtype="float32")
    _fill(buf, 50, np.random.default_rng(0))
    np.random.seed(1)
    before = buf.sample(32).rewards.squeeze(1)
    inds, envs, _ = buf.last_batch
    expected = buf.task_rewards[inds, envs] + 0.5 * model.reward(torch.as_tensor(buf.embeddings[inds, envs])).numpy()
    np.testing.assert_allclose(before.numpy(), expected, rtol=1e-6, atol=1e-6)
    view = buf.task_reward_view(share_batch=True)
    task = view.sample(32).rewards.squeeze(1)  # the same batch, task reward only
    np.testing.assert_array_equal(task.numpy(), buf.task_rewards[inds, envs])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3)
    np.random.seed(1)
    after = buf.sample(32).rewards.squeeze(1)
    assert not torch.allclose(before, after)
    np.random.seed(1)
    buf.sample(32)
    np.testing.assert_array_equal(view.sample(32).rewards.squeeze(1).numpy(), task.numpy())  # unchanged


def test_shared_batch_is_used_once(reward_model, relabel_reward) -> None:
    buf = _buffer()
    buf.attach(relabel_reward(reward_model()))
    _fill(buf, 60, np.random.default_rng(0))
    view = buf.task_reward_view()
    main = buf.sample(16)
    shared = view.sample(16)
    torch.testing.assert_close(main.observations, shared.observations)
    torch.testing.assert_close(main.actions, shared.actions)
    fresh = view.sample(16)  # no new main batch: draws its own
    assert fresh.rewards.shape == (16, 1)


def test_vlm_only_rewards(reward_model, relabel_reward) -> None:
    model = reward_model()
    buf = _buffer(vlm_reward=relabel_reward(model, rho=1.0, include_task_reward=False), embedding_dtype="float32")
    _fill(buf, 20, np.random.default_rng(0))
    rewards = buf.sample(8).rewards.squeeze(1).numpy()
    inds, envs, _ = buf.last_batch
    np.testing.assert_allclose(rewards, model.reward(torch.as_tensor(buf.embeddings[inds, envs])).numpy(), atol=1e-6)


def test_float16_storage_changes_rewards_negligibly(relabel_reward) -> None:
    rng = np.random.default_rng(0)
    model = RewardModel(torch.as_tensor(rng.normal(size=512), dtype=torch.float32), device="cpu", seed=0)
    half, full = _buffer(embedding_dtype="float16"), _buffer(embedding_dtype="float32")
    for buf in (half, full):
        buf.attach(relabel_reward(model))
    for _ in range(64):  # CLIP-like embeddings: norm ~10
        emb = (rng.normal(size=512) * 0.45).astype(np.float32)
        for buf in (half, full):
            buf.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [_info(emb)])
    np.random.seed(0)
    a = half.sample(64).rewards
    np.random.seed(0)
    b = full.sample(64).rewards
    assert (a - b).abs().max().item() < 1e-3


def test_episode_labelling_with_interleaved_ends() -> None:
    buf = _buffer(n_envs=2, lag=1, embedding_dtype="float32")
    e = lambda v: np.full(D, float(v))  # noqa: E731
    # env 0: 3-step episode, success at its step 1 and 2 -> all 3 positive; env 1: 5-step failed episode
    _add(buf, [e(0), e(100)])
    _add(buf, [e(1), e(101)], successes=[True, False])
    _add(buf, [e(2), e(102)], successes=[True, False], dones=[True, False])
    assert buf.alignment.num_positive == 3 and buf.alignment.num_negative == 0
    _add(buf, [e(10), e(103)])  # env 0's next episode starts
    _add(buf, [e(11), e(104)], dones=[False, True], truncs=[False, True])
    assert buf.alignment.num_negative == 5 and buf.positive_count == 3
    np.testing.assert_array_equal(buf.alignment.negatives.embeddings[:5, 0], [100, 101, 102, 103, 104])
    np.testing.assert_array_equal(buf.alignment.positives.embeddings[:3, 0], [0, 1, 2])
    # env 0's unfinished episode (frames 10, 11) is still pending
    assert [x[0][0] for x in buf._episodes[0]] == [10, 11]


def test_timeouts_are_not_terminal(reward_model, relabel_reward) -> None:
    buf = _buffer(size=10)
    buf.attach(relabel_reward(reward_model()))
    _add(buf, [np.ones(D)], dones=[True], truncs=[True])  # time limit
    _add(buf, [np.ones(D)], dones=[True])  # true termination
    samples = buf._get_samples(np.array([0, 1]))
    assert samples.dones.squeeze(1).tolist() == [0.0, 1.0]


def test_alignment_store_survives_rl_buffer_wrap(reward_model, relabel_reward) -> None:
    buf = _buffer(size=6, lag=1)
    buf.attach(relabel_reward(reward_model()))
    for episode in range(4):
        for t in range(5):
            _add(buf, [np.full(D, 10.0 * episode + t)], successes=[episode % 2 == 0 and t == 4], dones=[t == 4])
    assert buf.full and buf.size() == 6  # the RL buffer wrapped several times
    assert buf.alignment.num_positive == 10 and buf.alignment.num_negative == 10
    assert buf.alignment.can_sample_triples()


def test_goal_distances(reward_model, relabel_reward) -> None:
    buf = _buffer(embedding_dtype="float32", vlm_reward=relabel_reward(reward_model(), goal_embedding=np.zeros(D)))
    _add(buf, [np.full(D, 1.0)], dones=[True])
    assert buf.goal_distances[0, 0] == pytest.approx(np.sqrt(D))
    emb, dist = buf.alignment.sample_negatives(2)
    assert dist.tolist() == pytest.approx([np.sqrt(D)] * 2)


def test_vec_normalize_reward_consistency(reward_model, relabel_reward) -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    import furl_wrappers

    venv = VecNormalize(DummyVecEnv([lambda: furl_wrappers.make_metaworld_env("reach", image_size=16)]),
                        norm_obs=False, norm_reward=True)
    venv.ret_rms.var = np.array(4.0)  # so normalisation visibly divides by ~2
    buf = _buffer(embedding_dtype="float32")
    buf.attach(relabel_reward(reward_model()))
    _fill(buf, 30, np.random.default_rng(0))
    np.random.seed(3)
    raw = buf.sample(16).rewards
    np.random.seed(3)
    normed = buf.sample(16, env=venv).rewards
    torch.testing.assert_close(normed, torch.as_tensor(venv.normalize_reward(raw.numpy()), dtype=torch.float32))
    assert not torch.allclose(raw, normed)


def test_save_load_round_trip_without_the_model(tmp_path, reward_model, relabel_reward) -> None:
    buf = _buffer(lag=1)
    model = reward_model()
    reward = relabel_reward(model, rho=0.2)
    buf.attach(reward)
    _fill(buf, 40, np.random.default_rng(0))
    path = tmp_path / "buffer.pkl"
    save_to_pkl(path, buf)
    loaded = load_from_pkl(path)
    assert loaded.vlm_reward is None and buf.reward_model is model  # the reward was not pickled
    with pytest.raises(RuntimeError, match="attach"):
        loaded.sample(4)
    loaded.attach(reward)
    np.random.seed(5)
    a = buf.sample(16).rewards
    np.random.seed(5)
    b = loaded.sample(16).rewards
    torch.testing.assert_close(a, b)
    assert loaded.positive_count == buf.positive_count
    np.testing.assert_array_equal(loaded.alignment.positives.embeddings, buf.alignment.positives.embeddings)


def test_sb3_save_load_replay_buffer(tmp_path) -> None:
    from stable_baselines3 import SAC

    import furl_wrappers

    venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", device="cpu",
                                          env_kwargs={"image_size": 32, "max_episode_steps": 10})
    model = SAC("MlpPolicy", venv, replay_buffer_class=VLMReplayBuffer, learning_starts=5, buffer_size=200,
                batch_size=8, device="cpu", replay_buffer_kwargs={"vlm_reward": venv.vlm_reward})
    model.learn(30)
    model.save_replay_buffer(tmp_path / "rb")
    model.load_replay_buffer(tmp_path / "rb")
    assert isinstance(model.replay_buffer, VLMReplayBuffer) and model.replay_buffer.vlm_reward is None
    model.replay_buffer.attach(venv.vlm_reward)
    model.learn(10, reset_num_timesteps=False)
    assert model.replay_buffer.alignment.failed_episodes == 4


def test_bad_inputs(reward_model, relabel_reward) -> None:
    buf = _buffer()
    with pytest.raises(KeyError, match="FuzzyVLMRewardWrapper"):
        buf.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    _add(buf, [np.ones(D)])
    with pytest.raises(ValueError, match="size 5, expected 8"):
        _add(buf, [np.ones(5)])
    with pytest.raises(ValueError, match="NaN"):
        _add(buf, [np.full(D, np.nan)])
    with pytest.raises(ValueError, match="VLM reward dim 4"):
        buf.attach(relabel_reward(RewardModel(torch.ones(4), device="cpu")))
    with pytest.raises(TypeError, match="attach takes the VLM reward"):
        buf.attach(reward_model())  # a bare reward model has no rho: refused
    with pytest.raises(ValueError, match="goal embedding has size 3"):
        relabel_reward(reward_model(), goal_embedding=np.zeros(3))
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        relabel_reward(reward_model(), rho=-0.1)
    with pytest.raises(TypeError, match="rho"):
        _buffer(rho=0.05)  # rho belongs to the VLM reward
    with pytest.raises(ValueError, match="embedding_dtype"):
        _buffer(embedding_dtype="int8")
    with pytest.raises(ValueError, match="alignment_buffer_size"):
        _buffer(alignment_buffer_size=0)
    with pytest.raises(ValueError, match="lag must be an integer >= 1"):
        _buffer(lag=0)


def test_samples_are_sb3s_own_with_relabelled_rewards(reward_model, relabel_reward) -> None:
    """The batch is SB3's ``_get_samples`` (same indices, obs, dones) with only the rewards replaced."""
    from stable_baselines3.common.buffers import ReplayBuffer

    buf = _buffer(n_envs=3, embedding_dtype="float32")
    buf.attach(relabel_reward(reward_model(), rho=0.5))
    rng = np.random.default_rng(0)
    for t in range(20):
        embs = [rng.normal(size=D) for _ in range(3)]
        infos = [_info(e, t % 5 == 2) for e in embs]
        obs = rng.normal(size=(3, 3)).astype(np.float32)
        buf.add(obs, obs + 1, rng.normal(size=(3, 2)), np.full(3, 7.0), np.zeros(3), infos)
    inds = np.arange(20)
    np.random.seed(4)
    ours = buf._get_samples(inds)
    np.random.seed(4)
    sb3 = ReplayBuffer._get_samples(buf, inds)
    for name in ("observations", "actions", "next_observations", "dones"):
        torch.testing.assert_close(getattr(ours, name), getattr(sb3, name))
    _, envs, _ = buf.last_batch
    torch.testing.assert_close(ours.observations, torch.as_tensor(buf.observations[inds, envs]))
    assert sb3.rewards.unique().tolist() == [7.0]  # what the env returned at collection time
    expected = buf.vlm_reward.relabel(buf.embeddings[inds, envs], buf.task_rewards[inds, envs])
    np.testing.assert_array_equal(ours.rewards.squeeze(1).numpy(), expected)


def test_float16_overflow_switches_to_float32_once(reward_model, relabel_reward) -> None:
    buf = _buffer(vlm_reward=relabel_reward(reward_model()))
    _add(buf, [np.full(D, 0.5)])
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for scale in (1e5, 1e6, 2.0):
            _add(buf, [np.full(D, scale)])
    switched = [w for w in caught if "float16 to float32" in str(w.message)]
    assert len(switched) == 1 and issubclass(switched[0].category, RuntimeWarning)
    assert str(switched[0].message) == ("VLMReplayBuffer: embedding storage switched from float16 to float32 because "
                                        "embedding values reached 1e+05 (float16 holds at most 65504); pass "
                                        "embedding_dtype='float32' to start with it")
    assert buf.embeddings.dtype == np.float32 and buf.embedding_dtype == np.float32
    np.testing.assert_array_equal(buf.embeddings[:4, 0, 0], [0.5, 1e5, 1e6, 2.0])  # the earlier rows kept
    rewards = buf.sample(16).rewards
    assert torch.isfinite(rewards).all()


def test_huge_finite_embeddings_keep_training_finite() -> None:
    """Fault injection: a user encoder whose embeddings overflow float16 (~1e6). Before, the buffer stored inf,
    relabelled rewards went NaN and the policy's weights followed."""
    import warnings

    import furl_wrappers
    from furl_wrappers.encoders import VLMEncoder
    from furl_wrappers.relay import RelayPolicy

    class Huge(VLMEncoder):
        name, pretrained, dim = "huge-test", False, D

        def _encode_images(self, frames: torch.Tensor) -> torch.Tensor:
            return frames.float().mean(dim=(1, 2)).repeat(1, 3)[:, :D] * 1e4 + 1e6

        def _encode_text(self, texts: list[str]) -> torch.Tensor:
            return torch.ones(len(texts), D)

    venv = furl_wrappers.make_vlm_vec_env("reach", vlm=Huge("cpu"), device="cpu", goal_image=None,
                                          env_kwargs={"image_size": 32, "max_episode_steps": 20})
    model = RelayPolicy("MlpPolicy", venv, vlm_reward=venv.vlm_reward, learning_starts=50, buffer_size=300,
                        batch_size=16, alignment_kwargs={"batch_size": 16}, device="cpu", seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.learn(150)
    assert sum("switched from float16 to float32" in str(w.message) for w in caught) == 1
    buf = model.replay_buffer
    assert buf.embeddings.dtype == np.float32 and np.isfinite(buf.embeddings[: buf.pos]).all()
    assert np.abs(buf.embeddings[: buf.pos]).max() > 1e6
    assert torch.isfinite(buf.sample(64).rewards).all()
    for agent in (model, model.task_agent):
        assert all(torch.isfinite(p).all() for p in agent.policy.parameters())


def test_non_finite_inputs_name_their_source() -> None:
    buf = _buffer(n_envs=2)
    ok = [_info(np.ones(D)), _info(np.ones(D))]
    z = np.zeros((2, 3))
    bad_info = [_info(np.ones(D)), {**_info(np.ones(D)), "task_reward": float("nan")}]
    with pytest.raises(ValueError, match=r"^VLMReplayBuffer.add: info\['task_reward'\] of env 1 contains NaN"):
        buf.add(z, z, np.zeros((2, 2)), np.zeros(2), np.zeros(2), bad_info)
    bad_emb = [{**_info(np.ones(D)), "vlm_embedding": np.full(D, np.inf)}, _info(np.ones(D))]
    with pytest.raises(ValueError, match=r"^VLMReplayBuffer.add: info\['vlm_embedding'\] of env 0 contains inf.*"
                                         "check the encoder"):
        buf.add(z, z, np.zeros((2, 2)), np.zeros(2), np.zeros(2), bad_emb)
    nan_row = np.array([[0.0, 0.0, 0.0], [0.0, np.nan, 0.0]])
    for name, args in (("obs", (nan_row, z, np.zeros(2))), ("next_obs", (z, nan_row, np.zeros(2))),
                       ("reward", (z, z, np.array([0.0, np.inf])))):
        obs, next_obs, reward = args
        with pytest.raises(ValueError, match=rf"^VLMReplayBuffer.add: {name} of env 1 contains (NaN|inf); check"):
            buf.add(obs, next_obs, np.zeros((2, 2)), reward, np.zeros(2), ok)
    assert buf.pos == 0  # nothing was stored


def test_non_finite_goal_distance_and_relabelled_rewards_are_refused(reward_model, relabel_reward) -> None:
    buf = _buffer(embedding_dtype="float32", vlm_reward=relabel_reward(reward_model(), goal_embedding=np.zeros(D)))
    with pytest.raises(ValueError, match=r"^VLMReplayBuffer.add: the goal distance of env 0's embedding is inf"):
        _add(buf, [np.full(D, 3e38)])  # finite in float32, its distance is not
    model = reward_model()
    buf = _buffer(vlm_reward=relabel_reward(model))
    _fill(buf, 10, np.random.default_rng(0))
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^VLMReplayBuffer: 8 of 8 relabelled rewards are NaN or inf: the reward "
                                           "model's heads are not finite"):
        buf.sample(8)
