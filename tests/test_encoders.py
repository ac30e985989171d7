"""Encoders: preprocessing parity with CLIPProcessor, tiny CLIP / LIV saved and loaded by path, offline errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from furl_wrappers.encoders import (
    CLIPEncoder,
    ImagePreprocessor,
    LIVEncoder,
    ModelUnavailableError,
    RandomCLIPEncoder,
    VLMEncoder,
    describe,
    make_encoder,
)
from furl_wrappers.encoders.clip import byte_level_clip_tokenizer, random_clip_model
from furl_wrappers.encoders.liv import CLIPResNet, save_liv_checkpoint

RNG = np.random.default_rng(0)


def _frames(n: int, h: int, w: int) -> np.ndarray:
    # smooth-ish images (like renders) plus noise, so resizing is exercised realistically
    base = np.linspace(0, 255, h * w * 3).reshape(h, w, 3)
    return np.clip(base[None] + RNG.normal(0, 30, (n, h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny CLIP (random weights, byte tokenizer, processor config) saved like a hub checkpoint."""
    from transformers import CLIPImageProcessorPil

    path = tmp_path_factory.mktemp("tiny_clip")
    random_clip_model("tiny", seed=3).save_pretrained(path)
    byte_level_clip_tokenizer().save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def _rendered(size: int, n: int = 3) -> np.ndarray:
    from furl_wrappers import make_metaworld_env

    env = make_metaworld_env("drawer-open", image_size=size)
    env.reset()
    frames = []
    for _ in range(n):
        env.step(env.action_space.sample())
        frames.append(env.render())
    env.close()
    return np.stack(frames)


