"""RewardAlignmentCallback: stages, logging, and alignment quality on synthetic progress embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from furl_wrappers.callbacks import RewardAlignmentCallback
from furl_wrappers.metrics import roc_auc, spearman
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.vlm_buffer import VLMReplayBuffer

D = 32
OBS = spaces.Box(-1, 1, (3,), np.float32)
ACT = spaces.Box(-1, 1, (2,), np.float32)


def _episode(rng: np.random.Generator, direction: np.ndarray, success_at: int | None, length: int = 60,
             noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings = noise + progress * 3 * direction; progress rises to 1 at success (failed: stays < 0.3)."""
    t = np.arange(length)
    if success_at is None:
        progress = 0.3 * rng.uniform() * np.ones(length)
        success = np.zeros(length, bool)
    else:
        progress = np.minimum(t / success_at, 1.0)
        success = t >= success_at
    emb = rng.normal(0, noise, (length, D)) + 3.0 * progress[:, None] * direction[None]
    return emb.astype(np.float32), success


def _fill(buf: VLMReplayBuffer, rng: np.random.Generator, direction: np.ndarray, n_success: int, n_fail: int,
          goal: np.ndarray | None = None) -> None:
    episodes = [_episode(rng, direction, int(rng.integers(30, 50))) for _ in range(n_success)]
    episodes += [_episode(rng, direction, None) for _ in range(n_fail)]
    for emb, success in episodes:
        for t, (e, s) in enumerate(zip(emb, success)):
            info = {"vlm_embedding": e, "is_success": bool(s), "task_reward": float(s) - 1.0}
            done = t == len(emb) - 1
            buf.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros(1), np.array([float(done)]),
                    [info])


def _evaluate(model: RewardModel, rng: np.random.Generator, direction: np.ndarray) -> tuple[float, float]:
    spearmans, pos, neg = [], [], []
    for _ in range(5):
        emb, _ = _episode(rng, direction, 40)
        r = model.reward(torch.as_tensor(emb[:41])).numpy()
        spearmans.append(spearman(np.arange(41), r))
        pos.append(r)
        femb, _ = _episode(rng, direction, None)
        neg.append(model.reward(torch.as_tensor(femb)).numpy())
    return float(np.mean(spearmans)), roc_auc(np.concatenate(pos), np.concatenate(neg))


def test_synthetic_progress_alignment_rises(relabel_reward) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    direction = rng.normal(size=D)
    direction /= np.linalg.norm(direction)
    text = torch.as_tensor(rng.normal(size=D), dtype=torch.float32)  # unrelated to the progress direction
    model = RewardModel(text, mode="learned", device="cpu", seed=0)
    buf = VLMReplayBuffer(10_000, OBS, ACT, device="cpu", lag=10, seed=0)
    _fill(buf, rng, direction, n_success=8, n_fail=8)
    reward = relabel_reward(model)
    callback = RewardAlignmentCallback(reward, batch_size=128, lr=1e-3)
    callback.bind(buf, reward)
    rho_before, auc_before = _evaluate(model, np.random.default_rng(1), direction)
    assert abs(rho_before) < 0.5  # random heads: no consistent ordering
    for _ in range(300):
        stats = callback.align_once()
    assert stats["stage"] == 2.0 and callback.alignment_steps == 300
    rho_after, auc_after = _evaluate(model, np.random.default_rng(1), direction)
    # Spearman along held-out successful episodes rises from ~0 to > 0.85 (with the reference's LeCun-normal head
    # init it plateaus at 0.87-0.91 over data seeds 0-2 after ~100 steps; the frame noise bounds it). AUC over
    # *all* their frames cannot approach 1 here: their early frames look like failures by construction.
    assert rho_after > 0.85, (rho_before, rho_after)
    assert auc_after > auc_before + 0.2, (auc_before, auc_after)


