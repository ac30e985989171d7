"""The RelayPolicy checkpoint format: one zip with SB3's own format for the VLM agent plus FuRL's entries.

Entries added to SB3's zip:

- ``task_agent.zip``: the relay's task agent (a plain agent of the relay's backbone: SAC, TQC, CrossQ, DrQ), in
  SB3's format;
- ``furl_safe_data.json`` (in the outer zip and in ``task_agent.zip``): the JSON description of what SB3 pickles,
  written by :mod:`furl_wrappers.serialization`;
- ``furl_state.json``: the format version, the identity the checkpoint was made for (:func:`identity`), the relay's
  ``state_dict()``, the alignment callback's stage and step count, and the global RNG states
  (:mod:`furl_wrappers.rng_state`);
- ``furl_tensors.pt``: tensors only, read with ``torch.load(weights_only=True)``: the reward heads and their
  optimiser.

Files are written through :func:`~furl_wrappers._atomic.atomic_write`, so an interrupted save leaves the previous
checkpoint intact. SB3 pickles some attributes into its ``data`` entry; ``RelayPolicy.load`` never unpickles
them: it rebuilds them from ``furl_safe_data.json`` (classes only from SB3, sb3_contrib, furl_wrappers, torch.nn and
torch.optim) and refuses a zip without it unless ``trusted=True``. This module's own entries are JSON and tensors.

Example:
    >>> import gymnasium as gym
    >>> box = gym.spaces.Box(-1, 1, (2,))
    >>> ident = identity(box, box, vlm_reward=None, task="reach-v3")
    >>> check_identity(ident, ident)
    >>> try:
    ...     check_identity({**ident, "task": "push-v3"}, ident)
    ... except CheckpointMismatchError as err:
    ...     print(err)
    checkpoint mismatch in task: the checkpoint was made with 'push-v3', the given env has 'reach-v3'
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import IO, Any, Callable

import torch

from furl_wrappers import rng_state
from furl_wrappers._atomic import find_with_suffix, write_to
from furl_wrappers._safe_files import (
    MAX_JSON_BYTES,
    CheckpointMismatchError,
    CorruptFileError,
    UnsafeFileError,
    loads_json,
    tensor_file_problem,
)

__all__ = ["FORMAT", "TASK_AGENT_ENTRY", "CheckpointMismatchError", "identity", "env_identity", "check_identity",
           "write_checkpoint", "read_checkpoint", "relay_state", "restore_relay_state"]

#: version of ``furl_state.json`` (2: ``task_agent.zip``, the relay's ``state_dict``, one RNG capture)
FORMAT = 2
#: the task agent's zip inside a relay checkpoint
TASK_AGENT_ENTRY = "task_agent.zip"
#: the relay's tensors (reward heads, their optimiser, RNG states) beside the algorithm's own parameter files
TENSORS_ENTRY = "furl_tensors.pt"
_STATE = "furl_state.json"
#: largest tensor entry read (reward heads, their optimiser and RNG states: a few MiB for the paper's heads)
MAX_TENSORS_BYTES = 2**30
_IDENTITY_KEYS = ("task", "encoder", "reward_model", "observation_space", "action_space")


def identity(observation_space: Any, action_space: Any, vlm_reward: Any = None, task: str | None = None
             ) -> dict[str, Any]:
    """What a checkpoint must match: spaces, and (when known) the task and the VLM reward's encoder and heads."""
    ident: dict[str, Any] = {"observation_space": repr(observation_space), "action_space": repr(action_space)}
    if task is not None:
        ident["task"] = str(task)
    if vlm_reward is not None:
        encoder = vlm_reward.encoder
        if encoder is not None:
            ident["encoder"] = getattr(encoder, "name", type(encoder).__name__)
        ident["reward_model"] = {"dim": vlm_reward.reward_model.dim, "mode": vlm_reward.reward_model.mode}
    return ident


def env_identity(env: Any, vlm_reward: Any) -> dict[str, Any]:
    """The identity of a (vector) env with its VLM reward, in the form a checkpoint records."""
    try:
        task = env.get_attr("task", indices=[0])[0]
    except AttributeError:
        task = None
    return identity(env.observation_space, env.action_space, vlm_reward, task)


def check_identity(saved: dict[str, Any], probe: dict[str, Any]) -> None:
    """Raise :class:`CheckpointMismatchError` for the first key both know that differs."""
    for key in _IDENTITY_KEYS:
        if key in saved and key in probe and saved[key] != probe[key]:
            raise CheckpointMismatchError(f"checkpoint mismatch in {key}: the checkpoint was made with {saved[key]!r}, "
                                          f"the given env has {probe[key]!r}")


def write_checkpoint(path: str | os.PathLike | IO[bytes], save_sb3: Callable[[IO[bytes]], None],
                     task_agent: Any, state: dict[str, Any], tensors: dict[str, Any]) -> Path | None:
    """Write the zip: SB3's format through ``save_sb3(handle)``, then FuRL's entries.

    Args:
        path: a file path (written atomically; ``.zip`` added when missing, as SB3 does) or a binary handle.
        save_sb3: writes the VLM agent in SB3's format to a handle.
        task_agent: the relay's task agent (or ``None``), anything with ``save(handle)``.
        state: JSON-able state (``format`` is added).
        tensors: tensors for ``furl_tensors.pt``.

    Returns:
        The path written (``None`` for a handle).
    """
    archive_bytes = io.BytesIO()
    save_sb3(archive_bytes)
    with zipfile.ZipFile(archive_bytes, "a") as archive:
        if task_agent is not None:
            task_bytes = io.BytesIO()
            task_agent.save(task_bytes)
            archive.writestr(TASK_AGENT_ENTRY, task_bytes.getvalue())
        archive.writestr(_STATE, json.dumps({"format": FORMAT, **state}))
        blob = io.BytesIO()
        torch.save(tensors, blob)
        archive.writestr(TENSORS_ENTRY, blob.getvalue())
    data = archive_bytes.getvalue()
    return write_to(path, ".zip", lambda handle: handle.write(data))


