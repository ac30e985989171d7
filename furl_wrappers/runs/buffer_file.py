"""Replay buffers without pickle: one ``.npz`` of arrays plus JSON, read with ``np.load(allow_pickle=False)``.

:func:`save_buffer` writes an SB3 ``ReplayBuffer`` (or furl's ``VLMReplayBuffer``: embeddings, task rewards, goal
distances, the alignment store, the unfinished episodes and every RNG state) with the model step it was saved at,
only the rows in use until the buffer wraps around; :func:`load_buffer` fills the buffer a model built from the
same settings, checks that it fits, and returns that step (a checkpoint set checks it against the model's).

Example:
    >>> import tempfile
    >>> from gymnasium import spaces
    >>> from stable_baselines3.common.buffers import ReplayBuffer
    >>> box = spaces.Box(-1, 1, (3,))
    >>> buffer = ReplayBuffer(100, box, box, device="cpu")
    >>> buffer.add(np.zeros(3), np.ones(3), np.zeros(3), np.zeros(1), np.zeros(1), [{}])
    >>> path = save_buffer(buffer, tempfile.mkdtemp() + "/buffer", step=1)
    >>> other = ReplayBuffer(100, box, box, device="cpu")
    >>> load_buffer(path, other), other.pos, float(other.next_observations[0, 0, 0])
    (1, 1, 1.0)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer

from furl_wrappers._safe_files import MAX_JSON_BYTES, CorruptFileError, loads_json
from furl_wrappers.buffers import VLMReplayBuffer
from furl_wrappers.pixel_buffer import PixelReplayBuffer
from furl_wrappers.relay_checkpoint import CheckpointMismatchError
from furl_wrappers.serialization import _CUT, _FORMAT, _check_zip, _resolve, _write

__all__ = ["save_buffer", "load_buffer"]


def _buffer_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    out = {}
    for key, value in vars(buffer).items():
        if isinstance(value, np.ndarray):
            out[f"buffer/{key}"] = value
        elif (isinstance(value, dict) and value and all(isinstance(k, str) for k in value)
              and all(isinstance(v, np.ndarray) for v in value.values())):
            out.update({f"buffer/{key}/{k}": v for k, v in value.items()})  # DictReplayBuffer's observations
    return out


def _per_row(array: np.ndarray, buffer: ReplayBuffer) -> bool:
    """Whether an array holds one entry per (row, env) — ``(buffer_size, n_envs, ...)`` — rather than per env."""
    return array.shape[:2] == (buffer.buffer_size, buffer.n_envs)


def _rows(buffer: ReplayBuffer) -> int:
    """Rows in use: a buffer that has not wrapped around yet is saved up to ``pos`` only (a 1e6-row buffer
    early in a run is mostly zeros)."""
    if buffer.full or buffer.optimize_memory_usage:  # (that layout keeps the last next_obs in row pos)
        return buffer.buffer_size
    return int(buffer.pos)


def save_buffer(buffer: ReplayBuffer, path: str | os.PathLike, *, step: int) -> Path:
    """Write ``buffer`` (a ``ReplayBuffer`` or ``VLMReplayBuffer``) to one ``.npz`` (suffix added), atomically.

    Args:
        step: the model's ``num_timesteps``, returned by :func:`load_buffer` to check a checkpoint set.
    """
    rows = _rows(buffer)
    arrays: dict[str, Any] = {k: (v[:rows] if _per_row(v, buffer) else v)
              for k, v in _buffer_arrays(buffer).items()}
    meta: dict[str, Any] = {"rows": rows, "format": _FORMAT,
                            "class": f"{type(buffer).__module__}:{type(buffer).__qualname__}", "step": int(step),
                            "buffer_size": buffer.buffer_size, "n_envs": buffer.n_envs, "pos": int(buffer.pos),
                            "full": bool(buffer.full)}
    if isinstance(buffer, VLMReplayBuffer):
        vlm = meta["vlm"] = {"embedding_dim": buffer.embedding_dim, "embedding_dtype": buffer.embedding_dtype.str,
                             "batches_sampled": buffer.batches_sampled}
        if buffer.embedding_dim is not None:
            store = buffer.alignment.state_dict()
            arrays.update({f"alignment/{k}": v for k, v in store.items() if isinstance(v, np.ndarray)})
            vlm["alignment"] = {k: v for k, v in store.items() if not isinstance(v, np.ndarray)}
            vlm["frame_rng"] = buffer._frame_rng.bit_generator.state
            vlm["episode_lengths"] = [len(episode) for episode in buffer._episodes]
            frames = [f for episode in buffer._episodes for f in episode]  # (embedding, success, distance)
            arrays["episodes/embeddings"] = (np.stack([e for e, _, _ in frames]) if frames else
                                             np.zeros((0, buffer.embedding_dim), np.float32))
            arrays["episodes/success"] = np.array([s for _, s, _ in frames], dtype=bool)
            arrays["episodes/distance"] = np.array([d for _, _, d in frames], dtype=np.float64)
    if isinstance(buffer, PixelReplayBuffer):  # episodes' first frames, keyed by (row, env)
        keys = sorted(buffer.first_frames)
        arrays["pixels/first_keys"] = np.array(keys, dtype=np.int64).reshape(-1, 2)
        arrays["pixels/first_frames"] = (np.stack([buffer.first_frames[k] for k in keys]) if keys else
                                         np.zeros((0, *buffer.frames.shape[2:]), np.uint8))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    written = _write(path, ".npz", lambda handle: np.savez(handle, **arrays))
    assert written is not None  # a path, not a handle, was given
    return written


#: the largest embedding a buffer file may declare (CLIP ViT-L/14: 768, LIV: 1024)
MAX_EMBEDDING_DIM = 8192
_EXTRA_PREFIXES = ("alignment/", "episodes/", "pixels/")


def _check_fit(meta: dict[str, Any], buffer: ReplayBuffer, label: str) -> None:
    """The file is for this buffer (class, size, envs) and its embeddings are of a sane size; allocates the
    buffer's embeddings when the model has not yet (they are allocated at its first add)."""
    for key, have in (("class", f"{type(buffer).__module__}:{type(buffer).__qualname__}"),
                      ("buffer_size", buffer.buffer_size), ("n_envs", buffer.n_envs)):
        if meta.get(key) != have:
            raise CheckpointMismatchError(f"{label!r} does not fit this buffer: {key} is {meta.get(key)!r} in the "
                                          f"file, {have!r} here; load it into the model it was saved from")
    vlm = meta.get("vlm")
    if not isinstance(buffer, VLMReplayBuffer) or not isinstance(vlm, dict) or vlm.get("embedding_dim") is None:
        return
    dim = vlm["embedding_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_EMBEDDING_DIM:
        raise CorruptFileError(f"{label!r}: embedding_dim {dim!r} is not an integer in [1, {MAX_EMBEDDING_DIM}]")
    if (buffer.embedding_dtype, np.dtype(vlm["embedding_dtype"])) == (np.float16, np.float32):
        buffer.embedding_dtype = np.dtype(np.float32)  # float16 storage switched to float32 at run time
        if buffer.embedding_dim is not None:
            buffer.embeddings = buffer.embeddings.astype(np.float32)
    if buffer.embedding_dim is None:
        saved = (vlm["embedding_dtype"], vlm["alignment"]["capacity"], vlm["alignment"]["lag"])
        current = (buffer.embedding_dtype.str, buffer.alignment_buffer_size, buffer.lag)
        if saved != current:
            raise CheckpointMismatchError(f"{label!r} does not fit this buffer: (embedding dtype, "
                                          f"alignment_buffer_size, lag) is {saved!r} in the file, {current!r} here; "
                                          "load it into the model it was saved from")
        buffer._allocate(dim)


def _check_members(npz: Any, buffer: ReplayBuffer, label: str) -> None:
    """Every member is one this buffer has, and no bigger than the buffer's own array (a planted member or a
    zip bomb is refused before it is read)."""
    own = {k: v.nbytes for k, v in _buffer_arrays(buffer).items()}
    if isinstance(buffer, VLMReplayBuffer) and buffer.embedding_dim is not None:
        own.update({f"alignment/{k}": v.nbytes for k, v in buffer.alignment.state_dict().items()
                    if isinstance(v, np.ndarray)})
    budget = 2 * sum(own.values()) + 64 * 2**20  # + unfinished episodes and first frames, bounded by the buffer
    for name in npz.files:
        size = npz.zip.getinfo(f"{name}.npy").file_size
        if name != "meta" and name not in own and not name.startswith(_EXTRA_PREFIXES):
            raise CorruptFileError(f"{label!r} has a member {name!r} that this {type(buffer).__name__} does not "
                                   "have (not read)")
        if name in own and size > own[name] + 2**16:
            raise CorruptFileError(f"{label!r}: member {name!r} unpacks to {size} bytes, more than this buffer's "
                                   f"{own[name]} (not read)")
        budget -= size
        if budget < 0:
            raise CorruptFileError(f"{label!r} unpacks to more bytes than this buffer holds (not read)")


def load_buffer(path: str | os.PathLike, buffer: ReplayBuffer) -> int:
    """Fill ``buffer`` (built by the model: same class and sizes) from a :func:`save_buffer` file.

    Returns:
        The step recorded by :func:`save_buffer`.

    Raises:
        CorruptFileError: the file is truncated or corrupt; CheckpointMismatchError: it is for another buffer.
    """
    path = _resolve(path, ".npz")
    label = str(path)
    vlm: Any  # the "vlm" JSON object (None for a plain ReplayBuffer)
    try:
        with open(path, "rb") as handle:  # read once, then copied into the model's own arrays
            _check_zip(handle, label, "replay buffer file", "meta.npy")
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as npz:
                if npz.zip.getinfo("meta.npy").file_size > MAX_JSON_BYTES:
                    raise CorruptFileError(f"{label!r}: its meta entry is larger than {MAX_JSON_BYTES} bytes")
                meta = loads_json(npz["meta"].tobytes(), f"{label}:meta")
                if not isinstance(meta, dict):
                    raise CorruptFileError(f"{label!r}: its meta entry is not a JSON object")
                step, pos, full, vlm = int(meta["step"]), int(meta["pos"]), bool(meta["full"]), meta.get("vlm")
                _check_fit(meta, buffer, label)  # before any array is read or allocated
                _check_members(npz, buffer, label)
                arrays = {k: npz[k] for k in npz.files if k != "meta"}
    except (CorruptFileError, CheckpointMismatchError):
        raise
    except (*_CUT, TypeError, AttributeError) as err:
        raise CorruptFileError(f"{label!r} is not a complete replay buffer file (truncated or corrupt): "
                               f"{type(err).__name__}: {err}") from None

    def check(what: str, saved: Any, have: Any) -> None:
        if saved != have:
            raise CheckpointMismatchError(f"{label!r} does not fit this buffer: {what} is {saved!r} in the file, "
                                          f"{have!r} here; load it into the model it was saved from")

    rows = int(meta.get("rows", buffer.buffer_size))
    check("rows in use", rows, buffer.buffer_size if full else pos)
    have = {k: (v.shape[1:] if _per_row(v, buffer) else v.shape, v.dtype)
            for k, v in _buffer_arrays(buffer).items()}
    saved = {k: (v.shape[1:] if v.shape[0] == rows and k in have and have[k][0] != v.shape else v.shape, v.dtype)
             for k, v in arrays.items() if k.startswith("buffer/")}
    for key in sorted(k for k in set(have) | set(saved) if have.get(k) != saved.get(k))[:1]:
        check(f"array {key[len('buffer/'):]!r} (shape, dtype)", saved.get(key), have.get(key))
    if isinstance(buffer, VLMReplayBuffer) and buffer.embedding_dim is not None:  # the file has embeddings too
        store = {k[len("alignment/"):]: v for k, v in arrays.items() if k.startswith("alignment/")}
        check("alignment store (dim, capacity, lag)", [vlm["alignment"][k] for k in ("dim", "capacity", "lag")],
              [buffer.alignment.dim, buffer.alignment.capacity, buffer.alignment.lag])
        buffer.alignment.load_state_dict({**vlm["alignment"], **store})
        buffer._frame_rng.bit_generator.state = vlm["frame_rng"]
        ends = np.cumsum([0, *vlm["episode_lengths"]])
        emb, ok, dist = arrays["episodes/embeddings"], arrays["episodes/success"], arrays["episodes/distance"]
        buffer._episodes = [[(emb[i], bool(ok[i]), float(dist[i])) for i in range(a, b)]
                            for a, b in zip(ends[:-1], ends[1:])]
    _copy_buffer_arrays(buffer, arrays, rows)
    if isinstance(buffer, PixelReplayBuffer):
        if "pixels/first_frames" not in arrays:
            raise CorruptFileError(f"{label!r} has no episode first frames, which a pixel replay buffer needs")
        buffer.first_frames = {(int(r), int(e)): frame for (r, e), frame in
                               zip(arrays["pixels/first_keys"], arrays["pixels/first_frames"])}
    buffer.pos, buffer.full = pos, full
    if vlm is not None:
        assert isinstance(buffer, VLMReplayBuffer)  # the file's class matched (_check_fit), and only those have vlm
        buffer.batches_sampled, buffer.last_batch = int(vlm["batches_sampled"]), None
    return step


def _copy_buffer_arrays(buffer: ReplayBuffer, arrays: dict[str, np.ndarray], rows: int) -> None:
    """The file's ``buffer/...`` arrays into ``buffer`` (its first ``rows`` rows, or the whole attribute)."""
    for key, value in arrays.items():
        parts = key.split("/")
        if parts[0] == "buffer":
            target = getattr(buffer, parts[1]) if len(parts) == 2 else getattr(buffer, parts[1])[parts[2]]
            if _per_row(target, buffer) and value.shape[0] == rows:
                target[:rows] = value  # into the model's own full-size arrays
            elif len(parts) == 2:
                setattr(buffer, parts[1], value)
            else:
                getattr(buffer, parts[1])[parts[2]] = value