def test_stage_one_uses_goal_distances_then_stage_two(relabel_reward) -> None:
    rng = np.random.default_rng(0)
    direction = np.eye(D)[0]
    model = RewardModel(torch.ones(D), mode="learned", device="cpu", seed=0)
    buf = VLMReplayBuffer(5_000, OBS, ACT, device="cpu", lag=10, seed=0)
    reward = relabel_reward(model, goal_embedding=3.0 * direction)
    buf.attach(reward)
    _fill(buf, rng, direction, n_success=0, n_fail=4)
    callback = RewardAlignmentCallback(reward, batch_size=64)
    callback.bind(buf, reward)
    stats = callback.align_once()
    assert stats["stage"] == 1.0 and "loss_neg_neg" in stats and stats["goal_pairs"] > 0
    _fill(buf, rng, direction, n_success=1, n_fail=0)
    stats = callback.align_once()
    keys = {"loss_pos_neg", "loss_pos_pos", "score_pos", "score_neg", "score_lag"}
    assert stats["stage"] == 2.0 and keys <= set(stats)


def test_stage_one_frames_come_from_the_whole_replay_buffer(relabel_reward) -> None:
    """As in the reference code: before any episode has ended, stage 1 already draws the unfinished episode's
    frames; the failed-episode ring (``stage1_frames="failed"``) has none yet."""
    rng = np.random.default_rng(0)
    model = RewardModel(torch.ones(D), device="cpu", seed=0)
    reward = relabel_reward(model, goal_embedding=np.zeros(D))
    buf = VLMReplayBuffer(1_000, OBS, ACT, device="cpu", seed=0)
    buf.attach(reward)
    unfinished = rng.normal(size=(30, D)).astype(np.float32)
    for e in unfinished:  # one episode, still running
        buf.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros(1), np.zeros(1),
                [{"vlm_embedding": e, "is_success": False, "task_reward": -1.0}])
    ring = RewardAlignmentCallback(reward, batch_size=16, stage1_frames="failed")
    ring.bind(buf, reward)
    assert ring.align_once() == {} and ring.stage == 0
    callback = RewardAlignmentCallback(reward, batch_size=16, goal_margin=0.0)
    callback.bind(buf, reward)
    emb, dist = buf.sample_goal_frames(64)
    assert {tuple(e) for e in emb} <= {tuple(e) for e in unfinished.astype(np.float16).astype(np.float32)}
    np.testing.assert_allclose(dist, np.linalg.norm(emb, axis=1), rtol=1e-3)  # float32 at add, float16 stored
    stats = callback.align_once()
    assert stats["stage"] == 1.0 and stats["goal_pairs"] > 0 and callback.alignment_steps == 1
    with pytest.raises(ValueError, match="stage1_frames must be one of"):
        RewardAlignmentCallback(stage1_frames="all")


def test_no_goal_image_means_no_stage_one(relabel_reward) -> None:
    rng = np.random.default_rng(0)
    model = RewardModel(torch.ones(D), device="cpu", seed=0)
    buf = VLMReplayBuffer(5_000, OBS, ACT, device="cpu")
    _fill(buf, rng, np.eye(D)[0], n_success=0, n_fail=3)
    reward = relabel_reward(model)  # no goal image
    callback = RewardAlignmentCallback(reward)
    callback.bind(buf, reward)
    before = [p.clone() for p in model.parameters()]
    assert callback.align_once() == {} and callback.stage == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_end_to_end_with_sb3(tmp_path) -> None:
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import configure

    import furl_wrappers

    venv = furl_wrappers.make_vlm_vec_env("drawer-open", n_envs=2, vlm="random-clip:tiny", device="cpu",
                                          goal_image="auto", env_kwargs={"image_size": 32, "max_episode_steps": 15})
    model = SAC("MlpPolicy", venv, replay_buffer_class=VLMReplayBuffer, learning_starts=20, buffer_size=500,
                batch_size=16, device="cpu", seed=0)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    heads = [p.clone() for p in venv.reward_model.parameters()]
    # the VLM reward (with its goal image) is found on the env; the tiny encoder's embeddings lie close together,
    # so a zero goal margin makes the stage-1 mask non-empty
    callback = RewardAlignmentCallback(batch_size=16, goal_margin=0.0)
    model.learn(120, callback=callback, log_interval=1)
    buf = model.replay_buffer
    assert buf.vlm_reward is venv.vlm_reward and venv.vlm_reward.goal_embedding is not None
    assert not np.isnan(buf.goal_distances[: buf.pos]).any()
    assert callback.stage == 1 and callback.alignment_steps > 0
    assert any(not torch.equal(a, b) for a, b in zip(heads, venv.reward_model.parameters()))
    header = (tmp_path / "progress.csv").read_text().splitlines()[0]
    assert "furl/loss_neg_neg" in header and "furl/positive_count" in header and "furl/stage" in header


