"""Replay buffers without pickle: one ``.npz`` of arrays plus JSON, read with ``np.load(allow_pickle=False)``.

:func:`save_buffer` writes any SB3 ``ReplayBuffer``: its per-row arrays (every array attribute shaped
``(buffer_size, n_envs, ...)``: SB3's observations, actions, rewards, ..., and a subclass's own, such as furl's
embeddings), only the rows in use until the buffer wraps around, ``pos``/``full``, the model step it was saved at,
and — for buffers with a ``state_dict()`` (furl's ``VLMReplayBuffer``, ``PixelReplayBuffer``) — that state, arrays
as members and the rest as JSON. :func:`load_buffer` fills a buffer the model built from the same settings: class
and sizes first, then the buffer's ``load_state_dict`` (which reads its JSON before any array, so that it can lay
out its storage), then the rows; every member is size-checked before it is read. It returns the step (a
checkpoint set checks it against the model's).

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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer

from furl_wrappers._atomic import find_with_suffix, write_to
from furl_wrappers._safe_files import (
    MAX_JSON_BYTES,
    TRUNCATED_ERRORS,
    CheckpointMismatchError,
    CorruptFileError,
    UnsafeFileError,
    check_zip,
    loads_json,
    open_regular,
)

__all__ = ["save_buffer", "load_buffer", "FORMAT"]

#: version of the buffer file (2: per-row arrays + the buffer's own state_dict)
FORMAT = 2
_ROWS, _STATE = "rows/", "state/"
#: slack over the buffer's own bytes for the unfinished episodes, first frames and npy headers
_SLACK = 64 * 2**20


def _row_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    """Every per-row array attribute ``(buffer_size, n_envs, ...)``, by name (a dict of them, as
    DictReplayBuffer's observations: ``name/key``)."""
    out = {}
    for key, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and _per_row(value, buffer):
            out[key] = value
        elif (isinstance(value, dict) and value and all(isinstance(k, str) for k in value)
              and all(isinstance(v, np.ndarray) and _per_row(v, buffer) for v in value.values())):
            out.update({f"{key}/{k}": v for k, v in value.items()})
    return out


def _per_row(array: np.ndarray, buffer: ReplayBuffer) -> bool:
    return array.shape[:2] == (buffer.buffer_size, buffer.n_envs)


def _state(buffer: ReplayBuffer) -> dict[str, Any]:
    state_dict = getattr(buffer, "state_dict", None)
    return {} if state_dict is None else state_dict()


def _rows(buffer: ReplayBuffer) -> int:
    """Rows in use: a buffer that has not wrapped around yet is saved up to ``pos`` only (a 1e6-row buffer
    early in a run is mostly zeros)."""
    if buffer.full or buffer.optimize_memory_usage:  # (that layout keeps the last next_obs in row pos)
        return buffer.buffer_size
    return int(buffer.pos)


def _class_name(buffer: ReplayBuffer) -> str:
    return f"{type(buffer).__module__}:{type(buffer).__qualname__}"


def save_buffer(buffer: ReplayBuffer, path: str | os.PathLike, *, step: int) -> Path:
    """Write ``buffer`` (any SB3 ``ReplayBuffer``) to one ``.npz`` (suffix added), atomically.

    Args:
        step: the model's ``num_timesteps``, returned by :func:`load_buffer` to check a checkpoint set.
    """
    rows = _rows(buffer)
    arrays: dict[str, Any] = {_ROWS + k: v[:rows] for k, v in _row_arrays(buffer).items()}
    state = _state(buffer)
    arrays.update({_STATE + k: v for k, v in state.items() if isinstance(v, np.ndarray)})
    meta = {"format": FORMAT, "class": _class_name(buffer), "step": int(step), "rows": rows,
            "buffer_size": buffer.buffer_size, "n_envs": buffer.n_envs, "pos": int(buffer.pos),
            "full": bool(buffer.full), "state": {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    written = write_to(path, ".npz", lambda handle: np.savez(handle, **arrays))
    assert written is not None  # a path, not a handle, was given
    return written


class _FileState(Mapping):
    """The file's buffer state as the buffer's ``load_state_dict`` reads it: JSON values at once, each array
    member only when asked for, after its unpacked size is checked against the bytes the buffer holds by then."""

    def __init__(self, npz: Any, json_state: dict[str, Any], buffer: ReplayBuffer, label: str) -> None:
        self.npz, self.json, self.buffer, self.label = npz, json_state, buffer, label
        self.arrays = {name[len(_STATE):] for name in npz.files if name.startswith(_STATE)}
        self.budget: int | None = None

    def __getitem__(self, key: str) -> Any:
        if key in self.json:
            return self.json[key]
        if key not in self.arrays:
            raise KeyError(key)
        if self.budget is None:  # the buffer has laid out its storage from the JSON values by now
            own = [*_row_arrays(self.buffer).values(), *(v for v in _state(self.buffer).values()
                                                        if isinstance(v, np.ndarray))]
            self.budget = 2 * sum(a.nbytes for a in own) + _SLACK
        self.budget -= _member_size(self.npz, _STATE + key)
        if self.budget < 0:
            raise CorruptFileError(f"{self.label!r}: its buffer state unpacks to more bytes than this buffer holds "
                                   "(not read)")
        return self.npz[_STATE + key]

    def __iter__(self) -> Iterator[str]:
        return iter([*self.json, *sorted(self.arrays)])

    def __len__(self) -> int:
        return len(self.json) + len(self.arrays)


def _member_size(npz: Any, name: str) -> int:
    return int(npz.zip.getinfo(f"{name}.npy").file_size)


def _read_meta(npz: Any, label: str) -> dict[str, Any]:
    if _member_size(npz, "meta") > MAX_JSON_BYTES:
        raise CorruptFileError(f"{label!r}: its meta entry is larger than {MAX_JSON_BYTES} bytes")
    meta = loads_json(npz["meta"].tobytes(), f"{label}:meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise CorruptFileError(f"{label!r}: its meta entry is not a buffer description")
    if meta.get("format") != FORMAT:
        raise CorruptFileError(f"{label!r} is a replay buffer file of format {meta.get('format')!r}; this version "
                               f"reads format {FORMAT} only (files from before furl_wrappers 0.x's state change are "
                               "not read)")
    return meta


def _check_fit(meta: dict[str, Any], buffer: ReplayBuffer, label: str) -> None:
    rows = meta.get("rows")
    for key, have in (("class", _class_name(buffer)), ("buffer_size", buffer.buffer_size), ("n_envs", buffer.n_envs),
                      ("rows in use", buffer.buffer_size if meta.get("full") or buffer.optimize_memory_usage
                       else meta.get("pos"))):
        saved = rows if key == "rows in use" else meta.get(key)
        if saved != have:
            raise CheckpointMismatchError(f"{label!r} does not fit this buffer: {key} is {saved!r} in the file, "
                                          f"{have!r} here; load it into the model it was saved from")


def _read_rows(npz: Any, buffer: ReplayBuffer, rows: int, label: str) -> dict[str, np.ndarray]:
    """The file's per-row members, each checked against the buffer's own array (name, size, then shape and dtype)
    before the next is read; every member of the file is the buffer's own."""
    own = _row_arrays(buffer)
    for name in npz.files:
        if name != "meta" and not name.startswith(_STATE) and name[len(_ROWS):] not in own:
            raise CorruptFileError(f"{label!r} has a member {name!r} that this {type(buffer).__name__} does not "
                                   "have (not read)")
    missing = sorted(set(own) - {name[len(_ROWS):] for name in npz.files})
    if missing:
        raise CheckpointMismatchError(f"{label!r} does not fit this buffer: it has no {missing[0]!r} rows")
    out = {}
    for key, target in own.items():
        size = _member_size(npz, _ROWS + key)
        if size > target[:rows].nbytes + 2**16:
            raise CorruptFileError(f"{label!r}: member {_ROWS + key!r} unpacks to {size} bytes, more than this "
                                   f"buffer's {target[:rows].nbytes} (not read)")
        value = npz[_ROWS + key]
        if (value.shape, value.dtype) != (target[:rows].shape, target.dtype):
            raise CheckpointMismatchError(f"{label!r} does not fit this buffer: array {key!r} (shape, dtype) is "
                                          f"{(value.shape[1:], value.dtype)} in the file, "
                                          f"{(target.shape[1:], target.dtype)} here")
        out[key] = value
    return out


def load_buffer(path: str | os.PathLike, buffer: ReplayBuffer) -> int:
    """Fill ``buffer`` (built by the model: same class and sizes) from a :func:`save_buffer` file.

    Returns:
        The step recorded by :func:`save_buffer`.

    Raises:
        CorruptFileError: the file is truncated, corrupt or of another format; CheckpointMismatchError: it is for
            another buffer; UnsafeFileError: it is a symlink, FIFO or other non-regular file (never followed).
    """
    path = find_with_suffix(path, ".npz")
    label = str(path)
    try:
        with open_regular(path, "rb") as handle:  # no symlink, no FIFO; read once, then copied into the buffer
            check_zip(handle, label, "replay buffer file", "meta.npy")
            handle.seek(0)
            with np.load(handle, allow_pickle=False) as npz:
                meta = _read_meta(npz, label)
                _check_fit(meta, buffer, label)  # before any array is read or allocated
                load_state = getattr(buffer, "load_state_dict", None)
                if load_state is not None:
                    load_state(_FileState(npz, meta["state"], buffer, label))
                rows = _read_rows(npz, buffer, int(meta["rows"]), label)
    except UnsafeFileError:
        raise
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(f"{label!r} does not fit this buffer: {err}"
                                      if not str(err).startswith(repr(label)) else str(err)) from None
    except CorruptFileError as err:
        raise CorruptFileError(str(err) if str(err).startswith(repr(label)) else f"{label!r}: {err}") from None
    except (*TRUNCATED_ERRORS, TypeError, AttributeError, IndexError) as err:
        raise CorruptFileError(f"{label!r} is not a complete replay buffer file (truncated or corrupt): "
                               f"{type(err).__name__}: {str(err)[:80]}") from None
    for key, value in rows.items():
        name, _, field = key.partition("/")
        target = getattr(buffer, name)[field] if field else getattr(buffer, name)
        target[:len(value)] = value  # into the model's own full-size arrays
    buffer.pos, buffer.full = int(meta["pos"]), bool(meta["full"])
    return int(meta["step"])
