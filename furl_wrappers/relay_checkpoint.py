"""The RelayPolicy checkpoint format: one zip with SB3's own format for the VLM agent plus FuRL's entries.

Entries added to SB3's zip:

- ``relay_sac.zip``: the relay's plain second agent (SAC, or the relay's other backbone: TQC, CrossQ), in SB3's
  format (the name kept for every backbone);
- ``furl_safe_data.json`` (in the outer zip and in ``relay_sac.zip``): the JSON description of what SB3 pickles,
  written by :mod:`furl_wrappers.serialization`;
- ``furl_state.json``: the format version, the identity the checkpoint was made for (:func:`identity`), the relay
  schedule, the alignment stage and numpy's global RNG state;
- ``furl_tensors.pt``: tensors only, read with ``torch.load(weights_only=True)``: the reward heads, their
  optimiser, torch's RNG state.

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

import numpy as np
import torch

from furl_wrappers._atomic import atomic_write
from furl_wrappers._safe_files import CorruptFileError, UnsafeFileError, loads_json

__all__ = ["FORMAT", "CheckpointMismatchError", "identity", "env_identity", "check_identity", "write_checkpoint",
           "read_checkpoint", "global_rng_state", "restore_global_rng_state", "relay_state", "restore_relay_state"]

#: version of ``furl_state.json``
FORMAT = 1
_STATE, _TENSORS, _SAC = "furl_state.json", "furl_tensors.pt", "relay_sac.zip"
_IDENTITY_KEYS = ("task", "encoder", "reward_model", "observation_space", "action_space")


class CheckpointMismatchError(ValueError):
    """A checkpoint was made for another task, encoder or observation/action space."""


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


def global_rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    """numpy's and torch's global RNG states as ``(JSON part, tensor part)``."""
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)  # legacy=True (the default): ("MT19937", keys, pos, has_gauss, cached)
    return {"numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]]}, {"torch_rng": torch.get_rng_state()}


def restore_global_rng_state(state: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Undo :func:`global_rng_state` (SB3's load re-seeds the global generators with the original seed)."""
    try:
        np_rng = state["numpy_rng"]
        np.random.set_state((np_rng[0], np.array(np_rng[1], dtype=np.uint32), *np_rng[2:]))
        torch.set_rng_state(tensors["torch_rng"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise CorruptFileError(f"the saved numpy/torch RNG state does not fit ({type(err).__name__}: "
                               f"{str(err)[:80]})") from None


def write_checkpoint(path: str | os.PathLike | IO[bytes], save_sb3: Callable[[IO[bytes]], None],
                     sac_agent: Any, state: dict[str, Any], tensors: dict[str, Any]) -> Path | None:
    """Write the zip: SB3's format through ``save_sb3(handle)``, then FuRL's entries.

    Args:
        path: a file path (written atomically; ``.zip`` added when missing, as SB3 does) or a binary handle.
        save_sb3: writes the VLM agent in SB3's format to a handle.
        sac_agent: the relay SAC agent (or ``None``).
        state: JSON-able state (``format`` is added).
        tensors: tensors for ``furl_tensors.pt``.

    Returns:
        The path written (``None`` for a handle).
    """
    archive_bytes = io.BytesIO()
    save_sb3(archive_bytes)
    with zipfile.ZipFile(archive_bytes, "a") as archive:
        if sac_agent is not None:
            sac_bytes = io.BytesIO()
            sac_agent.save(sac_bytes)
            archive.writestr(_SAC, sac_bytes.getvalue())
        archive.writestr(_STATE, json.dumps({"format": FORMAT, **state}))
        blob = io.BytesIO()
        torch.save(tensors, blob)
        archive.writestr(_TENSORS, blob.getvalue())
    data = archive_bytes.getvalue()
    if not isinstance(path, (str, os.PathLike)):
        path.write(data)
        return None
    path = Path(path)
    if path.suffix != ".zip":
        path = path.with_name(path.name + ".zip")
    return atomic_write(path, lambda handle: handle.write(data))


def read_checkpoint(source: str | os.PathLike | bytes,
                    name: str | None = None) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    """``(state, tensors, relay SAC zip bytes or None)`` of a checkpoint: a path (gains ``.zip`` when only that
    exists) or the zip's bytes (``name``: how errors name them).

    Raises:
        ValueError: the file is not a RelayPolicy checkpoint (no ``furl_state.json``), naming it.
        UnsafeFileError, CorruptFileError: its tensors hold pickles, or its entries are malformed.
    """
    handle: io.BytesIO | Path
    if isinstance(source, bytes):
        path, handle = name or "<bytes>", io.BytesIO(source)
    else:
        found = Path(source)
        if not found.exists() and found.with_name(found.name + ".zip").exists():
            found = found.with_name(found.name + ".zip")
        path, handle = str(found), found
    with zipfile.ZipFile(handle) as archive:
        names = set(archive.namelist())
        if _STATE not in names:
            raise ValueError(f"{str(path)!r} is not a RelayPolicy checkpoint (no {_STATE}); load plain SB3 models "
                             "with SAC.load")
        state = loads_json(archive.read(_STATE), f"{path}:{_STATE}")
        try:
            tensors = torch.load(io.BytesIO(archive.read(_TENSORS)), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise UnsafeFileError(f"{str(path)!r}: {_TENSORS} holds pickled objects besides tensors, which are not "
                                  "loaded") from None
        except Exception as err:  # torch's own reading errors: a damaged entry
            raise CorruptFileError(f"{str(path)!r}: {_TENSORS} is not a torch tensor file ({type(err).__name__})"
                                   ) from None
        if not (isinstance(state, dict) and isinstance(tensors, dict)):
            raise CorruptFileError(f"{str(path)!r}: {_STATE} or {_TENSORS} is not a mapping")
        sac_bytes = archive.read(_SAC) if _SAC in names else None
    return state, tensors, sac_bytes


def relay_state(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A relay agent's ``(state, tensors)`` beside SB3's own format: global RNGs, identity, relay schedule, positive
    count, alignment state, reward heads."""
    state, tensors = global_rng_state()
    ident = (env_identity(model.env, model.vlm_reward) if model.env is not None else
             identity(model.observation_space, model.action_space, model.vlm_reward))
    state.update(identity=ident, relay={
        "active": bool(model.relay_active), "ep_step": model._ep_step.tolist(),
        "start_with_sac": model._start_with_sac.tolist(), "relay_length": model._relay_length.tolist(),
        "vlm_steps": model.vlm_steps, "sac_steps": model.sac_steps, "rng": model._relay_rng.bit_generator.state})
    state["positive_count"] = int(model.replay_buffer.positive_count) if model.replay_buffer is not None else 0
    if model.alignment_callback is not None:
        state["alignment"], alignment_tensors = model.alignment_callback.state()
        tensors.update(alignment_tensors)
    if model.vlm_reward is not None:
        tensors["reward_model"] = model.vlm_reward.reward_model.state_dict()
    return state, tensors


def restore_relay_state(model: Any, state: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Undo :func:`relay_state` on a loaded relay agent.

    Raises:
        CorruptFileError: a malformed state (one line; the half-restored model must be discarded).
    """
    try:
        _restore_relay_state(model, state, tensors)
    except CorruptFileError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise CorruptFileError(f"the checkpoint's relay state is malformed ({type(err).__name__}: {str(err)[:80]})"
                               ) from None


def _restore_relay_state(model: Any, state: dict[str, Any], tensors: dict[str, Any]) -> None:
    relay = state["relay"]
    model.relay_active = bool(relay["active"])
    if len(relay["ep_step"]) == model.n_envs:
        model._ep_step = np.array(relay["ep_step"], dtype=np.int64)
        model._start_with_sac = np.array(relay["start_with_sac"], dtype=bool)
        model._relay_length = np.array(relay["relay_length"], dtype=np.int64)
    model.vlm_steps, model.sac_steps = int(relay["vlm_steps"]), int(relay["sac_steps"])
    model._relay_rng.bit_generator.state = relay["rng"]
    if model.vlm_reward is not None and "reward_model" in tensors:
        model.vlm_reward.reward_model.load_state_dict(tensors["reward_model"])
    if model.alignment_callback is not None and "alignment" in state:
        model.alignment_callback.load_state(state["alignment"], tensors)
    restore_global_rng_state(state, tensors)
