"""Image presets: how frames are rendered and handed to the VLM, in one place.

- ``"fast"`` (default): 224² frames on the fast render path (no shadows, reflections or multisampling), the
  encoder's own preprocessing, the paper's Table-4 instructions ("Open a drawer."). What the demo and the tests
  use; several times cheaper to render on a CPU.
- ``"reference"``: the reference code's pipeline, for numbers to set beside the paper's tables — 256² frames at
  Meta-World's default scene quality, upright (the reference flips MuJoCo's frame; ours are upright already), the
  centre crop ``[32:224, 32:224]`` (192²); for LIV, RGB→BGR (the reference converts with OpenCV) and LIV's own
  transform (bilinear resize to 224 without antialiasing, centre crop, CLIP mean/std); for CLIP the same crop with
  CLIP's own preprocessing; the reference code's instruction strings (lower case, no final period: "open a
  drawer"); float16 encoders on CUDA.

The env owns the choice (``make_metaworld_env(..., image_preset="reference")``, recorded in its
:class:`~furl_wrappers.envs.TaskInstance`); the VLM reward built for that env follows it.

Example:
    >>> preset = get_preset("reference")
    >>> preset.image_size, preset.render_quality, preset.pre_crop, preset.text("Open a drawer.")
    (256, 'full', 0.75, 'open a drawer')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["IMAGE_PRESETS", "ImagePreset", "get_preset"]


@dataclass(frozen=True)
class ImagePreset:
    """One way of rendering frames and feeding them to the VLM (see the module docstring).

    Attributes:
        name: ``"fast"`` or ``"reference"``.
        image_size: rendered frame side.
        render_quality: ``"fast"`` or ``"full"`` (Meta-World's scene).
        pre_crop: centre-crop fraction before the encoder's preprocessing (``0.75``: 256 → 192), or ``None``.
        liv_reference_transform: LIV gets BGR frames and its bilinear, non-antialiased transform.
        lowercase_text: instructions lower case without the final period (the reference code's strings).
        half_on_cuda: float16 encoders when they run on CUDA.
    """

    name: str
    image_size: int
    render_quality: str
    pre_crop: float | None
    liv_reference_transform: bool
    lowercase_text: bool
    half_on_cuda: bool

    def text(self, instruction: str) -> str:
        """The instruction as this preset spells it."""
        return instruction.rstrip(".").lower() if self.lowercase_text else instruction

    def encoder_kwargs(self, device: Any = "auto") -> dict[str, Any]:
        """:func:`~furl_wrappers.encoders.make_encoder` arguments for an encoder on ``device``."""
        from stable_baselines3.common.utils import get_device

        return {"half": self.half_on_cuda and get_device(device).type == "cuda", "pre_crop": self.pre_crop,
                "liv_transform": "reference" if self.liv_reference_transform else "clip"}


IMAGE_PRESETS: dict[str, ImagePreset] = {
    "fast": ImagePreset("fast", 224, "fast", None, False, False, False),
    "reference": ImagePreset("reference", 256, "full", 0.75, True, True, True),
}


def get_preset(name: str) -> ImagePreset:
    """The preset called ``name``, or a ``ValueError`` listing them."""
    if name not in IMAGE_PRESETS:
        raise ValueError(f"image_preset must be one of {list(IMAGE_PRESETS)}, got {name!r}")
    return IMAGE_PRESETS[name]
