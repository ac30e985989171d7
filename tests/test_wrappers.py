"""FuzzyVLMRewardWrapper and the batched vector-env path on real Meta-World, with a tiny random CLIP."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

import furl_wrappers
from furl_wrappers import MT10_TASKS, make_metaworld_env
from furl_wrappers.encoders import RandomCLIPEncoder, VLMEncoder
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.wrappers import FrameInInfo, FuzzyVLMRewardWrapper, VecFuzzyVLMReward, make_vlm_vec_env

SIZE = 32


@pytest.fixture(scope="module")
def encoder() -> RandomCLIPEncoder:
    return RandomCLIPEncoder("tiny", seed=0, device="cpu")


def _check_step(env: gym.Env, rho: float) -> dict:
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert set(info) >= {"task_reward", "vlm_reward", "vlm_embedding", "is_success", "success"}
    assert info["vlm_embedding"].dtype == np.float32 and info["vlm_embedding"].shape == (32,)
    assert -1.0 <= info["vlm_reward"] <= 1.0
    assert reward == info["task_reward"] + rho * info["vlm_reward"]  # exactly
    return info


@pytest.mark.parametrize("task", list(MT10_TASKS) + ["hammer-v3"])
def test_wrapper_on_tasks(task: str, encoder: RandomCLIPEncoder) -> None:
    env = FuzzyVLMRewardWrapper(make_metaworld_env(task, image_size=SIZE), vlm=encoder, rho=0.05)
    assert env.text == furl_wrappers.instruction(task)
    env.reset(seed=0)
    for _ in range(2):
        _check_step(env, 0.05)


def test_wrapper_on_metaworlds_own_env(encoder: RandomCLIPEncoder) -> None:
    base = gym.make("Meta-World/MT1", env_name="drawer-close-v3")
    with pytest.raises(TypeError, match="as_furl_env"):  # the sparse reward and renderer are an explicit step
        FuzzyVLMRewardWrapper(base, vlm=encoder)
    env = FuzzyVLMRewardWrapper(furl_wrappers.as_furl_env(base, image_size=SIZE), vlm=encoder, rho=0.1)
    assert env.text == "Push and close a drawer."
    env.reset(seed=0)
    info = _check_step(env, 0.1)
    assert info["task_reward"] in (-1.0, 0.0)
    assert env.render().shape == (SIZE, SIZE, 3)


def test_vlm_reward_is_the_reward_model_on_the_frame(encoder: RandomCLIPEncoder) -> None:
    env = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=encoder)
    env.reset()
    _, _, _, _, info = env.step(env.action_space.sample())
    frame = env.render()  # the state has not changed since the step
    expected = encoder.encode_images(frame[None])[0]
    np.testing.assert_allclose(info["vlm_embedding"], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert info["vlm_reward"] == pytest.approx(float(env.reward_model.reward(expected[None])[0]), abs=1e-6)


def test_shared_reward_model_scores_with_current_heads(encoder: RandomCLIPEncoder) -> None:
    model = RewardModel.from_encoder(encoder, "Reach a goal position.", seed=0)
    env = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=encoder, reward_model=model)
    env.reset()
    action = np.zeros(4, np.float32)
    before = env.step(action)[4]["vlm_reward"]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    after = env.step(action)[4]["vlm_reward"]  # same state (zero action barely moves it), new heads
    assert after != pytest.approx(before, abs=1e-3)
    assert env.reward_model is model


def test_vlm_only_reward(encoder: RandomCLIPEncoder) -> None:
    env = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=encoder, rho=1.0,
                                include_task_reward=False, mode="raw")
    env.reset()
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert reward == info["vlm_reward"]


def test_batched_and_single_paths_agree(encoder: RandomCLIPEncoder) -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 4)).astype(np.float32)
    single = FuzzyVLMRewardWrapper(make_metaworld_env("push", seed=2, image_size=SIZE), vlm=encoder)
    single.reset()
    single_infos = [single.step(a)[4] for a in actions]
    for n_envs in (1, 4):
        venv = make_vlm_vec_env("push", n_envs=n_envs, seed=2, vlm_reward=single.vlm_reward,
                                env_kwargs={"image_size": SIZE})
        assert venv.vlm_reward is single.vlm_reward  # one reward, shared
        venv.reset()
        for t, a in enumerate(actions):
            _, rewards, _, infos = venv.step(np.repeat(a[None], n_envs, axis=0))
            for i in range(n_envs):  # identical frames -> identical embeddings, in one batch or alone
                np.testing.assert_allclose(infos[i]["vlm_embedding"], single_infos[t]["vlm_embedding"],
                                           rtol=1e-4, atol=1e-5)
                assert "frame" not in infos[i]
                assert rewards[i] == pytest.approx(
                    infos[i]["task_reward"] + 0.05 * infos[i]["vlm_reward"], abs=1e-6)
        venv.close()


def test_one_forward_pass_per_step(encoder: RandomCLIPEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = make_vlm_vec_env("reach", n_envs=3, vlm=encoder, env_kwargs={"image_size": SIZE})
    venv.reset()
    batches = []
    original = encoder.encode_images
    monkeypatch.setattr(encoder, "encode_images", lambda f: batches.append(len(f)) or original(f))
    venv.step(np.zeros((3, 4)))
    assert batches == [3]


def test_terminal_frame_is_the_last_steps_frame(encoder: RandomCLIPEncoder) -> None:
    steps = 3
    venv = make_vlm_vec_env("drawer-open", n_envs=1, vlm=encoder, env_kwargs={"image_size": SIZE,
                                                                          "max_episode_steps": steps})
    twin = make_metaworld_env("drawer-open", image_size=SIZE, max_episode_steps=steps)
    venv.reset()
    twin.reset()
    actions = np.random.default_rng(1).uniform(-1, 1, (steps, 4)).astype(np.float32)
    for a in actions:
        _, _, dones, infos = venv.step(a[None])
        twin.step(a)
    assert dones[0] and infos[0]["TimeLimit.truncated"]
    terminal = encoder.encode_images(twin.render()[None])[0].numpy()
    np.testing.assert_allclose(infos[0]["vlm_embedding"], terminal, rtol=1e-4, atol=1e-5)
    twin.reset()  # after the auto-reset, the first frame of the next episode differs
    first = encoder.encode_images(twin.render()[None])[0].numpy()
    assert not np.allclose(first, terminal, atol=1e-4)


def test_vec_wrapper_needs_frames(encoder: RandomCLIPEncoder) -> None:
    venv = DummyVecEnv([lambda: make_metaworld_env("reach", image_size=SIZE)])
    with pytest.raises(TypeError, match="FrameInInfo"):  # building the reward needs the envs' task instance
        VecFuzzyVLMReward(venv, vlm=encoder)
    reward = furl_wrappers.VLMReward.build(task="reach", vlm=encoder)
    wrapped = VecFuzzyVLMReward(venv, vlm_reward=reward)
    wrapped.reset()
    with pytest.raises(KeyError, match="FrameInInfo"):
        wrapped.step(np.zeros((1, 4)))


class _BadEncoder(VLMEncoder):
    name, pretrained, dim = "bad", False, 8

    def __init__(self, value: float = float("nan"), out_dim: int = 8) -> None:
        super().__init__("cpu")
        self.value, self.out_dim = value, out_dim

    def _encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.full((frames.shape[0], self.out_dim), self.value)

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.ones(len(texts), 8)


class _DuckEncoder:
    """A user encoder that does not subclass anything."""

    dim = 3
    device = torch.device("cpu")

    def encode_images(self, frames):
        return torch.as_tensor(np.asarray(frames, np.float32).mean(axis=(1, 2)))

    def encode_text(self, texts):
        return torch.ones(len(texts), 3)


def test_user_encoder_object() -> None:
    env = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=_DuckEncoder(), mode="raw")
    env.reset()
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert info["vlm_embedding"].shape == (3,) and 0 < info["vlm_reward"] <= 1.0


def test_bad_inputs(encoder: RandomCLIPEncoder) -> None:
    env = make_metaworld_env("reach", image_size=SIZE)
    with pytest.raises(ValueError, match="non-empty string"):
        FuzzyVLMRewardWrapper(env, text="  ", vlm=encoder)
    with pytest.raises(ValueError, match="non-empty string"):
        FuzzyVLMRewardWrapper(env, text=42, vlm=encoder)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rho"):
        FuzzyVLMRewardWrapper(env, vlm=encoder, rho=-1.0)
    with pytest.raises(ValueError, match="random-clip"):
        FuzzyVLMRewardWrapper(env, vlm="random-clip:enormous")
    nan_env = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=_BadEncoder(), mode="raw")
    nan_env.reset()
    with pytest.raises(ValueError, match="NaN or inf"):
        nan_env.step(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="SparseTaskReward and OffscreenRenderWrapper"):
        FuzzyVLMRewardWrapper(gym.make("CartPole-v1"), vlm=encoder)
    reward = furl_wrappers.VLMReward.build(task="reach", vlm=encoder)
    with pytest.raises(TypeError, match="not both"):
        FuzzyVLMRewardWrapper(env, vlm_reward=reward, rho=0.1)
    with pytest.raises(TypeError, match="VLMReward"):
        FuzzyVLMRewardWrapper(env, vlm_reward=reward.reward_model)
    with pytest.raises(ValueError, match="goal_image must be 'auto'"):
        furl_wrappers.VLMReward.build(task="reach", vlm=encoder, goal_image="yes")
    with pytest.raises(ValueError, match="uint8"):
        furl_wrappers.VLMReward.build(task="reach", vlm=encoder, goal_image=np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="n_envs"):
        make_vlm_vec_env("reach", n_envs=0, vlm=encoder)


def test_subproc_vec_env_matches_dummy(encoder: RandomCLIPEncoder) -> None:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    actions = np.random.default_rng(3).uniform(-1, 1, (3, 2, 4)).astype(np.float32)
    results = []
    for cls in (DummyVecEnv, SubprocVecEnv):
        venv = make_vlm_vec_env("window-open", n_envs=2, vlm=encoder, vec_env_cls=cls,
                                env_kwargs={"image_size": SIZE})
        venv.reset()
        results.append([venv.step(a)[3][1]["vlm_embedding"] for a in actions])
        venv.close()
    for dummy, subproc in zip(*results):
        np.testing.assert_allclose(dummy, subproc, rtol=1e-5, atol=1e-6)
        assert np.abs(dummy).sum() > 0


def test_goal_image_auto_is_the_instances_expert_frame(encoder: RandomCLIPEncoder) -> None:
    venv = make_vlm_vec_env("reach", seed=3, vlm=encoder, env_kwargs={"image_size": SIZE})  # goal_image="auto"
    frame = furl_wrappers.goal_image("reach", seed=3, image_size=SIZE)
    np.testing.assert_allclose(venv.vlm_reward.goal_embedding, encoder.encode_images(frame[None])[0].numpy(),
                               rtol=1e-5, atol=1e-6)
    # none where it is never used (frozen/raw heads), impossible (no task instance) or not wanted (None)
    for kwargs in ({"mode": "raw"}, {"mode": "frozen"}, {"goal_image": None}):
        assert not make_vlm_vec_env("reach", vlm=encoder, env_kwargs={"image_size": SIZE}, **kwargs).vlm_reward.has_goal
    assert not furl_wrappers.VLMReward.build(task="reach", vlm=encoder).has_goal


def test_wrong_embedding_size_is_rejected() -> None:
    env = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=_BadEncoder(1.0, out_dim=5),
                                mode="raw")
    env.reset()
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        env.step(np.zeros(4, np.float32))


class _NoFrames(gym.Wrapper):
    """A wrapper that drops the frame, as an env not rendering "rgb_array" does."""

    def render(self):
        return None


class _Poison(gym.Wrapper):
    """Writes NaN into the observation or info['task_reward'] from step ``at`` on."""

    def __init__(self, env: gym.Env, what: str, at: int = 0) -> None:
        super().__init__(env)
        self.what, self.at, self.t = what, at, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        if self.t > self.at:
            if self.what == "obs":
                obs = obs.copy()
                obs[2] = np.nan
            else:
                info["task_reward"] = float("nan")
        return obs, reward, terminated, truncated, info


def test_render_returning_none_is_a_clear_error(encoder: RandomCLIPEncoder) -> None:
    env = FuzzyVLMRewardWrapper(_NoFrames(make_metaworld_env("reach", image_size=SIZE)), vlm=encoder)
    env.reset()
    with pytest.raises(ValueError) as err:
        env.step(np.zeros(4, np.float32))
    message = str(err.value)
    assert message.startswith("FuzzyVLMRewardWrapper: render() of env 0 (reach-v3) returned None, not an RGB "
                              "frame: the env must have render_mode=\"rgb_array\"")
    assert "\n" not in message and "NoneType" not in message
    venv = DummyVecEnv([lambda: FrameInInfo(make_metaworld_env("reach", image_size=SIZE)),
                        lambda: FrameInInfo(_NoFrames(make_metaworld_env("reach", image_size=SIZE)))])
    wrapped = VecFuzzyVLMReward(venv, vlm_reward=env.vlm_reward)
    wrapped.reset()
    with pytest.raises(ValueError, match=r"^VecFuzzyVLMReward: render\(\) of env 1 \(reach-v3\) returned None.*"
                                         r"render_mode=\"rgb_array\" \(it reports 'rgb_array'"):
        wrapped.step(np.zeros((2, 4)))


def test_non_finite_observation_or_task_reward_names_env_and_key(encoder: RandomCLIPEncoder) -> None:
    env = FuzzyVLMRewardWrapper(_Poison(make_metaworld_env("reach", image_size=SIZE), "obs"), vlm=encoder)
    env.reset()
    with pytest.raises(ValueError, match=r"^FuzzyVLMRewardWrapper: env 0 returned an observation that contains NaN; "
                                         "check the env"):
        env.step(np.zeros(4, np.float32))
    env = FuzzyVLMRewardWrapper(_Poison(make_metaworld_env("reach", image_size=SIZE), "task"), vlm=encoder)
    env.reset()
    with pytest.raises(ValueError, match=r"^env 0's info\['task_reward'\] is nan, not a finite number"):
        env.step(np.zeros(4, np.float32))
    for what, pattern in (("obs", r"^VecFuzzyVLMReward: env 1 returned an observation that contains NaN"),
                          ("task", r"^env 1's info\['task_reward'\] is nan")):
        venv = DummyVecEnv([lambda: FrameInInfo(make_metaworld_env("reach", image_size=SIZE)),
                            lambda w=what: FrameInInfo(_Poison(make_metaworld_env("reach", image_size=SIZE), w, 1))])
        wrapped = VecFuzzyVLMReward(venv, vlm_reward=env.vlm_reward)
        wrapped.reset()
        wrapped.step(np.zeros((2, 4)))  # finite at first
        with pytest.raises(ValueError, match=pattern):
            wrapped.step(np.zeros((2, 4)))


def test_nan_from_a_user_encoder_names_it() -> None:
    class NaNDuck(_DuckEncoder):
        name = "my-duck"

        def encode_images(self, frames):
            return torch.full((len(frames), 3), float("nan"))

    env = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=NaNDuck(), mode="raw")
    env.reset()
    with pytest.raises(ValueError, match="^encoder 'my-duck': image embedding of env 0's frame contains NaN; check "
                                         r"the encoder and its checkpoint"):
        env.step(np.zeros(4, np.float32))
    # VLMEncoder subclasses are checked by the encoder itself, naming it too
    bad = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=_BadEncoder(), mode="raw")
    bad.reset()
    with pytest.raises(ValueError, match="^bad image embeddings: 1 of 1 embeddings contain NaN or inf"):
        bad.step(np.zeros(4, np.float32))


def test_check_env_passes_and_the_spec_remakes_the_wrapper_around_the_same_reward(encoder: RandomCLIPEncoder) -> None:
    import warnings

    from gymnasium.utils.env_checker import check_env

    for goal in ("fixed", "random"):
        env = FuzzyVLMRewardWrapper(gym.make(furl_wrappers.env_id("reach", goal), image_size=SIZE), vlm=encoder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # check_env warns of infinite bounds and of wrappers
            check_env(env)  # re-makes the env from env.spec, this wrapper included
        wrapper = env.spec.additional_wrappers[-1]
        assert (wrapper.name, list(wrapper.kwargs)) == ("FuzzyVLMRewardWrapper", ["vlm_reward"])
        remade = env.spec.make()
        assert type(remade) is FuzzyVLMRewardWrapper and remade.vlm_reward is env.vlm_reward  # shared, not rebuilt
        assert env.spec.make().spec.additional_wrappers[-1] == wrapper
    framed = FrameInInfo(gym.make("furl/reach-v3", image_size=SIZE))
    assert framed.spec.additional_wrappers[-1].kwargs == {} and type(framed.spec.make()) is FrameInInfo


def test_non_finite_actions_are_refused_before_stepping(encoder: RandomCLIPEncoder) -> None:
    env = FuzzyVLMRewardWrapper(make_metaworld_env("reach", image_size=SIZE), vlm=encoder)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"^FuzzyVLMRewardWrapper: the action for env 0 contains NaN "
                                         r"\(\[nan, 0\.0, 0\.5, 0\.0\]\); actions must be finite: check the policy"):
        env.step(np.array([np.nan, 0.0, 0.5, 0.0], np.float32))
    assert env.unwrapped.curr_path_length == 0  # nothing reached MuJoCo
    venv = make_vlm_vec_env("reach", n_envs=3, vlm_reward=env.vlm_reward, env_kwargs={"image_size": SIZE})
    venv.reset()
    actions = np.zeros((3, 4), np.float32)
    actions[2] = [0.0, np.inf, -np.inf, np.nan]
    with pytest.raises(ValueError, match=r"^VecFuzzyVLMReward: the action for env 2 contains NaN and inf "
                                         r"\(\[0\.0, inf, -inf, nan\]\); actions must be finite"):
        venv.step(actions)
    assert venv.get_attr("curr_path_length") == [0, 0, 0]
    venv.step(np.zeros((3, 4), np.float32))  # finite actions step as before
    assert venv.get_attr("curr_path_length") == [1, 1, 1]
