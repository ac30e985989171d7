"""DrQ for SB3: random-shift augmentation, the paper's encoder, gradients (critic trains the encoder, the actor does
not), training on augmented batches, save/load without pickle, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

import furl_wrappers
from furl_wrappers import drq as drq_module
from furl_wrappers.drq import DrQ, DrQEncoder, DrQPolicy, random_shift
from furl_wrappers.pixel_buffer import PixelReplayBuffer
from furl_wrappers.serialization import load_model, save_model

SIZE = 32  # policy frame side in these tests (the paper's is 84)


def _env(**kwargs):
    return furl_wrappers.make_metaworld_env("reach", observation="pixels", image_size=SIZE, pixel_size=SIZE,
                                            max_episode_steps=kwargs.pop("max_episode_steps", 40), **kwargs)


def _model(env=None, **kwargs):
    defaults = dict(learning_starts=10, batch_size=8, buffer_size=200, seed=0, device="cpu",
                    policy_kwargs={"net_arch": [32, 32]})
    defaults.update(kwargs)
    return DrQ("CnnPolicy", env or _env(), **defaults)


def _coordinates(batch: int, size: int = 20) -> torch.Tensor:
    """(B, 9, S, S) uint8 images whose channel 0 holds the row index, channel 1 the column, the rest a copy: a
    shifted pixel tells where it came from."""
    rows = torch.arange(size).view(size, 1).expand(size, size)
    cols = torch.arange(size).view(1, size).expand(size, size)
    frame = torch.stack([rows, cols, rows + cols])
    return torch.cat([frame] * 3).unsqueeze(0).repeat(batch, 1, 1, 1).to(torch.uint8)


def test_random_shift_moves_each_sample_within_pad_with_one_shift_per_stack() -> None:
    torch.manual_seed(0)
    images = _coordinates(64)
    out = random_shift(images, pad=4)
    assert out.shape == images.shape and out.dtype == torch.uint8
    dy = out[:, 0, 10, 10].long() - 10  # centre pixels are never clamped for |shift| <= 4
    dx = out[:, 1, 10, 10].long() - 10
    assert dy.abs().max() <= 4 and dx.abs().max() <= 4
    assert len({(int(a), int(b)) for a, b in zip(dy, dx)}) > 20  # different shifts across the batch
    for b in range(64):  # the whole image is the shifted one, edges replicated, same shift in all 9 channels
        rows = (torch.arange(20) + dy[b]).clamp(0, 19)
        cols = (torch.arange(20) + dx[b]).clamp(0, 19)
        expected = images[b][:, rows][:, :, cols]
        assert torch.equal(out[b], expected)
    assert torch.equal(random_shift(images, pad=0), images)


def test_random_shift_follows_torch_seed() -> None:
    images = _coordinates(8)
    torch.manual_seed(3)
    a = random_shift(images)
    torch.manual_seed(3)
    assert torch.equal(a, random_shift(images))


def test_encoder_is_the_papers() -> None:
    space = spaces.Box(0, 255, (9, 84, 84), np.uint8)
    enc = DrQEncoder(space)
    convs = [m for m in enc.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (9, 32, (3, 3), (2, 2), (0, 0)), (32, 32, (3, 3), (1, 1), (0, 0)), (32, 32, (3, 3), (1, 1), (0, 0)),
        (32, 32, (3, 3), (1, 1), (0, 0))]
    linear, norm, tanh = enc.head
    assert linear.in_features == 32 * 35 * 35 and linear.out_features == 50 == enc.features_dim  # 84→41→39→37→35
    assert isinstance(norm, torch.nn.LayerNorm) and isinstance(tanh, torch.nn.Tanh)
    out = enc(torch.rand(2, 9, 84, 84))
    assert out.shape == (2, 50) and out.abs().max() <= 1


def test_policy_networks_are_the_papers_and_share_the_conv_layers() -> None:
    model = _model(policy_kwargs=None)
    policy = model.policy
    assert isinstance(policy, DrQPolicy) and policy.net_arch == [256, 256, 256]
    encoder = policy.critic.features_extractor
    actor_features = policy.actor.features_extractor
    assert actor_features.convs is encoder.convs  # the conv layers are shared
    assert actor_features.head is not encoder.head  # the actor has its own linear -> LayerNorm -> tanh
    assert [type(m) for m in actor_features.head] == [torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Tanh]
    assert policy.critic_target.features_extractor is not encoder  # the target critic has its own copy
    actor_params = {id(p) for group in policy.actor.optimizer.param_groups for p in group["params"]}
    critic_params = {id(p) for group in policy.critic.optimizer.param_groups for p in group["params"]}
    conv_params = {id(p) for p in encoder.convs.parameters()}
    assert {id(p) for p in encoder.parameters()} <= critic_params and not conv_params & actor_params
    assert {id(p) for p in actor_features.head.parameters()} <= actor_params
    assert not {id(p) for p in actor_features.head.parameters()} & critic_params
    assert (model.learning_rate, model.batch_size, model.tau, model.gamma) == (1e-4, 8, 0.01, 0.99)
    assert model.target_entropy == -2.0 and model.image_pad == 4
    assert DrQ.__init__.__kwdefaults__["buffer_size"] == 200_000


def test_critic_loss_reaches_the_encoder_actor_loss_does_not() -> None:
    model = _model()
    policy = model.policy
    encoder = policy.critic.features_extractor
    obs = torch.as_tensor(np.stack([_env().reset(seed=i)[0] for i in range(4)]))
    obs = policy.obs_to_tensor(obs.numpy())[0]
    actions = torch.rand(4, 4) * 2 - 1
    # TD-style loss through the critic: gradients reach the encoder
    sum(q.sum() for q in policy.critic(obs, actions)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    policy.zero_grad(set_to_none=True)
    # actor loss as SAC computes it: the actor reads the conv layers without gradient (its own head gets one), and
    # the critic scores the actor's actions with its encoder held fixed
    actions_pi, log_prob = policy.actor.action_log_prob(obs)
    q_pi = torch.cat(policy.critic(obs, actions_pi), dim=1).min(dim=1).values
    (log_prob - q_pi).mean().backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.actor.latent_pi.parameters())
    head = policy.actor.features_extractor.head
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_an_actor_step_leaves_the_encoder_unchanged_a_critic_step_changes_it() -> None:
    model = _model()
    model.learn(30)  # 20 gradient steps
    encoder = model.policy.critic.features_extractor
    before = [p.detach().clone() for p in encoder.parameters()]
    for p in encoder.parameters():  # gradients on the encoder: an actor step must still leave it alone
        p.grad = torch.ones_like(p)
    model.policy.actor.optimizer.step()
    assert all(torch.equal(a, p) for a, p in zip(before, encoder.parameters()))
    model.train(1, 8)
    assert any(not torch.equal(a, p) for a, p in zip(before, encoder.parameters()))


def test_train_samples_are_shifted(monkeypatch) -> None:
    model = _model(learning_starts=100)
    model.learn(20)  # fill the buffer, no training yet
    calls = []

    def recording(images, pad=4):
        calls.append((images.shape, pad))
        return random_shift(images, pad)

    monkeypatch.setattr(drq_module, "random_shift", recording)
    model.train(2, 8)
    assert calls == [((8, 9, SIZE, SIZE), 4)] * 4  # obs and next obs, each gradient step
    assert isinstance(model.replay_buffer, PixelReplayBuffer)  # put back after train


def test_pad_zero_trains_on_the_stored_frames() -> None:
    model = _model(image_pad=0, learning_starts=100)
    model.learn(20)
    batch = model.replay_buffer.sample(4)
    assert batch.observations.dtype == torch.uint8 and batch.observations.shape == (4, 9, SIZE, SIZE)


def test_learn_predict_and_save_load_without_pickle(tmp_path) -> None:
    env = _env()
    model = _model(env)
    model.learn(40)
    obs = np.stack([env.reset(seed=i)[0] for i in range(3)])
    actions = model.predict(obs, deterministic=True)[0]
    save_model(model, tmp_path / "drq.zip")
    loaded = load_model(DrQ, tmp_path / "drq.zip", env=env, device="cpu")  # refuses to unpickle anything
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    assert isinstance(loaded.policy, DrQPolicy) and loaded.image_pad == 4
    model.save(tmp_path / "sb3.zip")  # SB3's own save/load works too
    np.testing.assert_array_equal(DrQ.load(tmp_path / "sb3.zip", env=env).predict(obs, deterministic=True)[0],
                                  actions)


def test_same_seed_same_weights() -> None:
    a = _model()
    a.learn(30)  # (creating a model seeds the global RNGs: create each just before its run)
    b = _model()
    b.learn(30)
    for (name, x), (_, y) in zip(a.policy.state_dict().items(), b.policy.state_dict().items()):
        assert torch.equal(x, y), name


def test_bad_inputs() -> None:
    state_env = furl_wrappers.make_metaworld_env("reach", image_size=SIZE)
    with pytest.raises(ValueError, match=r"DrQ needs uint8 observations of shape \(3\*k, H, W\)"):
        DrQ("CnnPolicy", state_env)
    with pytest.raises(ValueError, match="share_features_extractor must be True"):
        _model(policy_kwargs={"share_features_extractor": False})
    with pytest.raises(ValueError, match="image_pad must be"):
        _model(image_pad=-1)
    with pytest.raises(TypeError, match="DrQPolicy needs a DrQEncoder"):
        from stable_baselines3.common.torch_layers import FlattenExtractor

        _model(policy_kwargs={"features_extractor_class": FlattenExtractor})
    with pytest.raises(ValueError, match="features_dim must be"):
        DrQEncoder(spaces.Box(0, 255, (9, 84, 84), np.uint8), features_dim=0)
    with pytest.raises(ValueError, match="one entry per conv layer"):
        DrQEncoder(spaces.Box(0, 255, (9, 84, 84), np.uint8), channels=(32, 32), kernels=(3,), strides=(2, 1))
