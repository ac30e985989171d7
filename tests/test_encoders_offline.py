"""furl-mw-vlm: shipped weights load offline, MiniLM text side matches sentence-transformers, bad files are clear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import furl_wrappers
from furl_wrappers.encoders import CorruptCheckpointError, OfflineVLMEncoder, make_encoder
from furl_wrappers.encoders.minilm import MiniLMTextEncoder
from furl_wrappers.encoders.offline import (
    SHIPPED_WEIGHTS,
    FrameEncoderNet,
    TextAdapter,
    load_checkpoint,
    load_offline_vlm,
    normalize_frames,
    resize_frames,
    save_checkpoint,
)
from furl_wrappers.envs import make_metaworld_env
from furl_wrappers.wrappers import FuzzyVLMRewardWrapper


@pytest.fixture(scope="module")
def text_encoder() -> MiniLMTextEncoder:
    return MiniLMTextEncoder(device="cpu")


@pytest.fixture(scope="module")
def shipped(text_encoder) -> OfflineVLMEncoder:
    return OfflineVLMEncoder(device="cpu", text_encoder=text_encoder)


def test_minilm_matches_sentence_transformers(text_encoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    texts = ["Open a drawer.", "Push and close a window.", "Insert a peg sideways."]
    ours = text_encoder.encode(texts)
    ref = st.SentenceTransformer(str(text_encoder.path), device="cpu").encode(texts, convert_to_tensor=True)
    assert ours.shape == (3, 384)
    torch.testing.assert_close(ours, ref.float(), atol=1e-5, rtol=1e-4)
    # semantically close instructions are closer than unrelated ones
    e = text_encoder.encode(["Open a drawer.", "Pull the drawer open.", "Dunk the basketball into the basket."])
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2


def test_shipped_weights_load_offline_and_are_deterministic(shipped, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert SHIPPED_WEIGHTS.is_file() and SHIPPED_WEIGHTS.stat().st_size < 20e6
    assert shipped.pretrained is True and shipped.dim == 384 and shipped.name == "furl-mw-vlm"
    # trained only on tasks outside MT10
    assert not set(shipped.meta["tasks"]) & set(furl_wrappers.MT10_TASKS) and len(shipped.meta["tasks"]) == 40
    # version 3: trained on the training tasks' instructions and paraphrases only, no text adapter (format 2 file)
    assert shipped.text_adapter is None and shipped.meta["instructions"] == 200 and not shipped.meta["val_tasks"]
    assert shipped.meta["data"]["expert_episodes"] == 20 and shipped.meta["data"]["failed_episodes"] == 6
    torch.testing.assert_close(shipped.encode_text(["Open a drawer."]), shipped.text_encoder.encode(["Open a drawer."]))
    frames = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    a, b = shipped.encode_images(frames), shipped.encode_images(frames)
    assert a.shape == (3, 384) and torch.equal(a, b)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    # the pretraining data path: frames resized once, then the network gives the same embedding
    small = resize_frames(torch.as_tensor(frames), shipped.input_size)
    with torch.inference_mode():
        direct = shipped.net(normalize_frames(small))
    torch.testing.assert_close(direct, a)
    assert shipped.encode_text(["Open a drawer."]).shape == (1, 384)


def test_make_encoder_names(shipped, tmp_path: Path) -> None:
    enc = make_encoder("furl-mw-vlm", device="cpu")
    assert isinstance(enc, OfflineVLMEncoder) and enc.weights == SHIPPED_WEIGHTS
    path = save_checkpoint(tmp_path / "mine.pt", FrameEncoderNet(input_size=32), {"note": "test"})
    mine = make_encoder(f"furl-mw-vlm:{path}", device="cpu")
    assert mine.input_size == 32 and mine.meta == {"note": "test"} and str(path) in mine.name
    assert mine.encode_images(np.zeros((1, 100, 80, 3), np.uint8)).shape == (1, 384)
    with pytest.raises(ValueError, match="half"):
        make_encoder("furl-mw-vlm", device="cpu", half=True)


def test_missing_and_corrupt_weights_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CorruptCheckpointError, match="not found.*pretrain-vlm"):
        make_encoder(f"furl-mw-vlm:{tmp_path / 'nope.pt'}", device="cpu")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(CorruptCheckpointError, match="cannot read"):
        load_checkpoint(garbage)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CorruptCheckpointError, match="not a furl-mw-vlm checkpoint.*furl-mw-vlm/1, furl-mw-vlm/2"):
        load_checkpoint(tmp_path / "other.pt")
    path = save_checkpoint(tmp_path / "ok.pt", FrameEncoderNet(input_size=32))
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop("mlp.3.bias")
    torch.save(payload, tmp_path / "truncated.pt")
    with pytest.raises(CorruptCheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "truncated.pt")
    with pytest.raises(ValueError, match="multiple of 16"):
        FrameEncoderNet(input_size=50)
    # a text adapter whose weights do not fit its config
    path = save_checkpoint(tmp_path / "ad.pt", FrameEncoderNet(input_size=32), text_adapter=TextAdapter(384, 8))
    payload = torch.load(path, weights_only=True)
    payload["text_adapter"]["config"]["hidden"] = 16
    torch.save(payload, tmp_path / "bad-adapter.pt")
    with pytest.raises(CorruptCheckpointError, match="do not match"):
        load_offline_vlm(tmp_path / "bad-adapter.pt")


def test_text_adapter_round_trip_and_version_1_files(text_encoder, tmp_path: Path) -> None:
    adapter = TextAdapter(384, 8)
    raw = text_encoder.encode(["Open a drawer.", "Dunk the basketball into the basket."])
    torch.testing.assert_close(adapter(raw), raw)  # zero-initialised output layer: the identity at start
    with torch.no_grad():
        adapter.mlp[2].weight.normal_(0, 0.1)
    net = FrameEncoderNet(input_size=32)
    path = save_checkpoint(tmp_path / "v2.pt", net, {"note": "v2"}, text_adapter=adapter)
    enc = OfflineVLMEncoder(path, device="cpu", text_encoder=text_encoder)
    torch.testing.assert_close(enc.encode_text(["Open a drawer."]), adapter(raw[:1]))
    assert not torch.allclose(enc.encode_text(["Open a drawer."]), raw[:1])
    # a version-1 file (no adapter) still loads and uses the sentence encoder as it is
    payload = torch.load(path, weights_only=True)
    payload["format"] = "furl-mw-vlm/1"
    del payload["text_adapter"]
    torch.save(payload, tmp_path / "v1.pt")
    old = OfflineVLMEncoder(tmp_path / "v1.pt", device="cpu", text_encoder=text_encoder)
    assert old.text_adapter is None
    torch.testing.assert_close(old.encode_text(["Open a drawer."]), raw[:1])
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    torch.testing.assert_close(old.encode_images(frames), enc.encode_images(frames))


def test_offline_vlm_inside_the_reward_wrapper_on_an_mt10_task(shipped) -> None:
    env = FuzzyVLMRewardWrapper(make_metaworld_env("drawer-open", image_size=96), vlm=shipped, rho=0.05,
                                mode="raw")
    assert env.text == "Open a drawer."
    text = shipped.encode_text([env.text])[0]
    env.reset(seed=0)
    for _ in range(3):
        _, reward, _, _, info = env.step(env.action_space.sample())
        expected = float(shipped.encode_images(env.render()[None])[0] @ text)  # both unit norm: the cosine
        assert info["vlm_reward"] == pytest.approx(expected, abs=1e-5) and -1.0 <= expected <= 1.0
        assert reward == pytest.approx(info["task_reward"] + 0.05 * info["vlm_reward"], abs=1e-5)
    env.close()

