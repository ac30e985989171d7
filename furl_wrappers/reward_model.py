"""The FuRL reward model: projection heads on frozen VLM embeddings and the cosine reward r_VLM.

``r_VLM(o) = cos(f_L(Φ_L(l)), f_I(Φ_I(o)))`` with ``f_I``, ``f_L`` two-layer MLPs (hidden 256, output 64, ReLU
between, no final activation) — paper §3.3.1, Eqn. 3. Modes:

- ``"learned"``: the heads train (FuRL's reward alignment updates them);
- ``"frozen"``: randomly initialised heads that never train (the paper's LIV-Proj baseline);
- ``"raw"``: no heads, ``cos(Φ_L(l), Φ_I(o))`` (the LIV / CLIP rows and VLM-RMs).

With ``baseline_embedding`` and ``alpha`` > 0 it is the VLM-RMs goal-baseline reward
``1 − ½‖(α·P + (1−α)·I)(x − g)‖²`` on unit vectors, where ``g`` is the task text, ``b`` the baseline text and
``P`` the projection on the direction ``g − b`` (with α = 0 this equals the cosine).

It lives inside the :class:`~furl_wrappers.VLMReward` that the env wrapper, the replay buffer and the alignment
callback share, so every reward is computed with the current heads. Parameters live on one device;
``state_dict`` round-trips.

Example:
    >>> import torch
    >>> model = RewardModel(torch.ones(8), mode="raw")
    >>> [round(r, 6) for r in model.reward(torch.ones(3, 8)).tolist()]
    [1.0, 1.0, 1.0]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from stable_baselines3.common.utils import get_device
from torch import nn

__all__ = ["REWARD_MODES", "RewardModel", "projection_head", "lecun_normal_", "cosine_reward", "goal_baseline_reward"]

REWARD_MODES = ("learned", "frozen", "raw")


#: Flax's ``lecun_normal`` draws from a normal truncated at ±2 std, rescaled by this so the std is 1/√fan_in
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """Flax's ``lecun_normal`` in place: truncated normal (±2σ), std ``1/√fan_in`` (``weight`` is ``(out, in)``)."""
    std = (1.0 / weight.shape[1]) ** 0.5 / _TRUNCATED_NORMAL_STD
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def projection_head(in_dim: int, hidden: int = 256, out: int = 64) -> nn.Sequential:
    """``Linear(in, hidden) → ReLU → Linear(hidden, out)``: the paper's f_I / f_L, initialised as the reference code's
    Flax ``Dense`` layers (LeCun-normal weights, zero biases; torch's default init spreads r_VLM about 5× less)."""
    head = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))
    with torch.no_grad():
        for layer in (head[0], head[2]):
            assert isinstance(layer, nn.Linear)
            lecun_normal_(layer.weight)
            layer.bias.zero_()
    return head


