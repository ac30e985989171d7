"""Image presets: the fast CPU path and the reference code's pipeline, computed by hand for one frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import furl_wrappers
from furl_wrappers.encoders.clip import byte_level_clip_tokenizer
from furl_wrappers.encoders.liv import save_liv_checkpoint
from furl_wrappers.encoders.preprocessing import CLIP_MEAN, CLIP_STD
from furl_wrappers.envs import TaskInstance
from furl_wrappers.presets import IMAGE_PRESETS, get_preset
from furl_wrappers.vlm_reward import VLMReward
from tests.test_encoders import _tiny_liv


@pytest.fixture(scope="module")
def liv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LIV checkpoint (64² input) with CLIP's tokenizer saved beside it: loads fully offline."""
    path = tmp_path_factory.mktemp("liv")
    save_liv_checkpoint(_tiny_liv(), path / "model.pt")
    byte_level_clip_tokenizer().save_pretrained(path)
    return path


def test_presets() -> None:
    assert set(IMAGE_PRESETS) == {"fast", "reference"}
    fast, ref = get_preset("fast"), get_preset("reference")
    assert (fast.image_size, fast.render_quality, fast.pre_crop) == (224, "fast", None)
    assert (ref.image_size, ref.render_quality, ref.pre_crop) == (256, "full", 0.75)
    assert fast.text("Open a drawer.") == "Open a drawer." and ref.text("Open a drawer.") == "open a drawer"
    assert ref.encoder_kwargs("cpu") == {"half": False, "pre_crop": 0.75, "liv_transform": "reference"}
    with pytest.raises(ValueError, match=r"image_preset must be one of \['fast', 'reference'\]"):
        get_preset("pretty")


def test_reference_env_renders_256_full_quality() -> None:
    env = furl_wrappers.make_metaworld_env("drawer-open", image_preset="reference")
    env.reset()
    assert env.render().shape == (256, 256, 3)
    instance = furl_wrappers.envs.instance_of(env)
    assert (instance.image_size, instance.render_quality, instance.image_preset) == (256, "full", "reference")
    small = furl_wrappers.make_metaworld_env("drawer-open", image_preset="reference", image_size=64)
    assert furl_wrappers.envs.instance_of(small).image_size == 64  # explicit settings win over the preset's


def test_reference_liv_input_by_hand(liv_dir: Path) -> None:
    """256² frame → crop [32:224] → BGR → bilinear 192 → 64 (no antialiasing: exactly every third pixel, offset 1)
    → CLIP mean/std; the tiny LIV's input side is 64."""
    instance = TaskInstance("drawer-open-v3", "fixed", 0, image_size=256, render_quality="full",
                            image_preset="reference")
    reward = VLMReward.build(instance=instance, vlm=f"liv:{liv_dir}", device="cpu", goal_image=None)
    assert reward.text == "open a drawer" and reward.image_preset == "reference"
    frame = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    got = reward.encoder.preprocess(torch.from_numpy(frame))
    crop = frame[0, 32:224, 32:224].astype(np.float64)
    resized = crop[1::3, 1::3][..., ::-1]  # bilinear at scale 1/3 samples pixel 3i+1 exactly; then RGB→BGR
    expected = ((resized / 255.0 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    fast = VLMReward.build(instance=TaskInstance("drawer-open-v3", image_size=256), vlm=f"liv:{liv_dir}",
                           device="cpu", goal_image=None)
    assert fast.text == "Open a drawer." and fast.encoder.preprocess.pre_crop is None
    assert (fast.encoder.preprocess.resample, fast.encoder.preprocess.bgr) == ("bicubic", False)


def test_reference_clip_keeps_clips_preprocessing() -> None:
    env = furl_wrappers.make_metaworld_env("reach", image_preset="reference", image_size=64)
    wrapped = furl_wrappers.FuzzyVLMRewardWrapper(env, vlm="random-clip:tiny", device="cpu")
    pre = wrapped.encoder.preprocess
    assert (pre.pre_crop, pre.resample, pre.bgr) == (0.75, "bicubic", False)  # the crop only
    assert wrapped.text == "reach a goal position"