def test_bad_inputs(relabel_reward) -> None:
    with pytest.raises(ValueError, match="margin"):
        RewardAlignmentCallback(margin=-1)
    with pytest.raises(ValueError, match="lr"):
        RewardAlignmentCallback(lr=0)
    with pytest.raises(ValueError, match="batch_size"):
        RewardAlignmentCallback(batch_size=0)
    with pytest.raises(ValueError, match="steps_per_call"):
        RewardAlignmentCallback(steps_per_call=0)
    with pytest.raises(TypeError, match="VLMReward"):
        RewardAlignmentCallback(RewardModel(torch.ones(D), device="cpu"))
    with pytest.raises(TypeError, match="lag"):
        RewardAlignmentCallback(lag=10)  # the window k is the buffer's
    buf = VLMReplayBuffer(100, OBS, ACT, device="cpu")
    frozen = relabel_reward(RewardModel(torch.ones(D), mode="frozen", device="cpu"))
    with pytest.raises(ValueError, match="'frozen'"):
        RewardAlignmentCallback().bind(buf, frozen)
    buf.attach(relabel_reward(RewardModel(torch.ones(D), device="cpu")))
    with pytest.raises(ValueError, match="another VLM reward"):
        RewardAlignmentCallback().bind(buf, relabel_reward(RewardModel(torch.ones(D), device="cpu")))
    with pytest.raises(RuntimeError, match="bind"):
        RewardAlignmentCallback().align_once()


def test_plain_replay_buffer_is_rejected() -> None:
    from stable_baselines3 import SAC

    import furl_wrappers

    venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", device="cpu", env_kwargs={"image_size": 32})
    model = SAC("MlpPolicy", venv, learning_starts=5, buffer_size=100, device="cpu")
    with pytest.raises(TypeError, match="VLMReplayBuffer"):
        model.learn(10, callback=RewardAlignmentCallback())


@pytest.mark.parametrize("stage", [1, 2])
def test_non_finite_loss_raises_before_the_optimiser_step(stage: int, relabel_reward) -> None:
    rng = np.random.default_rng(0)
    direction = np.eye(D)[0]
    model = RewardModel(torch.ones(D), mode="learned", device="cpu", seed=0)
    reward = relabel_reward(model, goal_embedding=3.0 * direction)
    buf = VLMReplayBuffer(5_000, OBS, ACT, device="cpu", lag=10, seed=0)
    buf.attach(reward)
    _fill(buf, rng, direction, n_success=int(stage == 2), n_fail=2)
    callback = RewardAlignmentCallback(reward, batch_size=32, goal_margin=0.0)
    callback.bind(buf, reward)
    with torch.no_grad():
        model.image_head[0].weight[0, 0] = float("nan")  # a NaN head weight: every score is NaN
    before = [p.clone() for p in model.parameters()]
    loss_names = {1: "loss_neg_neg=nan", 2: "loss_pos_neg=nan, loss_pos_pos=nan"}[stage]
    with pytest.raises(ValueError) as err:
        callback.align_once()
    assert str(err.value).startswith(f"RewardAlignmentCallback: stage-{stage} alignment loss is not finite "
                                     f"({loss_names}) at alignment step 0: the reward model's heads")
    assert callback.alignment_steps == 0
    for a, b in zip(before, model.parameters()):  # the optimiser did not step
        torch.testing.assert_close(a, b, equal_nan=True)
