from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from furl_wrappers.encoders import RandomCLIPEncoder
from furl_wrappers.reward_model import RewardModel, cosine_reward, goal_baseline_reward, projection_head


def test_cosine_reward_on_hand_made_vectors() -> None:
    text = torch.tensor([1.0, 0.0])
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-2.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    expected = [1.0, 0.0, -1.0, 1 / math.sqrt(2), 0.6]
    torch.testing.assert_close(cosine_reward(text, images), torch.tensor(expected))
    model = RewardModel(text, mode="raw", device="cpu")
    torch.testing.assert_close(model.reward(images.numpy()), torch.tensor(expected))
    # a zero image scores 0 (no NaN), like F.cosine_similarity with eps
    assert float(cosine_reward(text, torch.zeros(1, 2))[0]) == 0.0


def test_cosine_reward_matches_torch_cosine_similarity_with_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    text = torch.randn(64, generator=g, requires_grad=True)
    images = (torch.randn(300, 64, generator=g) * torch.rand(300, 1, generator=g) * 5).requires_grad_(True)
    ours = cosine_reward(text, images)
    ref = torch.nn.functional.cosine_similarity(images, text.unsqueeze(0).expand_as(images), dim=-1, eps=1e-8)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    grads = torch.autograd.grad(ours.pow(2).sum(), (text, images))
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), (text, images))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_heads_are_the_papers() -> None:
    head = projection_head(512)
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear"]
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (512, 256, 64)
    model = RewardModel(torch.randn(512), device="cpu", seed=0)
    assert model.project_images(torch.randn(3, 512)).shape == (3, 64)
    assert model.project_text().shape == (64,)


def test_heads_are_initialised_as_the_reference_flax_dense() -> None:
    """LeCun-normal weights (truncated at ±2σ of the underlying normal, std 1/sqrt(fan_in)), zero biases."""
    torch.manual_seed(0)
    head = projection_head(512, 256, 64)
    for layer, fan_in in ((head[0], 512), (head[2], 256)):
        w = layer.weight.detach()
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
        assert abs(w.std().item() * fan_in**0.5 - 1.0) < 0.03  # 131k / 16k samples
        assert abs(w.mean().item()) < 0.1 / fan_in**0.5
        assert w.abs().max().item() <= 2.0 / 0.87962566103423978 / fan_in**0.5 + 1e-6  # truncated
    # torch's default (kaiming-uniform, a=sqrt(5)) has std 1/sqrt(3 fan_in): not what the reference uses
    assert abs(torch.nn.Linear(512, 256).weight.std().item() * 512**0.5 - 3**-0.5) < 0.03


def test_reward_with_heads_is_cosine_of_projections() -> None:
    model = RewardModel(torch.randn(16), mode="learned", hidden_dim=8, output_dim=4, device="cpu", seed=1)
    images = torch.randn(5, 16)
    with torch.no_grad():
        fi = model.image_head(images)
        fl = model.text_head(model.text_embedding)
    expected = (fi @ fl) / (fi.norm(dim=1) * fl.norm())
    torch.testing.assert_close(model.reward(images), expected)


def test_modes() -> None:
    text = torch.randn(16)
    raw = RewardModel(text, mode="raw", device="cpu")
    assert list(raw.parameters()) == [] and not raw.trainable
    frozen = RewardModel(text, mode="frozen", device="cpu", seed=0)
    assert all(not p.requires_grad for p in frozen.parameters()) and not frozen.trainable
    learned = RewardModel(text, mode="learned", device="cpu", seed=0)
    assert learned.trainable and all(p.requires_grad for p in learned.parameters())
    loss = learned(torch.randn(4, 16)).sum()
    loss.backward()
    assert learned.image_head[0].weight.grad is not None and learned.text_head[2].weight.grad is not None
    # same seed -> same random heads, different seed -> different heads
    again = RewardModel(text, mode="frozen", device="cpu", seed=0)
    torch.testing.assert_close(again.image_head[0].weight, frozen.image_head[0].weight)
    other = RewardModel(text, mode="frozen", device="cpu", seed=1)
    assert not torch.allclose(other.image_head[0].weight, frozen.image_head[0].weight)