def cosine_reward(text: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``cos(text, images[i])`` for a text vector ``(D,)`` and image batch ``(N, D)`` → ``(N,)``.

    ``x·t / max(‖x‖‖t‖, 1e-8)``, the value ``F.cosine_similarity(..., eps=1e-8)`` gives, written as one
    matrix-vector product (about half the cost of ``F.cosine_similarity`` forward + backward; BENCHMARKS.md).
    """
    return (images @ text) / (images.norm(dim=-1) * text.norm()).clamp_min(1e-8)


def goal_baseline_reward(
    text: torch.Tensor, baseline: torch.Tensor, images: torch.Tensor, alpha: float
) -> torch.Tensor:
    """VLM-RMs goal-baseline reward ``1 − ½‖(αP + (1−α)I)(x − g)‖²`` on unit vectors → ``(N,)``."""
    g = F.normalize(text, dim=-1)
    b = F.normalize(baseline, dim=-1)
    x = F.normalize(images, dim=-1)
    direction = F.normalize(g - b, dim=-1)
    diff = x - g
    along = (diff @ direction).unsqueeze(-1) * direction  # P (x - g)
    mixed = alpha * along + (1.0 - alpha) * diff
    return 1.0 - 0.5 * mixed.pow(2).sum(dim=-1)


class RewardModel(nn.Module):
    """Heads and text embedding of the FuRL reward.

    Args:
        text_embedding: frozen text embedding Φ_L(l), ``(D,)``.
        mode: ``"learned"``, ``"frozen"`` or ``"raw"`` (see the module docstring).
        hidden_dim: heads' hidden width (256).
        output_dim: heads' output size (64).
        baseline_embedding: Φ_L of a baseline prompt for the goal-baseline variant, ``(D,)``.
        alpha: goal-baseline mixing in [0, 1] (used only with ``baseline_embedding``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``; all parameters and buffers live there.
        seed: seeds the heads' initialisation (``None``: torch's global generator).
    """

    # Registered buffers (nn.Module.__getattr__ would type them as ``Tensor | Module``).
    text_embedding: torch.Tensor
    baseline_embedding: torch.Tensor | None

    def __init__(
        self,
        text_embedding: torch.Tensor,
        mode: str = "learned",
        hidden_dim: int = 256,
        output_dim: int = 64,
        baseline_embedding: torch.Tensor | None = None,
        alpha: float = 0.0,
        device: str | torch.device = "auto",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in REWARD_MODES:
            raise ValueError(f"mode must be one of {list(REWARD_MODES)}, got {mode!r}")
        text_embedding = torch.as_tensor(text_embedding, dtype=torch.float32).detach().reshape(-1)
        if text_embedding.numel() == 0 or not torch.isfinite(text_embedding).all():
            raise ValueError("text_embedding must be a non-empty, finite vector (D,)")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        for name, value in (("hidden_dim", hidden_dim), ("output_dim", output_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.mode = mode
        self.dim = int(text_embedding.numel())
        self.alpha = float(alpha)
        self.device = get_device(device)
        self.register_buffer("text_embedding", text_embedding.clone())
        if baseline_embedding is not None:
            baseline_embedding = torch.as_tensor(baseline_embedding, dtype=torch.float32).detach().reshape(-1)
            if baseline_embedding.shape != text_embedding.shape:
                raise ValueError(
                    f"baseline_embedding must have the text embedding's shape {tuple(text_embedding.shape)}, "
                    f"got {tuple(baseline_embedding.shape)}"
                )
            self.register_buffer("baseline_embedding", baseline_embedding.clone())
        else:
            self.baseline_embedding = None
        if mode == "raw":
            self.image_head: nn.Module | None = None
            self.text_head: nn.Module | None = None
        else:
            with torch.random.fork_rng(devices=[], enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                self.image_head = projection_head(self.dim, hidden_dim, output_dim)
                self.text_head = projection_head(self.dim, hidden_dim, output_dim)
            if mode == "frozen":
                self.image_head.requires_grad_(False)
                self.text_head.requires_grad_(False)
        self.to(self.device)

    @classmethod
    def from_encoder(cls, encoder: Any, text: str, baseline_text: str | None = None, **kwargs: Any) -> RewardModel:
        """Build from an encoder and the task instruction (the text embedding is computed once here).

        ``device`` defaults to the encoder's.
        """
        kwargs.setdefault("device", encoder.device)
        text_embedding = encoder.encode_text([text])[0].detach().float().cpu()
        baseline = None if baseline_text is None else encoder.encode_text([baseline_text])[0].detach().float().cpu()
        return cls(text_embedding, baseline_embedding=baseline, **kwargs)

    @property
    def trainable(self) -> bool:
        """Whether the heads train (mode ``"learned"``)."""
        return self.mode == "learned"

    def project_images(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """``f_I(Φ_I(o))``, or the raw embedding in ``"raw"`` mode: ``(N, D)`` → ``(N, out)``."""
        x = image_embeddings.to(self.device, torch.float32)
        return x if self.image_head is None else self.image_head(x)

    def project_text(self) -> torch.Tensor:
        """``f_L(Φ_L(l))``, or the raw text embedding: ``(out,)``.

        Computed at every call (one small matrix-vector product): a cache keyed on the parameters' version
        counters went stale, because fused optimisers (the alignment's Adam) update parameters without bumping them.
        """
        if self.text_head is None:
            return self.text_embedding
        return self.text_head(self.text_embedding)

    def forward(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """Differentiable r_VLM for a batch ``(N, D)`` → ``(N,)`` (gradients flow into learned heads)."""
        if image_embeddings.ndim != 2 or image_embeddings.shape[1] != self.dim:
            raise ValueError(f"image embeddings must have shape (N, {self.dim}), got {tuple(image_embeddings.shape)}")
        images = self.project_images(image_embeddings)
        text = self.project_text()
        if self.baseline_embedding is not None and self.alpha > 0.0:
            baseline = self.baseline_embedding if self.text_head is None else self.text_head(self.baseline_embedding)
            return goal_baseline_reward(text, baseline, images, self.alpha)
        return cosine_reward(text, images)

    def reward(self, image_embeddings: Any) -> torch.Tensor:
        """r_VLM with the current heads, no gradients: ``(N, D)`` array or tensor → float32 ``(N,)`` on device."""
        x = torch.as_tensor(image_embeddings)
        with torch.inference_mode():
            return self.forward(x.to(self.device, torch.float32))