def _assert_parity(ours: torch.Tensor, reference: torch.Tensor) -> None:
    # Stated tolerance (normalised units; one uint8 level is ~0.015): mean |diff| < 0.003, 99.9 % of values
    # within 0.03 (2 levels), max < 0.3 (PIL resizes in 8-bit fixed point: a few edge pixels differ more).
    diff = (ours - reference).abs().flatten()
    assert diff.mean() < 0.003
    assert torch.quantile(diff[:: max(1, diff.numel() // 1_000_000)], 0.999) < 0.03
    assert diff.max() < 0.3


@pytest.mark.parametrize("size", [224, 256, 160])
def test_preprocessing_matches_clip_processor(size: int) -> None:
    from transformers import CLIPImageProcessorPil

    frames = _rendered(size)
    reference = CLIPImageProcessorPil()(list(frames), return_tensors="pt")["pixel_values"]
    ours = ImagePreprocessor()(torch.from_numpy(frames))
    assert ours.shape == reference.shape == (3, 3, 224, 224)
    _assert_parity(ours, reference)
    if size == 224:
        assert (ours - reference).abs().max() < 1e-5  # no resize: exact


def test_preprocessing_non_square_frames() -> None:
    from transformers import CLIPImageProcessorPil

    frames = _rendered(256)[:, :, 16:216]  # 256 x 200
    reference = CLIPImageProcessorPil()(list(frames), return_tensors="pt")["pixel_values"]
    ours = ImagePreprocessor()(torch.from_numpy(np.ascontiguousarray(frames)))
    _assert_parity(ours, reference)


def test_pre_crop_is_the_reference_256_to_192_crop() -> None:
    from transformers import CLIPImageProcessorPil

    frames = _rendered(256)
    cropped = frames[:, 32:224, 32:224]  # centre 192x192
    reference = CLIPImageProcessorPil()(list(cropped), return_tensors="pt")["pixel_values"]
    ours = ImagePreprocessor(pre_crop=0.75)(torch.from_numpy(frames))
    _assert_parity(ours, reference)


def test_clip_loaded_by_path_matches_the_model(tiny_clip_dir) -> None:
    enc = CLIPEncoder(tiny_clip_dir, device="cpu")
    assert enc.dim == 32 and enc.pretrained and str(tiny_clip_dir) in enc.name
    model = random_clip_model("tiny", seed=3)
    frames = _frames(4, 32, 32)
    pixels = ImagePreprocessor(size=32, crop_size=32)(torch.from_numpy(frames))
    with torch.no_grad():
        expected = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        got = enc.encode_images(frames)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    tokens = byte_level_clip_tokenizer()(["Open a drawer."], return_tensors="pt")
    with torch.no_grad():
        text = model.text_projection(model.text_model(**tokens).pooler_output)
    torch.testing.assert_close(enc.encode_text(["Open a drawer."]), text, rtol=1e-5, atol=1e-5)
    # the path goes through the same loader as hub ids: random-clip with the same seed is the same model
    torch.testing.assert_close(RandomCLIPEncoder("tiny", seed=3, device="cpu").encode_images(frames), got)
    # and make_encoder accepts the directory as a name
    assert isinstance(make_encoder(str(tiny_clip_dir), device="cpu"), CLIPEncoder)


def test_text_embedding_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = RandomCLIPEncoder("tiny", device="cpu")
    calls = []
    original = enc._encode_text
    monkeypatch.setattr(enc, "_encode_text", lambda texts: calls.append(list(texts)) or original(texts))
    a = enc.encode_text(["Open a drawer."])
    b = enc.encode_text(["Open a drawer.", "Push the puck to a goal."])
    assert calls == [["Open a drawer."], ["Push the puck to a goal."]]
    torch.testing.assert_close(a[0], b[0])


def test_random_clip_is_seeded_and_says_not_pretrained() -> None:
    frames = _frames(2, 32, 32)
    a = RandomCLIPEncoder("tiny", seed=0, device="cpu").encode_images(frames)
    b = RandomCLIPEncoder("tiny", seed=0, device="cpu").encode_images(frames)
    c = RandomCLIPEncoder("tiny", seed=1, device="cpu").encode_images(frames)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    enc = make_encoder("random-clip:tiny:seed1", device="cpu")
    assert enc.pretrained is False and "NOT a pretrained VLM" in describe(enc) and "NOT a pretrained VLM" in repr(enc)
    b32 = make_encoder("random-clip", device="cpu")
    assert b32.dim == 512 and b32.model.config.vision_config.patch_size == 32
    assert b32.model.config.vision_config.num_hidden_layers == 12


def test_embeddings_require_no_grad_and_can_feed_training() -> None:
    enc = RandomCLIPEncoder("tiny", device="cpu")
    emb = enc.encode_images(_frames(2, 32, 32))
    assert emb.dtype == torch.float32 and not emb.requires_grad and not emb.is_inference()
    head = torch.nn.Linear(32, 4)
    head(emb).sum().backward()  # usable as input of a trained layer
    assert head.weight.grad is not None


def test_unreachable_hub_id_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="random-clip") as info:
        make_encoder("openai/clip-vit-base-patch32", device="cpu")
    assert time.perf_counter() - start < 10
    assert "local checkpoint directory" in str(info.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        make_encoder("someone/some-clip", device="cpu")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        make_encoder("./no/such/dir", device="cpu")


def _tiny_liv() -> CLIPResNet:
    torch.manual_seed(0)
    model = CLIPResNet(embed_dim=16, vision_layers=(1, 1, 1, 1), vision_width=8, image_resolution=64,
                       context_length=77, vocab_size=514, transformer_width=64, transformer_heads=1,
                       transformer_layers=1)
    for module in model.modules():  # non-trivial batch-norm statistics, as in a trained checkpoint
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_liv_checkpoint_round_trip(tmp_path) -> None:
    model = _tiny_liv()
    file = tmp_path / "model.pt"
    save_liv_checkpoint(model, file)
    raw = torch.load(file, weights_only=True)
    assert set(raw) == {"liv"} and all(k.startswith("module.model.") for k in raw["liv"])
    tokenizer = byte_level_clip_tokenizer()
    for checkpoint in (file, tmp_path, f"liv:{file}"):
        enc = LIVEncoder(str(checkpoint).removeprefix("liv:"), tokenizer=tokenizer, device="cpu")
        assert enc.dim == 16 and enc.pretrained
        assert enc.model.arch == model.arch
        frames = _frames(3, 64, 64)
        pixels = ImagePreprocessor(size=64, crop_size=64)(torch.from_numpy(frames))
        with torch.no_grad():
            torch.testing.assert_close(enc.encode_images(frames), model.encode_image(pixels))
            ids = tokenizer(["Open a drawer."])["input_ids"][0]
            tokens = torch.zeros(1, 77, dtype=torch.long)
            tokens[0, : len(ids)] = torch.tensor(ids)
            torch.testing.assert_close(enc.encode_text(["Open a drawer."]), model.encode_text(tokens))


def test_liv_offline_with_the_tokenizer_beside_the_checkpoint(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_liv_checkpoint(_tiny_liv(), tmp_path / "model.pt")
    with pytest.raises(ModelUnavailableError, match=r"save_pretrained\('DIR'\).*liv:DIR"):
        make_encoder(f"liv:{tmp_path / 'model.pt'}", device="cpu")  # no tokenizer beside it, hub unreachable
    tokenizer = byte_level_clip_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    enc = make_encoder(f"liv:{tmp_path}", device="cpu")  # model.pt + tokenizer in one directory: no hub needed
    assert enc.tokenizer(["open a drawer"])["input_ids"] == tokenizer(["open a drawer"])["input_ids"]
    assert enc.encode_text(["open a drawer"]).shape == (1, 16)


def test_half_precision_is_for_cuda_only(tmp_path) -> None:
    save_liv_checkpoint(_tiny_liv(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="half=True runs the encoder in float16, which needs a CUDA device"):
        LIVEncoder(tmp_path / "model.pt", tokenizer=byte_level_clip_tokenizer(), device="cpu", half=True)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        make_encoder("random-clip:tiny", device="cpu", half=True)


def test_liv_full_size_architecture_is_rn50() -> None:
    model = CLIPResNet()
    n_params = sum(p.numel() for p in model.parameters())
    assert 101e6 < n_params < 103e6  # CLIP RN50 has ~102M parameters
    # round-trips its own state dict (architecture inferred from shapes)
    rebuilt = CLIPResNet.from_state_dict(model.state_dict())
    assert rebuilt.arch == model.arch


def test_liv_bad_checkpoints(tmp_path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable LIV checkpoint"):
        LIVEncoder(bad, tokenizer=byte_level_clip_tokenizer(), device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError, match="no model.pt"):
        LIVEncoder(empty, tokenizer=byte_level_clip_tokenizer(), device="cpu")


def test_bad_inputs_are_clear_errors() -> None:
    enc = RandomCLIPEncoder("tiny", device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_images(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        enc.encode_images(np.zeros((1, 32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        enc.encode_images(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="non-empty string"):
        enc.encode_text([""])
    with pytest.raises(ValueError, match="non-empty string"):
        enc.encode_text([3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        enc.encode_text([])
    with pytest.raises(ValueError, match="random-clip"):
        make_encoder("random-clip:huge")
    with pytest.raises(ValueError, match="encode_images"):
        make_encoder(object())
    with pytest.raises(ValueError, match="pre_crop"):
        ImagePreprocessor(pre_crop=1.5)


class _NaNEncoder(VLMEncoder):
    name, pretrained, dim = "nan", False, 4

    def _encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.full((frames.shape[0], 4), float("nan"))

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.ones(len(texts), 4)


def test_nan_embeddings_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN or inf"):
        _NaNEncoder(device="cpu").encode_images(np.zeros((2, 8, 8, 3), np.uint8))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_half_precision_close_to_float32() -> None:
    frames = _frames(4, 224, 224)
    full = RandomCLIPEncoder("b32", device="cuda").encode_images(frames)
    half = RandomCLIPEncoder("b32", device="cuda", half=True)
    assert half.model.dtype == torch.float16
    emb = half.encode_images(frames)
    assert emb.dtype == torch.float32 and emb.device.type == "cuda"
    cos = torch.nn.functional.cosine_similarity(emb, full)
    assert cos.min() > 0.99