def test_goal_baseline_reward() -> None:
    g = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([0.0, 1.0, 0.0])
    x = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    # alpha = 0: plain cosine
    torch.testing.assert_close(goal_baseline_reward(g, b, x, 0.0), cosine_reward(g, x))
    # alpha = 1: only the component of (x - g) along d = (g - b)/|g - b| counts
    # x0 - g = (-1, 0, 1): along d = (1,-1,0)/sqrt2 -> -1/sqrt2 -> squared norm 1/2 -> r = 1 - 1/4 = 0.75
    # x1 - g = (-1, 1, 0): along d -> -sqrt2 -> squared norm 2 -> r = 0
    torch.testing.assert_close(goal_baseline_reward(g, b, x, 1.0), torch.tensor([0.75, 0.0]))
    model = RewardModel(g, mode="raw", baseline_embedding=b, alpha=1.0, device="cpu")
    torch.testing.assert_close(model.reward(x), torch.tensor([0.75, 0.0]))


def test_state_dict_round_trip() -> None:
    text = torch.randn(16)
    a = RewardModel(text, device="cpu", seed=0)
    b = RewardModel(torch.zeros(16) + 1, device="cpu", seed=5)
    b.load_state_dict(a.state_dict())
    images = torch.randn(6, 16)
    torch.testing.assert_close(a.reward(images), b.reward(images))


def test_from_encoder() -> None:
    enc = RandomCLIPEncoder("tiny", device="cpu")
    model = RewardModel.from_encoder(enc, "Open a drawer.", baseline_text="a robot arm", alpha=0.5, seed=0)
    torch.testing.assert_close(model.text_embedding, enc.encode_text(["Open a drawer."])[0])
    assert model.device == enc.device and model.alpha == 0.5
    assert model.reward(np.zeros((2, 32), np.float32)).shape == (2,)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="'best'"):
        RewardModel(torch.randn(4), mode="best")
    with pytest.raises(ValueError, match="alpha"):
        RewardModel(torch.randn(4), alpha=1.5)
    with pytest.raises(ValueError, match="finite"):
        RewardModel(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="baseline_embedding"):
        RewardModel(torch.randn(4), baseline_embedding=torch.randn(5))
    model = RewardModel(torch.randn(4), device="cpu")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        model.reward(torch.randn(2, 5))


@pytest.mark.parametrize("optimiser", ["foreach", "fused", "alignment"])
def test_rewards_follow_the_heads_after_any_optimiser_step(optimiser: str) -> None:
    from furl_wrappers.callbacks.alignment import _adam

    model = RewardModel(torch.randn(16), device="cpu", seed=0)
    x = torch.randn(5, 16)
    first = model.reward(x)
    assert model.reward(x) is not first and torch.equal(model.reward(x), first)
    # an optimiser step changes the text head in place (a fused Adam without bumping the tensors' version
    # counters): the rewards must use the new text head
    params = list(model.parameters())
    opt = (_adam(params, 0.1) if optimiser == "alignment" else
           torch.optim.Adam(params, lr=0.1, **{optimiser: True}))
    model(x).sum().backward()
    opt.step()
    with torch.no_grad():
        fresh = torch.nn.functional.cosine_similarity(
            model.image_head(x), model.text_head(model.text_embedding).expand(5, -1), dim=-1)
    torch.testing.assert_close(model.reward(x), fresh)
    assert not torch.allclose(model.reward(x), first)
    # load_state_dict brings the old heads back, and the old rewards with them
    other = RewardModel(torch.randn(16), device="cpu", seed=1)
    other.reward(x)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.reward(x), model.reward(x))
    # with autograd on, the projection is recomputed and differentiable
    assert model(x).requires_grad
