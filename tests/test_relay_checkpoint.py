"""The RelayPolicy checkpoint format: identity checks, zip round trip, atomic writes, format version."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from furl_wrappers import relay_checkpoint as checkpoint
from furl_wrappers._safe_files import CorruptFileError
from furl_wrappers.relay_checkpoint import CheckpointMismatchError

BOX = gym.spaces.Box(-1, 1, (2,))


def _sb3_zip(handle) -> None:
    with zipfile.ZipFile(handle, "w") as archive:
        archive.writestr("data", "{}")


def test_identity_and_mismatch() -> None:
    ident = checkpoint.identity(BOX, BOX, task="reach-v3")
    assert ident == {"observation_space": repr(BOX), "action_space": repr(BOX), "task": "reach-v3"}
    checkpoint.check_identity(ident, ident)
    checkpoint.check_identity(ident, {"task": "reach-v3"})  # only keys both know are compared
    other = gym.spaces.Box(-1, 1, (3,))
    with pytest.raises(CheckpointMismatchError, match="observation_space"):
        checkpoint.check_identity(ident, checkpoint.identity(other, BOX, task="reach-v3"))


def test_round_trip_path_and_handle(tmp_path: Path) -> None:
    state = {"relay": {"active": True}}
    tensors = {"w": torch.arange(3.0)}
    written = checkpoint.write_checkpoint(tmp_path / "ckpt", _sb3_zip, None, state, tensors)
    assert written == tmp_path / "ckpt.zip" and [p.name for p in tmp_path.iterdir()] == ["ckpt.zip"]
    got_state, got_tensors, sac = checkpoint.read_checkpoint(tmp_path / "ckpt")
    assert got_state == {"format": checkpoint.FORMAT, **state} and sac is None
    torch.testing.assert_close(got_tensors["w"], tensors["w"])
    assert checkpoint.read_checkpoint(written.read_bytes(), "mine.zip")[0] == got_state
    assert "data" in zipfile.ZipFile(written).namelist()  # SB3's own entries stay
    handle = io.BytesIO()
    assert checkpoint.write_checkpoint(handle, _sb3_zip, None, state, tensors) is None
    with zipfile.ZipFile(handle) as a, zipfile.ZipFile(written) as b:  # same entries (timestamps may differ)
        assert {n: a.read(n) for n in a.namelist()} == {n: b.read(n) for n in b.namelist()}


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    checkpoint.write_checkpoint(tmp_path / "c.zip", _sb3_zip, None, {"n": 1}, {})
    before = (tmp_path / "c.zip").read_bytes()

    def broken(handle) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoint.write_checkpoint(tmp_path / "c.zip", broken, None, {"n": 2}, {})
    assert (tmp_path / "c.zip").read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.zip"]


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "sb3.zip", "w") as archive:
        archive.writestr("data", "{}")
    with pytest.raises(ValueError, match="sb3.zip' is not a RelayPolicy checkpoint"):
        checkpoint.read_checkpoint(tmp_path / "sb3.zip")
    with pytest.raises(ValueError, match="'handle.zip' is not a RelayPolicy checkpoint"):
        checkpoint.read_checkpoint((tmp_path / "sb3.zip").read_bytes(), "handle.zip")


def test_an_older_format_is_refused_in_one_line(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as archive:
        archive.writestr("data", "{}")
        archive.writestr("furl_state.json", '{"format": 1, "relay": {}}')
        archive.writestr("relay_sac.zip", b"")
    with pytest.raises(CorruptFileError, match=r"old.zip' is a relay checkpoint of format 1; this version reads "
                                               r"format 2 only"):
        checkpoint.read_checkpoint(tmp_path / "old.zip")


def test_nan_reward_heads_are_refused_in_one_line(tmp_path: Path) -> None:
    """Reward heads (or their optimiser state) holding NaN or inf are never trained on: the read names the tensor."""
    tensors = {"reward_model": {"image_head.weight": torch.tensor([[1.0, float("nan")]])}}
    checkpoint.write_checkpoint(tmp_path / "c.zip", _sb3_zip, None, {"n": 1}, tensors)
    with pytest.raises(CorruptFileError, match=r"c\.zip': furl_tensors\.pt holds NaN or inf in "
                       r"'reward_model\.image_head\.weight': a diverged or damaged checkpoint") as info:
        checkpoint.read_checkpoint(tmp_path / "c.zip")
    assert "\n" not in str(info.value)
