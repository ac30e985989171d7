"""The encoder interface every frozen VLM implements, and input checks shared by all of them.

An encoder maps uint8 frames ``(N, H, W, 3)`` and texts to float32 embeddings ``(N, D)`` on its device. Any
object with ``encode_images``, ``encode_text``, ``dim`` and ``device`` works (the :class:`ImageTextEncoder`
protocol, checked by :func:`is_encoder`); subclass
:class:`VLMEncoder` to get text caching, input checks and a plain description for free.

Example:
    >>> import numpy as np, torch
    >>> class MeanColour(VLMEncoder):
    ...     name, pretrained, dim = "mean-colour", False, 3
    ...     def _encode_images(self, frames):  # frames: uint8 tensor (N, H, W, 3) on self.device
    ...         return frames.float().mean(dim=(1, 2))
    ...     def _encode_text(self, texts):
    ...         return torch.ones(len(texts), 3)
    >>> MeanColour().encode_images(np.zeros((2, 8, 8, 3), np.uint8)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np
import torch
from stable_baselines3.common.utils import get_device

__all__ = ["ImageTextEncoder", "VLMEncoder", "Frames", "check_frames", "check_texts", "check_embeddings", "check_half",
           "is_encoder", "describe"]

Frames = Union[np.ndarray, torch.Tensor]


@runtime_checkable
class ImageTextEncoder(Protocol):
    """What the VLM reward needs of a frozen encoder (structural: no base class required).

    Attributes:
        dim: embedding size D.
        device: where ``encode_*`` return their tensors.
    """

    dim: int
    device: torch.device

    def encode_images(self, frames: Frames) -> torch.Tensor:
        """uint8 frames ``(N, H, W, 3)`` → float32 embeddings ``(N, D)``."""

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts ``(N,)`` → float32 embeddings ``(N, D)``."""


def check_frames(frames: Frames) -> None:
    """Raise ``ValueError`` unless ``frames`` is a uint8 batch ``(N, H, W, 3)`` with N ≥ 1."""
    dtype = frames.dtype
    if dtype not in (np.uint8, torch.uint8):
        raise ValueError(
            f"frames must be uint8 RGB images (N, H, W, 3) as env.render() returns, got dtype {dtype}; "
            "convert with (frames * 255).astype(np.uint8) if they are floats in [0, 1]"
        )
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[0] < 1:
        raise ValueError(f"frames must have shape (N, H, W, 3) with N >= 1 and 3 RGB channels, got {shape}")


def check_texts(texts: Sequence[str]) -> list[str]:
    """A list of non-empty strings, or ``ValueError`` naming the bad entry."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("texts must hold at least one string")
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"each text must be a non-empty string, got {text!r}")
    return texts


def check_embeddings(embeddings: torch.Tensor, dim: int, what: str) -> torch.Tensor:
    """Check shape ``(N, dim)`` and finiteness; raise ``ValueError`` saying what produced them."""
    if embeddings.ndim != 2 or embeddings.shape[1] != dim:
        raise ValueError(f"{what} must have shape (N, {dim}), got {tuple(embeddings.shape)}")
    if not torch.isfinite(embeddings).all():
        rows = (~torch.isfinite(embeddings)).any(dim=1)
        raise ValueError(f"{what}: {int(rows.sum())} of {embeddings.shape[0]} embeddings contain NaN or inf (first: "
                         f"row {int(rows.nonzero()[0, 0])}); check the encoder's weights and input preprocessing")
    return embeddings


def check_half(half: bool, device: torch.device) -> bool:
    """``half`` if the device can run it: float16 inference is for CUDA (on CPU LayerNorm and many kernels have no
    float16 path); ``half=True`` elsewhere is a ``ValueError`` saying so."""
    if half and device.type != "cuda":
        raise ValueError(f"half=True runs the encoder in float16, which needs a CUDA device; the encoder is on "
                         f"{device}: pass half=False (float32), or device='cuda'")
    return bool(half)


def is_encoder(obj: Any) -> bool:
    """Whether ``obj`` implements the encoder interface (duck-typed, so user encoders need no base class)."""
    return isinstance(obj, ImageTextEncoder)


def describe(encoder: Any) -> str:
    """One line naming the encoder and saying plainly whether it is pretrained."""
    name = getattr(encoder, "name", type(encoder).__name__)
    pretrained = getattr(encoder, "pretrained", None)
    if pretrained is False:
        return (
            f"{name} (NOT a pretrained VLM: its reward carries no language meaning; pass a real checkpoint "
            "with vlm='openai/clip-vit-base-patch32', a local CLIP directory, or 'liv')"
        )
    if pretrained is None:
        return f"{name} (user encoder; pretraining unknown)"
    return f"{name} (pretrained)"


class VLMEncoder(abc.ABC):
    """Base class of the frozen encoders: input checks, device handling and a text-embedding cache.

    Subclasses set ``name``, ``pretrained`` and ``dim`` and implement ``_encode_images`` (uint8 tensor
    ``(N, H, W, 3)`` on ``device`` → ``(N, dim)``) and ``_encode_text`` (list of strings → ``(N, dim)``).
    Both run under ``torch.inference_mode()``; outputs are returned as float32 on ``device``.
    """

    name: str = "encoder"
    pretrained: bool = False
    dim: int = 0

    def __init__(self, device: str | torch.device = "auto") -> None:
        self.device = get_device(device)
        self._text_cache: dict[str, torch.Tensor] = {}

    @property
    def description(self) -> str:
        """What this encoder is, saying plainly when it is not pretrained."""
        return describe(self)

    def encode_images(self, frames: Frames) -> torch.Tensor:
        """Embed a batch of frames.

        Args:
            frames: uint8 ``(N, H, W, 3)`` numpy array or tensor (any device).

        Returns:
            float32 ``(N, dim)`` on ``self.device``.
        """
        check_frames(frames)
        tensor = torch.as_tensor(frames).to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self._encode_images(tensor).float()
        # clone outside inference mode: the result may feed heads that are being trained
        return check_embeddings(out.clone(), self.dim, f"{self.name} image embeddings")

    def encode_text(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Embed texts (each computed once, then served from a cache).

        Returns:
            float32 ``(len(texts), dim)`` on ``self.device``.
        """
        texts = check_texts(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            with torch.inference_mode():
                out = self._encode_text(missing).float()
            out = check_embeddings(out.clone(), self.dim, f"{self.name} text embeddings")
            self._text_cache.update(zip(missing, out))
        return torch.stack([self._text_cache[t] for t in texts])

    @abc.abstractmethod
    def _encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, H, W, 3)`` on ``self.device`` → ``(N, dim)``."""

    @abc.abstractmethod
    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        """list of N strings → ``(N, dim)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description}, dim={self.dim}, device={self.device})"
