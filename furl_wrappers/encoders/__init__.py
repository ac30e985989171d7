"""Frozen vision-language encoders: CLIP (transformers), LIV, ``random-clip``, and your own.

:func:`make_encoder` turns a name, path or object into an encoder:

- ``"openai/clip-vit-base-patch32"`` (default) or any CLIP hub id / local directory → :class:`CLIPEncoder`;
- ``"liv"`` (hub ``jasonyma/LIV``), ``"liv:PATH"`` (a ``model.pt`` or a directory holding one) → :class:`LIVEncoder`;
- ``"random-clip"`` (ViT-B/32 size), ``"random-clip:tiny"``, ``"random-clip:b32:seed3"`` → :class:`RandomCLIPEncoder`
  (NOT pretrained);
- ``"furl-mw-vlm"`` (the offline VLM shipped with the package), ``"furl-mw-vlm:PATH"`` (your own
  ``furl pretrain-vlm`` checkpoint) → :class:`OfflineVLMEncoder`;
- any object with ``encode_images``, ``encode_text``, ``dim`` and ``device`` is used as it is.

Example:
    >>> enc = make_encoder("random-clip:tiny", device="cpu")
    >>> enc.dim, enc.pretrained
    (32, False)
"""

from __future__ import annotations

from furl_wrappers.encoders.base import ImageTextEncoder, VLMEncoder, check_frames, check_texts, describe, is_encoder
from furl_wrappers.encoders.clip import (
    DEFAULT_CLIP,
    RANDOM_CLIP_SIZES,
    CLIPEncoder,
    ModelUnavailableError,
    RandomCLIPEncoder,
)
from furl_wrappers.encoders.factory import make_encoder
from furl_wrappers.encoders.liv import LIV_REPO, LIVEncoder
from furl_wrappers.encoders.offline import OFFLINE_VLM, CorruptCheckpointError, OfflineVLMEncoder
from furl_wrappers.encoders.preprocessing import ImagePreprocessor

__all__ = [
    "DEFAULT_CLIP",
    "RANDOM_CLIP_SIZES",
    "LIV_REPO",
    "ImageTextEncoder",
    "VLMEncoder",
    "CLIPEncoder",
    "RandomCLIPEncoder",
    "LIVEncoder",
    "OFFLINE_VLM",
    "OfflineVLMEncoder",
    "CorruptCheckpointError",
    "ImagePreprocessor",
    "ModelUnavailableError",
    "make_encoder",
    "describe",
    "is_encoder",
    "check_frames",
    "check_texts",
]
