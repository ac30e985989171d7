"""``make_encoder``: a name, path or object → a frozen encoder (the names are listed in the package docstring).

Example:
    >>> make_encoder("random-clip:tiny:seed1", device="cpu").name
    'random-clip:tiny:seed1'
"""

from __future__ import annotations

from typing import Any

import torch

from furl_wrappers.encoders.base import is_encoder
from furl_wrappers.encoders.clip import DEFAULT_CLIP, RANDOM_CLIP_SIZES, CLIPEncoder, RandomCLIPEncoder
from furl_wrappers.encoders.liv import LIV_REPO, LIVEncoder
from furl_wrappers.encoders.offline import OFFLINE_VLM, OfflineVLMEncoder

__all__ = ["make_encoder"]


def _parse_random_clip(spec: str) -> tuple[str, int]:
    size, seed = "b32", 0
    for part in spec.split(":")[1:]:
        if part in RANDOM_CLIP_SIZES:
            size = part
        elif part.startswith("seed") and part[4:].isdigit():
            seed = int(part[4:])
        else:
            raise ValueError(
                f"bad random-clip spec {spec!r}: parts after 'random-clip' are a size {list(RANDOM_CLIP_SIZES)} "
                "and/or 'seed<N>', e.g. 'random-clip:tiny:seed1'"
            )
    return size, seed


def make_encoder(
    vlm: str | Any = DEFAULT_CLIP,
    *,
    device: str | torch.device = "auto",
    half: bool = False,
    pre_crop: float | None = None,
    liv_transform: str = "clip",
) -> Any:
    """Build (or pass through) a frozen encoder. See the module docstring for the accepted names.

    ``liv_transform="reference"`` gives LIV the reference code's input (BGR frames, bilinear resize); other
    encoders ignore it.

    Raises:
        ValueError: for an object that is not an encoder or a malformed name.
        ModelUnavailableError: when a checkpoint cannot be loaded (the message says how to pass a local one).
    """
    if not isinstance(vlm, str):
        if is_encoder(vlm):
            return vlm
        raise ValueError(
            f"vlm must be a name ('openai/clip-vit-base-patch32', 'liv', 'random-clip', a local directory) or an "
            f"object with encode_images, encode_text, dim and device; got {type(vlm).__name__}"
        )
    spec = vlm.strip()
    if not spec:
        raise ValueError("vlm must be a non-empty name or path")
    kwargs: dict[str, Any] = dict(device=device, half=half, pre_crop=pre_crop)
    if spec == "random-clip" or spec.startswith("random-clip:"):
        size, seed = _parse_random_clip(spec)
        return RandomCLIPEncoder(size, seed, **kwargs)
    if spec == OFFLINE_VLM or spec.startswith(OFFLINE_VLM + ":"):
        if half or pre_crop is not None:
            raise ValueError(f"{OFFLINE_VLM} runs on the fast image path it was trained on (image_preset='fast'): "
                             f"it takes neither half=True nor pre_crop (got half={half}, pre_crop={pre_crop})")
        weights = spec[len(OFFLINE_VLM) + 1:] or None
        return OfflineVLMEncoder(weights, device=device)
    if spec.lower() == "liv":
        return LIVEncoder(LIV_REPO, transform=liv_transform, **kwargs)
    if spec.lower().startswith("liv:"):
        return LIVEncoder(spec[4:], transform=liv_transform, **kwargs)
    return CLIPEncoder(spec, **kwargs)
