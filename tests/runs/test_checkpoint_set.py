"""CheckpointSet: written whole then swapped in; recovered after a kill; read back only as one consistent set."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import SAC

from furl_wrappers._safe_files import UnsafeFileError
from furl_wrappers.runs.checkpoint_set import CheckpointError, CheckpointSet, capture_rng, restore_rng
from tests._scripted_env import ScriptedSuccessEnv


def _model(steps: int = 8) -> SAC:
    model = SAC("MlpPolicy", ScriptedSuccessEnv(), learning_starts=4, buffer_size=50, batch_size=4, device="cpu",
                seed=0)
    model.learn(steps)
    return model


def test_write_swaps_a_whole_set_in(tmp_path: Path) -> None:
    ckpt = CheckpointSet(tmp_path / "checkpoint")
    model = _model()
    ckpt.write(model)
    assert ckpt.step() == 8 and ckpt.exists() and "wall_time_s" not in ckpt.read_meta()  # not given: not recorded
    assert sorted(p.name for p in ckpt.path.iterdir()) == ["meta.json", "model.zip", "replay_buffer.npz"]
    model.learn(4, reset_num_timesteps=False)
    ckpt.write(model, episode_starts=[{"seed": 3}], wall_time_s=12.345)
    meta = ckpt.read_meta()
    assert (meta["num_timesteps"], meta["exact"], meta["episode_starts"]) == (12, True, [{"seed": 3}])
    assert meta["wall_time_s"] == 12.35
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no staging or old set left


def test_a_failed_write_keeps_the_last_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = CheckpointSet(tmp_path / "checkpoint")
    model = _model()
    ckpt.write(model)
    before = {p.name: p.read_bytes() for p in ckpt.path.iterdir()}
    model.learn(4, reset_num_timesteps=False)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("furl_wrappers.runs.checkpoint_set.save_model", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ckpt.write(model)
    assert {p.name: p.read_bytes() for p in ckpt.path.iterdir()} == before and not ckpt.staging.exists()


def test_recover_after_a_kill_between_the_renames(tmp_path: Path) -> None:
    ckpt = CheckpointSet(tmp_path / "checkpoint")
    ckpt.write(_model())
    ckpt.path.rename(ckpt.staging)  # as if killed after moving the old set aside, before the new one moved in
    assert ckpt.exists() and ckpt.step() is None
    assert ckpt.recover() == 8 and ckpt.step() == 8 and not ckpt.staging.exists()
    assert CheckpointSet(tmp_path / "none").recover() is None


def test_load_restores_the_rng_and_refuses_mixed_sets(tmp_path: Path) -> None:
    ckpt = CheckpointSet(tmp_path / "checkpoint")
    model = _model()
    ckpt.write(model)
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), model.action_space.sample().tolist())
    loaded = ckpt.load(SAC, None, device="cpu")  # SB3's load re-seeds every generator: the set puts them back
    assert (random.random(), np.random.rand(), torch.rand(1).item(), loaded.action_space.sample().tolist()) == expected
    meta = json.loads(ckpt.meta.read_text())
    ckpt.meta.write_text(json.dumps({**meta, "num_timesteps": 12}))  # as if the buffer were from another step
    with pytest.raises(CheckpointError, match="inconsistent: meta.json at step 12, model at 8, replay buffer at 8"):
        ckpt.load(SAC, None, device="cpu")
    ckpt.meta.unlink()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        ckpt.load(SAC, None, device="cpu")


def test_rng_state_round_trips_through_json() -> None:
    class Holder:
        action_space = ScriptedSuccessEnv().action_space

    holder = Holder()
    holder.action_space.seed(5)
    state = json.loads(json.dumps(capture_rng(holder)))
    first = (random.random(), np.random.rand(), torch.rand(1).item(), holder.action_space.sample().tolist())
    restore_rng(holder, state)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), holder.action_space.sample().tolist()) == first


def test_a_damaged_set_is_kept_and_refused_not_dropped(tmp_path: Path) -> None:
    ckpt = CheckpointSet(tmp_path / "checkpoint")
    ckpt.write(_model())
    ckpt.meta.write_text('{"num_timest')  # damaged on disk: the run must not be started over silently
    assert ckpt.exists() and ckpt.step() is None
    assert ckpt.recover() is None and ckpt.model.is_file() and ckpt.buffer.is_file()
    with pytest.raises(CheckpointError, match=r"\(meta.json is missing or unreadable\): restore it, or delete"):
        ckpt.load(SAC, None, device="cpu")


@pytest.mark.parametrize("bad", [{"python": [3, [1, 2], None]}, {"numpy": ["MT19937", [1, 2, 3], 0, 0, 0.0]},
                                 {"torch": [1, 2, 3]}, {"action_space": {"bit_generator": "PCG64", "state": 5}},
                                 {"python": "not a state"}])
def test_a_malformed_rng_state_is_one_line(tmp_path: Path, bad: dict) -> None:
    ckpt = CheckpointSet(tmp_path / "checkpoint")
    ckpt.write(_model())
    meta = json.loads(ckpt.meta.read_text())
    ckpt.meta.write_text(json.dumps({**meta, "rng": {**meta["rng"], **bad}}))
    with pytest.raises(CheckpointError,
                       match=r"meta.json: the saved random generator states are malformed .*cannot be resumed") as info:
        ckpt.load(SAC, None, device="cpu")
    assert "\n" not in str(info.value)


def test_a_deeply_nested_meta_json_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    ckpt = CheckpointSet(tmp_path / "checkpoint")
    ckpt.write(_model())
    ckpt.meta.write_text('{"num_timesteps": 8, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert ckpt.exists() and ckpt.step() is None
    with pytest.raises(CheckpointError, match=r"meta.json is missing or unreadable"):
        ckpt.load(SAC, None, device="cpu")


@pytest.mark.parametrize("name", ["model.zip", "replay_buffer.npz", "meta.json"])
@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_fifo_or_symlink_in_the_set_is_refused_not_waited_on(tmp_path: Path, name: str, kind: str) -> None:
    import os
    import signal

    ckpt = CheckpointSet(tmp_path / "checkpoint")
    ckpt.write(_model())
    target = ckpt.path / name
    os.replace(target, tmp_path / name)  # the real file, now outside the set
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(tmp_path / name)
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail(f"loading waited on a {kind}"))
    signal.alarm(20)
    try:
        if name == "meta.json":
            with pytest.raises(CheckpointError, match=r"holds no complete checkpoint \(meta.json is missing"):
                ckpt.load(SAC, None, device="cpu")
        else:
            with pytest.raises(UnsafeFileError, match=rf"{name}' is a {'FIFO' if kind == 'fifo' else 'symlink'}: "
                                                     "furl reads and writes run files only as regular files"):
                ckpt.load(SAC, None, device="cpu")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert (tmp_path / name).is_file()  # the link's target untouched
