"""CLIP-style image preprocessing in torch, on the encoder's device: never PIL, frame by frame.

Reproduces ``CLIPImageProcessor``: resize the shortest side to ``size`` (bicubic, antialiased like PIL),
centre-crop ``crop_size``, scale to [0, 1], normalise with the model's mean and std. Optionally first
centre-crops a fraction of the frame, as the FuRL reference code does (a 256 → 192 crop is
``pre_crop=0.75``). Parity with ``CLIPImageProcessor`` is tested on rendered Meta-World frames: identical
when no resize is needed (224² frames); otherwise, in normalised units (one uint8 level ≈ 0.015), mean
absolute difference < 0.003, 99.9 % of values within 0.03 and max < 0.3 (measured: 0.0015, 0.015, 0.23 — PIL
resizes in 8-bit fixed point, so a few edge pixels differ by more than a level).

Example:
    >>> import torch
    >>> pre = ImagePreprocessor(size=224, crop_size=224)
    >>> pre(torch.zeros(2, 256, 256, 3, dtype=torch.uint8)).shape
    torch.Size([2, 3, 224, 224])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["ImagePreprocessor", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre crop of a ``(N, C, H, W)`` tensor, with the same offsets as transformers' ``center_crop``."""
    h, w = x.shape[-2:]
    top = max((h - height) // 2, 0)
    left = max((w - width) // 2, 0)
    return x[..., top : top + height, left : left + width]


class ImagePreprocessor:
    """uint8 frames ``(N, H, W, 3)`` → normalised float pixels ``(N, 3, crop, crop)``, all in torch.

    Args:
        size: shortest side after resizing.
        crop_size: side of the centre crop fed to the model.
        mean: per-channel mean (the model's).
        std: per-channel std (the model's).
        pre_crop: fraction of the frame kept by a centre crop *before* resizing (``None``: no crop; the
            reference code's 256 → 192 crop is ``0.75``).
        dtype: dtype of the output (``torch.float16`` for half-precision models).
        resample: ``"bicubic"`` (CLIPImageProcessor's: antialiased, rounded to uint8 levels like PIL) or
            ``"bilinear"`` (LIV's torchvision transform in the reference code: no antialiasing, no rounding).
        bgr: swap the channels to BGR before normalising (the reference code feeds LIV OpenCV's BGR frames).
    """

    def __init__(
        self,
        size: int = 224,
        crop_size: int = 224,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        pre_crop: float | None = None,
        dtype: torch.dtype = torch.float32,
        resample: str = "bicubic",
        bgr: bool = False,
    ) -> None:
        if resample not in ("bicubic", "bilinear"):
            raise ValueError(f"resample must be 'bicubic' or 'bilinear', got {resample!r}")
        if not isinstance(size, int) or size < 1 or not isinstance(crop_size, int) or crop_size < 1:
            raise ValueError(f"size and crop_size must be positive integers, got {size!r} and {crop_size!r}")
        if pre_crop is not None and not 0.0 < float(pre_crop) <= 1.0:
            raise ValueError(f"pre_crop must be a fraction in (0, 1] (0.75 for the reference 256->192), "
                             f"got {pre_crop!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need 3 channels with std > 0, got mean={mean!r} std={std!r}")
        self.size = size
        self.crop_size = crop_size
        self.pre_crop = None if pre_crop is None else float(pre_crop)
        self.dtype = dtype
        self.resample, self.bgr = resample, bool(bgr)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Preprocess a uint8 ``(N, H, W, 3)`` batch (on any device; the output stays there)."""
        x = frames.permute(0, 3, 1, 2).float()
        if self.pre_crop is not None and self.pre_crop < 1.0:
            h, w = x.shape[-2:]
            x = _center_crop(x, round(h * self.pre_crop), round(w * self.pre_crop))
        h, w = x.shape[-2:]
        short, long = (h, w) if h <= w else (w, h)
        if short != self.size:
            new_long = int(self.size * long / short)
            new_hw = (self.size, new_long) if h <= w else (new_long, self.size)
            if self.resample == "bicubic":
                x = F.interpolate(x, size=new_hw, mode="bicubic", align_corners=False, antialias=True)
                x = x.clamp_(0.0, 255.0).round_()  # PIL resizes in uint8: round like it does
            else:
                x = F.interpolate(x, size=new_hw, mode="bilinear", align_corners=False, antialias=False)
        x = _center_crop(x, self.crop_size, self.crop_size)
        if self.bgr:
            x = x.flip(1)
        mean, std = self._mean.to(x.device), self._std.to(x.device)
        return ((x / 255.0 - mean) / std).to(self.dtype).contiguous()

    @classmethod
    def from_image_processor_config(
        cls, config: dict[str, Any], pre_crop: float | None = None, dtype: torch.dtype = torch.float32
    ) -> ImagePreprocessor:
        """Build from a ``preprocessor_config.json`` dict of a CLIP checkpoint."""
        size: Any = config.get("size", 224)
        size = size.get("shortest_edge", size.get("height", 224)) if isinstance(size, dict) else size
        crop: Any = config.get("crop_size", size)
        crop = crop.get("height", size) if isinstance(crop, dict) else crop
        return cls(
            size=int(size),
            crop_size=int(crop),
            mean=config.get("image_mean", CLIP_MEAN),
            std=config.get("image_std", CLIP_STD),
            pre_crop=pre_crop,
            dtype=dtype,
        )
