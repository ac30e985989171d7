"""VLMReward: one owner of encoder, heads, rho, text and goal image; hand-computed rewards and relabelling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import furl_wrappers
from furl_wrappers.encoders import ImageTextEncoder, RandomCLIPEncoder
from furl_wrappers.envs import TaskInstance
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.vlm_reward import EmbeddingReward, VLMReward

D = 4


def _raw(rho: float = 0.5, **kwargs) -> VLMReward:
    """Raw cosine with text embedding e_0: r_VLM(x) = x_0 / |x|."""
    return VLMReward(None, RewardModel(torch.eye(D)[0], mode="raw", device="cpu"), text="reach", rho=rho, **kwargs)


def test_relabel_is_task_plus_rho_cosine_by_hand() -> None:
    emb = np.array([[3.0, 4.0, 0, 0], [1.0, 0, 0, 0], [0, 2.0, 0, 0]], np.float32)
    task = np.array([-1.0, 0.0, -1.0], np.float32)
    # cos with e_0: 3/5, 1, 0
    np.testing.assert_allclose(_raw(0.5).relabel(emb, task), [-1 + 0.3, 0.5, -1.0], atol=1e-7)
    np.testing.assert_allclose(_raw(2.0, include_task_reward=False).relabel(emb, task), [1.2, 2.0, 0.0], atol=1e-7)
    assert _raw().relabel(emb, task).dtype == np.float32
    assert _raw().combine(np.array([-1.0]), np.array([0.5]))[0] == -0.75


def test_protocols() -> None:
    encoder = RandomCLIPEncoder("tiny", seed=0, device="cpu")
    reward = VLMReward.build(task="reach", vlm=encoder, device="cpu")
    assert isinstance(encoder, ImageTextEncoder) and isinstance(reward, EmbeddingReward)
    assert not isinstance(object(), ImageTextEncoder)
    assert reward.text == furl_wrappers.instruction("reach") and reward.dim == 32 and reward.trainable
    assert "NOT a pretrained VLM" in reward.describe() and "rho 0.05" in reward.describe()


def test_score_equals_encoder_then_heads() -> None:
    encoder = RandomCLIPEncoder("tiny", seed=0, device="cpu")
    reward = VLMReward.build(text="open a drawer", vlm=encoder, rho=0.1, device="cpu", seed=3)
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    emb, r_vlm = reward.score(frames)
    np.testing.assert_allclose(emb, encoder.encode_images(frames).numpy(), rtol=1e-6)
    np.testing.assert_allclose(r_vlm, reward.reward_model.reward(torch.as_tensor(emb)).numpy(), rtol=1e-6)
    infos = [{"task_reward": -1.0}, {"task_reward": 0.0}, {}]
    totals = reward.annotate(frames, infos, rewards=[9.0, 9.0, 7.0])  # no task_reward in info: the env's reward
    np.testing.assert_allclose(totals, np.array([-1.0, 0.0, 7.0]) + 0.1 * r_vlm.astype(np.float64), rtol=1e-12)
    assert infos[2]["vlm_reward"] == float(r_vlm[2]) and infos[0]["vlm_embedding"].shape == (32,)


def test_goal_image_is_encoded_once_on_first_use() -> None:
    encoder = RandomCLIPEncoder("tiny", seed=0, device="cpu")
    calls = []
    frame = np.full((32, 32, 3), 200, np.uint8)

    def render() -> np.ndarray:
        calls.append(1)
        return frame

    reward = VLMReward.build(task="reach", vlm=encoder, goal_image=render, device="cpu")
    assert reward.has_goal and calls == []  # nothing rendered at build time
    first = reward.goal_embedding
    np.testing.assert_allclose(first, encoder.encode_images(frame[None])[0].numpy(), rtol=1e-6)
    assert reward.goal_embedding is first and calls == [1]


def test_auto_goal_image_comes_from_the_task_instance() -> None:
    encoder = RandomCLIPEncoder("tiny", seed=0, device="cpu")
    instance = TaskInstance("reach-v3", "fixed", 5, image_size=32)
    reward = VLMReward.build(instance=instance, vlm=encoder, device="cpu")
    expected = encoder.encode_images(furl_wrappers.goal_image("reach", seed=5, image_size=32)[None])[0]
    np.testing.assert_allclose(reward.goal_embedding, expected.numpy(), rtol=1e-6)
    assert reward.text == furl_wrappers.instruction("reach")


def test_bad_inputs() -> None:
    model = RewardModel(torch.ones(D), device="cpu")
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        VLMReward(None, model, text="x", rho=float("nan"))
    with pytest.raises(ValueError, match="encoder dim 32 does not match the reward model's 4"):
        VLMReward(RandomCLIPEncoder("tiny", device="cpu"), model, text="x")
    with pytest.raises(ValueError, match="not both"):
        VLMReward(None, model, text="x", goal_image=np.zeros((2, 2, 3), np.uint8), goal_embedding=np.zeros(D))
    with pytest.raises(ValueError, match="needs an encoder"):
        VLMReward(None, model, text="x", goal_image=np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"goal embedding contains inf: pass a finite vector \(D,\)"):
        VLMReward(None, model, text="x", goal_embedding=np.full(D, np.inf))
    with pytest.raises(ValueError, match="non-empty string"):
        VLMReward(None, model, text=" ")
    with pytest.raises(ValueError, match="task is unknown"):
        VLMReward.build(vlm="random-clip:tiny", device="cpu")
    with pytest.raises(RuntimeError, match="no encoder"):
        VLMReward(None, model, text="x").score(np.zeros((1, 8, 8, 3), np.uint8))


def test_never_pickled_so_sb3_zips_stay_small(tmp_path) -> None:
    """SB3 saves replay_buffer_kwargs with the model: a VLMReward there must not drag the encoder into the zip."""
    import pickle

    from stable_baselines3 import SAC

    from furl_wrappers.vlm_buffer import VLMReplayBuffer

    venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", device="cpu", env_kwargs={"image_size": 32})
    reward = venv.vlm_reward
    assert pickle.loads(pickle.dumps(reward)) is None
    model = SAC("MlpPolicy", venv, replay_buffer_class=VLMReplayBuffer, replay_buffer_kwargs={"vlm_reward": reward},
                learning_starts=5, buffer_size=100, batch_size=8, device="cpu")
    model.learn(10)
    model.save(tmp_path / "sac")
    loaded = SAC.load(tmp_path / "sac", env=venv, device="cpu")
    assert loaded.replay_buffer.vlm_reward is None  # re-attached by the caller (RelayPolicy / the callback)
    from furl_wrappers.callbacks import RewardAlignmentCallback

    loaded.learn(10, callback=RewardAlignmentCallback(batch_size=8), reset_num_timesteps=False)
    assert loaded.replay_buffer.vlm_reward is reward


class _DuckEncoder:
    """A user encoder (no base class, so none of VLMEncoder's own checks): NaN or inf where told."""

    name, dim, device = "duck-test", D, torch.device("cpu")

    def __init__(self, image: float = 1.0, text: float = 1.0, bad_frame: int = 0) -> None:
        self.image, self.text, self.bad_frame = image, text, bad_frame

    def encode_images(self, frames):
        out = torch.ones(len(frames), D)
        out[min(self.bad_frame, len(frames) - 1)] = self.image
        return out

    def encode_text(self, texts):
        return torch.full((len(texts), D), self.text)


def test_non_finite_encoder_output_names_the_encoder_and_what() -> None:
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    reward = VLMReward.build(text="reach", vlm=_DuckEncoder(image=float("nan"), bad_frame=1), device="cpu")
    with pytest.raises(ValueError) as err:
        reward.score(frames)
    assert str(err.value) == ("encoder 'duck-test': image embedding of env 1's frame contains NaN; check the encoder "
                              "and its checkpoint (weights, input preprocessing, float16 overflow)")
    with pytest.raises(ValueError, match="encoder 'duck-test': text embedding of 'reach' contains inf; check"):
        VLMReward.build(text="reach", vlm=_DuckEncoder(text=float("inf")), device="cpu")
    goal = VLMReward.build(text="reach", vlm=_DuckEncoder(image=float("-inf")), device="cpu",
                           goal_image=np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="encoder 'duck-test': goal-image embedding contains inf; check the encoder"):
        _ = goal.goal_embedding
    unnamed = type("MyEncoder", (_DuckEncoder,), {"name": None})(image=float("nan"))
    with pytest.raises(ValueError, match="encoder 'MyEncoder': image embedding of env 0's frame contains NaN"):
        VLMReward.build(text="reach", vlm=unnamed, device="cpu").score(frames)
    with pytest.raises(ValueError, match=r"goal_image function returned None.*render_mode must be \"rgb_array\""):
        _ = VLMReward.build(text="reach", vlm=_DuckEncoder(), device="cpu", goal_image=lambda: None).goal_embedding


def test_non_finite_task_reward_names_the_env_and_key() -> None:
    reward = VLMReward.build(text="reach", vlm=_DuckEncoder(), device="cpu")
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"^env 1's info\['task_reward'\] is nan, not a finite number"):
        reward.annotate(frames, [{"task_reward": -1.0}, {"task_reward": float("nan")}], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"^env 0's reward \(returned by step\(\)\) is inf"):
        reward.annotate(frames, [{}, {}], [float("inf"), 0.0])
