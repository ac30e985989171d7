"""LIV (Ma et al., 2023), the paper's main VLM, loaded without the ``liv-robotics`` package.

LIV is OpenAI's CLIP-RN50 fine-tuned on robot video. Its published checkpoint (``model.pt`` in the hub repo
``jasonyma/LIV``) is ``{"liv": state_dict}`` of a ``DataParallel``-wrapped module holding the CLIP model as
``.model``; so every key is ``"module.model." + <OpenAI CLIP key>``. This module re-implements that CLIP
architecture (modified ResNet with attention pooling, causal text transformer) with the same parameter names, so
the state dict loads strictly after stripping the prefix; the architecture is inferred from the tensor shapes.
``liv-robotics`` is avoided because it pins pillow 9.5 and hydra 1.1.

Text goes through CLIP's BPE tokenizer (the one of ``openai/clip-vit-base-patch32``, identical to OpenAI's
``clip.tokenize``), padded to 77 tokens. Images: by default CLIP's preprocessing (bicubic resize of the shortest
side, centre crop 224, CLIP's mean/std); ``transform="reference"`` gives what the reference code feeds LIV: BGR
frames through LIV's own transform (bilinear resize without antialiasing, centre crop, CLIP's mean/std).

Example:
    >>> enc = LIVEncoder()  # downloads jasonyma/LIV (~400 MB)  # doctest: +SKIP
    >>> enc.encode_images(frames).shape  # (N, 1024)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from furl_wrappers._atomic import atomic_write
from furl_wrappers.encoders.base import VLMEncoder, check_half
from furl_wrappers.encoders.clip import DEFAULT_CLIP, ModelUnavailableError, resolve_checkpoint
from furl_wrappers.encoders.preprocessing import ImagePreprocessor

__all__ = ["LIV_REPO", "CLIPResNet", "LIVEncoder", "load_liv_state_dict", "save_liv_checkpoint"]

LIV_REPO = "jasonyma/LIV"
_PREFIXES = ("module.", "model.")


class _Bottleneck(nn.Module):
    """ResNet bottleneck whose stride is an average pool (anti-aliased), as in CLIP's modified ResNet."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * 4
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(
                OrderedDict([("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                             ("1", nn.BatchNorm2d(out))])
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.avgpool(F.relu(self.bn2(self.conv2(y))))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class _AttentionPool(nn.Module):
    """Attention pooling: the mean token attends over all spatial tokens (multi-head, separate q/k/v)."""

    def __init__(self, grid: int, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, dim) / dim**0.5)
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, out_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).permute(2, 0, 1)  # (HW, N, C)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0) + self.positional_embedding[:, None].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0, out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias, use_separate_proj_weight=True, training=False, need_weights=False,
        )
        return out[0]


class _ModifiedResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...], out_dim: int, heads: int, resolution: int, width: int) -> None:
        super().__init__()
        self.input_resolution = resolution
        half = width // 2
        self.conv1, self.bn1 = nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(half)
        self.conv2, self.bn2 = nn.Conv2d(half, half, 3, padding=1, bias=False), nn.BatchNorm2d(half)
        self.conv3, self.bn3 = nn.Conv2d(half, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        inplanes, stages = width, []
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            stage = [_Bottleneck(inplanes, planes, stride=1 if i == 0 else 2)]
            inplanes = planes * 4
            stage += [_Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = _AttentionPool(resolution // 32, width * 32, heads, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.conv1.weight.dtype)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.avgpool(x)))))
        return self.attnpool(x)


class _LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (for half-precision models)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1, self.ln_2 = _LayerNorm(width), _LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", _QuickGELU()),
                                              ("c_proj", nn.Linear(width * 4, width))]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask.to(x.dtype))[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([_ResidualBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class CLIPResNet(nn.Module):
    """OpenAI CLIP with a modified-ResNet image tower; parameter names match OpenAI's (and LIV's) checkpoints.

    Args:
        embed_dim: joint embedding size (1024 for RN50).
        vision_layers: bottleneck blocks per stage ((3, 4, 6, 3) for RN50).
        vision_width: stem width (64 for RN50).
        image_resolution: input side (224).
        context_length, vocab_size, transformer_width, transformer_heads, transformer_layers: text tower
            (77, 49408, 512, 8, 12 for RN50).
    """

    def __init__(self, embed_dim: int = 1024, vision_layers: tuple[int, ...] = (3, 4, 6, 3), vision_width: int = 64,
                 image_resolution: int = 224, context_length: int = 77, vocab_size: int = 49408,
                 transformer_width: int = 512, transformer_heads: int = 8, transformer_layers: int = 12) -> None:
        super().__init__()
        self.arch: dict[str, Any]
        self.arch = dict(embed_dim=embed_dim, vision_layers=tuple(vision_layers), vision_width=vision_width,
                         image_resolution=image_resolution, context_length=context_length, vocab_size=vocab_size,
                         transformer_width=transformer_width, transformer_heads=transformer_heads,
                         transformer_layers=transformer_layers)
        self.visual = _ModifiedResNet(tuple(vision_layers), embed_dim, vision_width * 32 // 64, image_resolution,
                                      vision_width)
        self.transformer = _Transformer(transformer_width, transformer_layers, transformer_heads)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, transformer_width) * 0.01)
        self.ln_final = _LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.randn(transformer_width, embed_dim) * transformer_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))
        self.register_buffer("causal_mask", torch.full((context_length, context_length), float("-inf")).triu(1),
                             persistent=False)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> CLIPResNet:
        """Infer the architecture from a (prefix-free) state dict, build the model and load it strictly."""
        if "visual.layer1.0.conv1.weight" not in state_dict:
            raise ValueError("not a CLIP-ResNet (LIV) state dict: 'visual.layer1.0.conv1.weight' is missing")
        layers = tuple(
            len({k.split(".")[2] for k in state_dict if k.startswith(f"visual.layer{i}.")}) for i in (1, 2, 3, 4)
        )
        pos = state_dict["visual.attnpool.positional_embedding"].shape[0]
        width = state_dict["transformer.resblocks.0.ln_1.weight"].shape[0]
        model = cls(
            embed_dim=state_dict["text_projection"].shape[1],
            vision_layers=layers,
            vision_width=state_dict["visual.layer1.0.conv1.weight"].shape[0],
            image_resolution=round((pos - 1) ** 0.5) * 32,
            context_length=state_dict["positional_embedding"].shape[0],
            vocab_size=state_dict["token_embedding.weight"].shape[0],
            transformer_width=width,
            transformer_heads=max(1, width // 64),  # OpenAI CLIP: 64-dim attention heads
            transformer_layers=len({k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")}),
        )
        model.load_state_dict(state_dict, strict=True)
        return model

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``(N, 3, R, R)`` → ``(N, embed_dim)`` (not L2-normalised, like LIV's)."""
        return self.visual(pixels)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``(N, context_length)`` (end-of-text is the largest id of each row) → ``(N, embed_dim)``."""
        x = self.token_embedding(tokens) + self.positional_embedding.to(self.token_embedding.weight.dtype)
        x = self.transformer(x.permute(1, 0, 2), self.causal_mask).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ self.text_projection


def load_liv_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a LIV ``model.pt`` (tensors only, ``weights_only=True``) and strip its ``module.model.`` prefix."""
    try:
        raw = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt file, pickled code, ...
        raise ValueError(f"{os.fspath(path)!r} is not a readable LIV checkpoint (tensors only): {exc}") from exc
    state = raw.get("liv", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{os.fspath(path)!r}: expected a dict with key 'liv' holding a state dict")
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def save_liv_checkpoint(model: CLIPResNet, path: str | os.PathLike) -> None:
    """Write ``model`` in the published LIV format (``{"liv": {"module.model.<key>": tensor}}``), atomically."""
    state = {"liv": {f"module.model.{k}": v for k, v in model.state_dict().items()}}
    atomic_write(path, lambda handle: torch.save(state, handle))


class LIVEncoder(VLMEncoder):
    """The LIV encoder (frozen).

    Args:
        checkpoint: hub repo id (default ``"jasonyma/LIV"``), a ``model.pt`` file, or a directory holding one.
        tokenizer: CLIP BPE tokenizer: hub id / directory or a tokenizer object. Default: the tokenizer saved beside a
            local checkpoint (a directory holding ``model.pt`` and ``tokenizer_config.json``: fully offline), else
            ``"openai/clip-vit-base-patch32"``'s from the hub.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        half: float16 (CUDA only: on another device a ValueError says so).
        pre_crop: centre-crop fraction before preprocessing (0.75 = the reference 256 → 192 crop).
        transform: ``"clip"`` (CLIPImageProcessor's bicubic resize) or ``"reference"`` (the reference code: BGR
            frames, LIV's bilinear resize without antialiasing).
        connect_timeout: seconds to wait for the hub before failing.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike = LIV_REPO,
        *,
        tokenizer: Any = None,
        device: str | torch.device = "auto",
        half: bool = False,
        pre_crop: float | None = None,
        transform: str = "clip",
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(device)
        if transform not in ("clip", "reference"):
            raise ValueError(f"transform must be 'clip' or 'reference', got {transform!r}")
        path = self._checkpoint_file(checkpoint, connect_timeout)
        model = CLIPResNet.from_state_dict(load_liv_state_dict(path))
        self.half = check_half(half, self.device)
        dtype = torch.float16 if self.half else torch.float32
        self.model = model.to(self.device, dtype=dtype).eval().requires_grad_(False)
        if tokenizer is None:
            beside = Path(path).parent
            tokenizer = str(beside) if (beside / "tokenizer_config.json").is_file() else DEFAULT_CLIP
        if isinstance(tokenizer, (str, os.PathLike)):
            from transformers import AutoTokenizer

            try:
                tokenizer = resolve_checkpoint(tokenizer, AutoTokenizer.from_pretrained, connect_timeout)
            except ModelUnavailableError as exc:
                raise ModelUnavailableError(
                    f"LIV's text side needs CLIP's BPE tokenizer, which could not be loaded from "
                    f"{os.fspath(tokenizer)!r} ({exc}). Offline: on a machine with hub access run python -c \"from "
                    f"transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{DEFAULT_CLIP}')"
                    f".save_pretrained('DIR')\", put LIV's model.pt into DIR too, and pass vlm='liv:DIR' (or "
                    "LIVEncoder('DIR/model.pt', tokenizer='DIR'))"
                ) from exc
        self.tokenizer = tokenizer
        self.name = f"liv:{os.fspath(checkpoint)}"
        self.pretrained = True
        self.dim = int(model.arch["embed_dim"])
        res = int(model.arch["image_resolution"])
        reference = transform == "reference"
        self.preprocess = ImagePreprocessor(size=res, crop_size=res, pre_crop=pre_crop, dtype=dtype,
                                            resample="bilinear" if reference else "bicubic", bgr=reference)

    @staticmethod
    def _checkpoint_file(checkpoint: str | os.PathLike, connect_timeout: float) -> str:
        path = Path(os.fspath(checkpoint)).expanduser()
        if path.is_file():
            return str(path)
        if path.is_dir():
            if not (path / "model.pt").is_file():
                raise ModelUnavailableError(f"{str(path)!r} holds no model.pt (LIV's checkpoint file)")
            return str(path / "model.pt")
        from huggingface_hub import hf_hub_download

        def download(repo: str, local_files_only: bool = False) -> str:
            try:
                return hf_hub_download(repo, "model.pt", local_files_only=local_files_only)
            except Exception as exc:  # noqa: BLE001 - hub errors come in many types; report them uniformly
                raise OSError(str(exc)) from exc

        return resolve_checkpoint(os.fspath(checkpoint), download, connect_timeout)

    def _encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(self.preprocess(frames))

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        length = int(self.model.arch["context_length"])
        ids = self.tokenizer(texts, truncation=True, max_length=length)["input_ids"]
        tokens = torch.zeros(len(ids), length, dtype=torch.long)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = torch.tensor(seq)
        return self.model.encode_text(tokens.to(self.device))
