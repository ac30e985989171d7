"""furl_wrappers.runs.buffer_file: replay buffers as .npz + JSON, exact round trips, only the rows in use, no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from furl_wrappers.relay_checkpoint import CheckpointMismatchError
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.runs.buffer_file import load_buffer, save_buffer
from furl_wrappers.serialization import (
    CorruptFileError,
)
from furl_wrappers.vlm_buffer import VLMReplayBuffer
from furl_wrappers.vlm_reward import VLMReward

OBS, ACT, D = spaces.Box(-1, 1, (3,), np.float32), spaces.Box(-1, 1, (2,), np.float32), 8


class _Marker:
    """Unpickling it creates ``path`` (what a hostile file would do, harmlessly)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))


def _vlm_buffer(**kwargs) -> VLMReplayBuffer:
    reward = VLMReward(None, RewardModel(torch.ones(D), mode="learned", hidden_dim=16, output_dim=4, device="cpu",
                                         seed=0), text="open the drawer", rho=0.5, goal_embedding=np.ones(D))
    defaults = dict(device="cpu", n_envs=2, vlm_reward=reward, seed=3, alignment_buffer_size=50, lag=2)
    return VLMReplayBuffer(40, OBS, ACT, **{**defaults, **kwargs})


def _fill(buffer: ReplayBuffer, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = buffer.n_envs
    for t in range(steps):
        success = [t % 6 in (3, 4) and t % 12 < 6 and env == 0 for env in range(n)]  # env 0: won, lost, won, ...
        done = np.array([t % 6 == 5 and env == 0 for env in range(n)], np.float32)  # env 1 never finishes
        infos = [{"vlm_embedding": rng.normal(size=D).astype(np.float32), "is_success": s,
                  "task_reward": float(s) - 1.0} for s in success]
        buffer.add(rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), rng.uniform(-1, 1, (n, 2)), rng.normal(size=n),
                   done, infos)


def _draw(buffer: VLMReplayBuffer) -> list:
    np.random.seed(7)
    batch = buffer.sample(16)
    return [*batch, *buffer.sample_goal_frames(8), *buffer.alignment.sample_triples(4)]


def test_vlm_buffer_round_trip_is_exact(tmp_path: Path) -> None:
    buffer = _vlm_buffer()
    _fill(buffer, 27)  # wraps (20 slots per env); env 1's episode is unfinished
    _draw(buffer)  # advance every generator and the batch counter
    assert buffer.full and buffer.alignment.positive_count > 0 and len(buffer._episodes[1]) == 27
    path = save_buffer(buffer, tmp_path / "buffer", step=1234)
    assert path == tmp_path / "buffer.npz"
    other = _vlm_buffer()
    assert load_buffer(tmp_path / "buffer", other) == 1234
    for key, value in vars(buffer).items():
        if isinstance(value, np.ndarray):
            assert value.dtype == getattr(other, key).dtype and np.array_equal(value, getattr(other, key), True), key
    assert (other.pos, other.full, other.batches_sampled) == (buffer.pos, buffer.full, buffer.batches_sampled)
    a, b = buffer.alignment.state_dict(), other.alignment.state_dict()
    for key in a:
        assert np.array_equal(a[key], b[key], True) if isinstance(a[key], np.ndarray) else a[key] == b[key], key
    assert [len(e) for e in other._episodes] == [len(e) for e in buffer._episodes]
    for mine, theirs in zip(sum(buffer._episodes, []), sum(other._episodes, [])):
        assert np.array_equal(mine[0], theirs[0]) and mine[1:] == theirs[1:] and type(theirs[1]) is bool
    for x, y in zip(_draw(buffer), _draw(other)):
        x, y = (x.numpy(), y.numpy()) if isinstance(x, torch.Tensor) else (x, y)
        np.testing.assert_array_equal(x, y)
    _fill(buffer, 3, seed=1)
    _fill(other, 3, seed=1)  # the unfinished episode ends the same way in both
    assert buffer.alignment.state_dict()["positive_count"] == other.alignment.state_dict()["positive_count"]


def test_plain_buffer_round_trip_and_mismatches(tmp_path: Path) -> None:
    buffer = ReplayBuffer(30, OBS, ACT, device="cpu")
    buffer.add(np.ones((1, 3)), np.ones((1, 3)), np.ones((1, 2)), np.ones(1), np.zeros(1), [{}])
    save_buffer(buffer, tmp_path / "plain.npz", step=1)
    other = ReplayBuffer(30, OBS, ACT, device="cpu")
    assert load_buffer(tmp_path / "plain.npz", other) == 1 and other.pos == 1
    np.testing.assert_array_equal(other.observations, buffer.observations)
    with pytest.raises(CheckpointMismatchError, match=r"plain\.npz.*buffer_size"):
        load_buffer(tmp_path / "plain.npz", ReplayBuffer(31, OBS, ACT, device="cpu"))
    with pytest.raises(CheckpointMismatchError, match=r"plain\.npz.*class"):
        load_buffer(tmp_path / "plain.npz", _vlm_buffer(n_envs=1))
    with pytest.raises(CheckpointMismatchError, match=r"plain\.npz.*observations'.*\(1, 4\)"):
        load_buffer(tmp_path / "plain.npz", ReplayBuffer(30, spaces.Box(-1, 1, (4,)), ACT, device="cpu"))
    vlm = _vlm_buffer()
    _fill(vlm, 3)
    save_buffer(vlm, tmp_path / "vlm.npz", step=3)
    with pytest.raises(CheckpointMismatchError, match=r"vlm\.npz.*embedding dtype"):
        load_buffer(tmp_path / "vlm.npz", _vlm_buffer(embedding_dtype="float32"))
    vlm.embeddings, vlm.embedding_dtype = vlm.embeddings.astype(np.float32), np.dtype(np.float32)  # as add() may
    save_buffer(vlm, tmp_path / "vlm32.npz", step=3)
    for target in (_vlm_buffer(), _vlm_buffer(embedding_dim=D)):  # float16 buffers, empty or allocated, follow
        load_buffer(tmp_path / "vlm32.npz", target)
        assert target.embedding_dtype == np.float32 and np.array_equal(target.embeddings, vlm.embeddings)


