"""CLIP through transformers: any ``CLIPModel`` checkpoint by hub id or local directory, and ``random-clip``.

The image embedding is the pooled, projected output (``visual_projection(vision_model(...).pooler_output)``),
taken explicitly so transformers 4.x and 5.x give the same tensor. Preprocessing runs in torch on the encoder's
device (:class:`~furl_wrappers.encoders.preprocessing.ImagePreprocessor`). ``half=True`` runs the model in
float16 on CUDA (embeddings are returned as float32).

Offline: a local directory is loaded directly. A hub id is tried from the local Hugging Face cache first; if it
is not there and ``HF_HUB_OFFLINE`` is set, or the hub cannot be reached within ``connect_timeout`` seconds, a
:class:`ModelUnavailableError` says how to pass a local checkpoint or use ``random-clip``.

Example:
    >>> enc = RandomCLIPEncoder(size="tiny", seed=0)
    >>> enc.pretrained, enc.encode_text(["Open a drawer."]).shape
    (False, torch.Size([1, 32]))
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from furl_wrappers.encoders.base import VLMEncoder, check_half
from furl_wrappers.encoders.preprocessing import ImagePreprocessor

__all__ = [
    "DEFAULT_CLIP",
    "RANDOM_CLIP_SIZES",
    "ModelUnavailableError",
    "CLIPEncoder",
    "RandomCLIPEncoder",
    "byte_level_clip_tokenizer",
    "random_clip_model",
    "resolve_checkpoint",
]

DEFAULT_CLIP = "openai/clip-vit-base-patch32"

#: Architectures of ``random-clip``: ``b32`` is CLIP ViT-B/32; ``tiny`` is for tests and overhead benchmarks.
RANDOM_CLIP_SIZES: dict[str, dict[str, Any]] = {
    "b32": dict(
        projection_dim=512,
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=224, patch_size=32),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
    ),
    "tiny": dict(
        projection_dim=32,
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    image_size=32, patch_size=8),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    ),
}


class ModelUnavailableError(OSError):
    """A checkpoint could not be found locally nor fetched from the hub."""


#: every kind of name ``make_encoder`` accepts, for error messages
VLM_CHOICES = ("a CLIP hub id (openai/clip-vit-base-patch32), a local checkpoint directory "
               "(CLIPModel.save_pretrained), liv, liv:DIR (LIV's model.pt with CLIP's tokenizer saved beside it), "
               "furl-mw-vlm (the offline VLM shipped with the package, no hub needed), furl-mw-vlm:PATH, "
               "random-clip[:tiny] (not pretrained)")


def _offline_hint(name: str, hub: bool = True) -> str:
    copy = f" or a copy of the hub repo {name!r} made on a machine with access," if hub else ""
    return f"Valid VLMs:{copy} {VLM_CHOICES}."


def _hub_reachable(timeout: float) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_checkpoint(name_or_path: str | os.PathLike, loader, connect_timeout: float = 5.0, **kwargs):
    """Call ``loader(name_or_path, **kwargs)`` (a ``from_pretrained``), failing fast when offline.

    A directory loads directly. A hub id loads from the local cache if present; otherwise from the hub,
    unless ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set or the hub does not answer within
    ``connect_timeout`` seconds, in which case :class:`ModelUnavailableError` is raised at once.
    """
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelUnavailableError(f"{str(path)!r} is a file; a checkpoint is a directory (save_pretrained)")
        return loader(str(path), **kwargs)
    name = os.fspath(name_or_path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelUnavailableError(f"Checkpoint directory {name!r} does not exist. " + _offline_hint(name, hub=False))
    try:
        return loader(name, local_files_only=True, **kwargs)
    except OSError:
        pass
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in
                  ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if offline or not _hub_reachable(connect_timeout):
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face hub cannot be reached"
        raise ModelUnavailableError(
            f"Cannot load {name!r}: it is not in the local Hugging Face cache and {why}. " + _offline_hint(name)
        )
    try:
        return loader(name, **kwargs)
    except OSError as exc:
        raise ModelUnavailableError(f"Cannot load {name!r} from the hub: {exc}. " + _offline_hint(name)) from exc


class CLIPEncoder(VLMEncoder):
    """A frozen transformers ``CLIPModel``.

    Args:
        model: hub id (default ``"openai/clip-vit-base-patch32"``) or local checkpoint directory (with its
            tokenizer and ``preprocessor_config.json``), or an already built ``CLIPModel`` (then pass
            ``tokenizer``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        half: run in float16 (CUDA only: on another device a ValueError says so).
        pre_crop: centre-crop fraction before CLIP's own preprocessing (0.75 = the reference code's
            256 → 192 crop); ``None`` for none.
        tokenizer: tokenizer to use with a model object.
        connect_timeout: seconds to wait for the hub before failing (offline machines fail fast).

    Raises:
        ModelUnavailableError: when the checkpoint cannot be had; the message says what to do instead.

    Example:
        >>> enc = CLIPEncoder("openai/clip-vit-base-patch32")  # doctest: +SKIP
        >>> enc.encode_images(frames).shape  # (N, 512)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike | Any = DEFAULT_CLIP,
        *,
        device: str | torch.device = "auto",
        half: bool = False,
        pre_crop: float | None = None,
        tokenizer: Any = None,
        connect_timeout: float = 5.0,
        pretrained: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(device)
        from transformers import AutoTokenizer, CLIPModel

        preprocessor_config: dict = {}
        if isinstance(model, (str, os.PathLike)):
            self.source = os.fspath(model)
            clip = resolve_checkpoint(model, CLIPModel.from_pretrained, connect_timeout)
            tokenizer = resolve_checkpoint(model, AutoTokenizer.from_pretrained, connect_timeout)
            preprocessor_config = self._load_preprocessor_config(model, connect_timeout)
        else:
            if tokenizer is None:
                raise ValueError("pass tokenizer= together with a CLIPModel object")
            self.source = type(model).__name__
            clip = model
        self.name = name or f"clip:{self.source}"
        self.pretrained = pretrained
        self.half = check_half(half, self.device)
        dtype = torch.float16 if self.half else torch.float32
        self.model = clip.to(self.device, dtype=dtype).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.dim = int(self.model.config.projection_dim)
        vision_size = int(self.model.config.vision_config.image_size)
        if not preprocessor_config:
            preprocessor_config = {"size": vision_size, "crop_size": vision_size}
        self.preprocess = ImagePreprocessor.from_image_processor_config(preprocessor_config, pre_crop, dtype)
        self.max_text_length = int(self.model.config.text_config.max_position_embeddings)

    @staticmethod
    def _load_preprocessor_config(model: str | os.PathLike, connect_timeout: float) -> dict:
        from transformers import CLIPImageProcessorPil

        def load(name, **kwargs):
            return CLIPImageProcessorPil.from_pretrained(name, **kwargs).to_dict()

        try:
            return resolve_checkpoint(model, load, connect_timeout)
        except (OSError, ValueError):
            return {}  # no preprocessor_config.json: the vision config's image size and CLIP's mean/std

    def _encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = self.preprocess(frames)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return self.model.visual_projection(pooled)

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        ).to(self.device)
        text_out = self.model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        pooled = text_out.pooler_output
        return self.model.text_projection(pooled)