def read_checkpoint(source: str | os.PathLike | bytes,
                    name: str | None = None) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    """``(state, tensors, task agent zip bytes or None)`` of a checkpoint: a path (gains ``.zip`` when only that
    exists) or the zip's bytes (``name``: how errors name them).

    Raises:
        ValueError: the file is not a RelayPolicy checkpoint (no ``furl_state.json``), naming it.
        UnsafeFileError, CorruptFileError: its tensors hold pickles, or its entries are malformed.
    """
    handle: io.BytesIO | Path
    if isinstance(source, bytes):
        path, handle = name or "<bytes>", io.BytesIO(source)
    else:
        found = find_with_suffix(source, ".zip")
        path, handle = str(found), found
    with zipfile.ZipFile(handle) as archive:
        names = set(archive.namelist())
        if _STATE not in names:
            raise ValueError(f"{str(path)!r} is not a RelayPolicy checkpoint (no {_STATE}); load plain SB3 models "
                             "with SAC.load")
        for entry, limit in ((_STATE, MAX_JSON_BYTES), (TENSORS_ENTRY, MAX_TENSORS_BYTES)):
            size = archive.getinfo(entry).file_size if entry in names else 0
            if size > limit:  # checked before the entry is unpacked
                raise CorruptFileError(f"{str(path)!r}: {entry} unpacks to {size} bytes, more than the {limit} read")
        state = loads_json(archive.read(_STATE), f"{path}:{_STATE}")
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            version = state.get("format") if isinstance(state, dict) else None
            raise CorruptFileError(f"{str(path)!r} is a relay checkpoint of format {version!r}; this version reads "
                                   f"format {FORMAT} only (checkpoints from before the relay state change are not "
                                   "read)")
        try:
            tensors = torch.load(io.BytesIO(archive.read(TENSORS_ENTRY)), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise UnsafeFileError(f"{str(path)!r}: {TENSORS_ENTRY} holds pickled objects besides tensors, which are "
                                  "not loaded") from None
        except Exception as err:  # torch's own reading errors: a damaged entry
            raise CorruptFileError(f"{str(path)!r}: {TENSORS_ENTRY} is not a torch tensor file ({type(err).__name__})"
                                   ) from None
        if not (isinstance(state, dict) and isinstance(tensors, dict)):
            raise CorruptFileError(f"{str(path)!r}: {_STATE} or {TENSORS_ENTRY} is not a mapping")
        problem = tensor_file_problem(tensors)
        if problem is not None:  # reward heads or their optimiser: never trained on silently
            raise CorruptFileError(f"{str(path)!r}: {TENSORS_ENTRY} holds {problem}: a diverged or damaged "
                                   "checkpoint, not loaded")
        task_bytes = archive.read(TASK_AGENT_ENTRY) if TASK_AGENT_ENTRY in names else None
    return state, tensors, task_bytes


def relay_state(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A relay agent's ``(state, tensors)`` beside SB3's own format: global RNGs, identity, the relay's
    ``state_dict()``, positive count, the alignment callback's state, reward heads."""
    ident = (env_identity(model.env, model.vlm_reward) if model.env is not None else
             identity(model.observation_space, model.action_space, model.vlm_reward))
    state: dict[str, Any] = {"rng": rng_state.capture(model.action_space), "identity": ident,
                             "relay": model.state_dict()}
    tensors: dict[str, Any] = {}
    state["positive_count"] = int(model.replay_buffer.positive_count) if model.replay_buffer is not None else 0
    if model.alignment_callback is not None:
        alignment = dict(model.alignment_callback.state_dict())
        optimizer = alignment.pop("optimizer", None)  # tensors: to furl_tensors.pt
        state["alignment"] = alignment
        if optimizer is not None:
            tensors["alignment_optimizer"] = optimizer
    if model.vlm_reward is not None:
        tensors["reward_model"] = model.vlm_reward.reward_model.state_dict()
    return state, tensors


def restore_relay_state(model: Any, state: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Undo :func:`relay_state` on a loaded relay agent.

    Raises:
        CorruptFileError: a malformed state (one line; the half-restored model must be discarded).
    """
    try:
        model.load_state_dict(state["relay"])
        if model.vlm_reward is not None and "reward_model" in tensors:
            model.vlm_reward.reward_model.load_state_dict(tensors["reward_model"])
        if model.alignment_callback is not None and "alignment" in state:
            model.alignment_callback.load_state_dict({**state["alignment"],
                                                      "optimizer": tensors.get("alignment_optimizer")})
        rng_state.restore(state["rng"], model.action_space)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, OverflowError) as err:
        why = str(err) if type(err) is ValueError else f"{type(err).__name__}: {str(err)[:80]}"
        raise CorruptFileError(f"the checkpoint's relay state is malformed ({why})") from None