def test_cut_or_pickled_npz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = _vlm_buffer()
    _fill(buffer, 5)
    blob = save_buffer(buffer, tmp_path / "b.npz", step=5).read_bytes()
    for n, name in ((len(blob) // 2, "half"), (len(blob) - 30, "tail"), (10, "head")):
        (tmp_path / f"{name}.npz").write_bytes(blob[:n])
        with pytest.raises(CorruptFileError, match=rf"{name}\.npz' is not a complete replay buffer file"):
            load_buffer(tmp_path / f"{name}.npz", _vlm_buffer())
    marker = tmp_path / "pwned"
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Marker(marker)
    with np.load(tmp_path / "b.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(tmp_path / "evil.npz", **{**arrays, "rows/observations": hostile})
    calls = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: calls.append(k.get("allow_pickle")) or real_load(*a, **k))
    with pytest.raises(CorruptFileError, match=r"evil\.npz"):
        load_buffer(tmp_path / "evil.npz", _vlm_buffer())
    assert not marker.exists() and calls == [False]


def _npz_with(path: Path, out: Path, **extra: np.ndarray) -> Path:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(extra)
    np.savez(out, **arrays)
    return out


def test_a_planted_member_is_refused_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = _vlm_buffer()
    _fill(buffer, 10)
    path = save_buffer(buffer, tmp_path / "b", step=10)
    read = []
    original = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, key: read.append(key) or original(self, key))
    bad = _npz_with(path, tmp_path / "extra.npz", **{"rows/planted": np.zeros(1000, np.uint8)})
    with pytest.raises(CorruptFileError, match=r"extra.npz' has a member 'rows/planted' that this VLMReplayBuffer "
                                               r"does not have \(not read\)"):
        load_buffer(bad, _vlm_buffer())
    assert "rows/planted" not in read
    big = _npz_with(path, tmp_path / "big.npz", **{"rows/rewards": np.zeros((40, 2, 4096), np.float32)})
    with pytest.raises(CorruptFileError, match=r"member 'rows/rewards' unpacks to \d+ bytes, more than this "
                                               r"buffer's 80 \(not read\)"):
        load_buffer(big, _vlm_buffer())


@pytest.mark.parametrize("dim", [10**9, -1, "8", True])
def test_an_absurd_embedding_dim_is_refused_before_allocating(tmp_path: Path, dim) -> None:
    import json

    buffer = _vlm_buffer()
    _fill(buffer, 10)
    path = save_buffer(buffer, tmp_path / "b", step=10)
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes())
    meta["state"]["embedding_dim"] = dim
    bad = _npz_with(path, tmp_path / "dim.npz", meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    fresh = _vlm_buffer()
    with pytest.raises(CorruptFileError, match=rf"embedding_dim {dim!r} is not an integer in \[1, 8192\]"):
        load_buffer(bad, fresh)
    assert fresh.embedding_dim is None  # nothing allocated


def test_a_deeply_nested_meta_is_one_line(tmp_path: Path) -> None:
    buffer = _vlm_buffer()
    _fill(buffer, 4)
    path = save_buffer(buffer, tmp_path / "b", step=4)
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    bad = _npz_with(path, tmp_path / "deep.npz", meta=np.frombuffer(deep, np.uint8))
    with pytest.raises(CorruptFileError, match=r"deep.npz:meta' is not valid: JSON nested deeper than 64 levels"):
        load_buffer(bad, _vlm_buffer())


def test_an_older_format_is_refused_in_one_line(tmp_path: Path) -> None:
    import json

    buffer = _vlm_buffer()
    _fill(buffer, 4)
    path = save_buffer(buffer, tmp_path / "b", step=4)
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes())
    old = _npz_with(path, tmp_path / "old.npz", meta=np.frombuffer(json.dumps({**meta, "format": 1}).encode(),
                                                                      np.uint8))
    fresh = _vlm_buffer()
    with pytest.raises(CorruptFileError, match=r"old.npz' is a replay buffer file of format 1; this version reads "
                                               r"format 2 only"):
        load_buffer(old, fresh)
    assert fresh.embedding_dim is None and fresh.pos == 0  # nothing touched


def test_pixel_state_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    from furl_wrappers.pixel_buffer import PixelReplayBuffer

    obs = spaces.Box(0, 255, (6, 8, 8), np.uint8)
    buffer = PixelReplayBuffer(20, obs, ACT, device="cpu")
    frames = np.random.default_rng(0).integers(0, 255, (1, 6, 8, 8), dtype=np.uint8)
    buffer.add(frames, frames, np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    path = save_buffer(buffer, tmp_path / "p", step=1)
    bad = _npz_with(path, tmp_path / "bad.npz", **{"state/first_keys": np.array([[500, 0]], np.int64)})
    with pytest.raises(CorruptFileError, match=r"bad.npz': the episode first frames or steps do not fit"):
        load_buffer(bad, PixelReplayBuffer(20, obs, ACT, device="cpu"))