def byte_level_clip_tokenizer() -> Any:
    """A ``CLIPTokenizer`` over single bytes (no merges), built in memory: no download.

    Every text tokenises (one token per byte, end-of-word marked), which is all a random-weight CLIP needs.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    symbols = sorted(ByteLevel.alphabet())  # the 256 byte-level symbols
    vocab = {tok: i for i, tok in enumerate(specials + symbols + [s + "</w>" for s in symbols])}
    return CLIPTokenizer(vocab=vocab, merges=[])


def random_clip_model(size: str = "b32", seed: int = 0) -> Any:
    """A transformers ``CLIPModel`` with seeded random weights, vocabulary matching
    :func:`byte_level_clip_tokenizer`."""
    from transformers import CLIPConfig, CLIPModel

    if size not in RANDOM_CLIP_SIZES:
        raise ValueError(f"random-clip size must be one of {list(RANDOM_CLIP_SIZES)}, got {size!r}")
    arch = RANDOM_CLIP_SIZES[size]
    vocab_size = 2 + 2 * 256
    config = CLIPConfig(
        projection_dim=arch["projection_dim"],
        text_config=dict(arch["text"], vocab_size=vocab_size, max_position_embeddings=77,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(arch["vision"]),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPModel(config).eval()


class RandomCLIPEncoder(CLIPEncoder):
    """``random-clip``: a CLIP of the given size with seeded random weights, for offline runs and tests.

    It is **not pretrained**: its reward carries no language meaning, and everything that reports it says so.

    Args:
        size: ``"b32"`` (ViT-B/32 architecture, default) or ``"tiny"``.
        seed: weight seed (same seed → same embeddings).
        device, half, pre_crop: as for :class:`CLIPEncoder`.
    """

    def __init__(
        self,
        size: str = "b32",
        seed: int = 0,
        *,
        device: str | torch.device = "auto",
        half: bool = False,
        pre_crop: float | None = None,
    ) -> None:
        super().__init__(
            random_clip_model(size, seed),
            tokenizer=byte_level_clip_tokenizer(),
            device=device,
            half=half,
            pre_crop=pre_crop,
            pretrained=False,
            name=f"random-clip:{size}:seed{seed}",
        )
        self.source = f"random-clip:{size}"
