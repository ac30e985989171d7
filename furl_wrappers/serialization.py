"""Pickle-free model zips: loading a file never unpickles anything unless asked to.

SB3 pickles (cloudpickle, in the zip's ``data`` entry) every model attribute JSON cannot hold; unpickling runs code.
:func:`save_model` adds ``furl_safe_data.json``, a JSON description of each (:func:`safe_entry`); :func:`load_model`
rebuilds them from it as SB3 ``custom_objects``, so SB3 unpickles nothing. A pickled attribute without a description
(an old or foreign zip) raises :class:`UnsafeFileError` unless ``trusted=True``. Classes are resolved only inside
stable_baselines3, sb3_contrib, furl_wrappers, torch.nn and torch.optim, and only if they subclass what the attribute
needs (policy, replay buffer, torch module, optimiser). Replay buffers: :mod:`furl_wrappers.runs.buffer_file`.

Example:
    >>> import tempfile, gymnasium as gym
    >>> from stable_baselines3 import SAC
    >>> folder = tempfile.mkdtemp()
    >>> model = SAC("MlpPolicy", gym.make("Pendulum-v1"), buffer_size=100, device="cpu")
    >>> path = save_model(model, f"{folder}/sac")
    >>> sorted(safe_custom_objects(path))
    ['action_space', 'lr_schedule', 'observation_space', 'policy_class', 'replay_buffer_class', 'train_freq']
    >>> load_model(SAC, path, device="cpu").policy_class.__name__
    'SACPolicy'
"""

from __future__ import annotations

import inspect
import io
import json
import os
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Union

import numpy as np
import torch
from stable_baselines3.common.save_util import is_json_serializable

from furl_wrappers._atomic import find_with_suffix, write_to
from furl_wrappers._safe_files import (
    MAX_JSON_BYTES,
    TRUNCATED_ERRORS,
    CorruptFileError,
    UnsafeFileError,
    check_zip,
    loads_json,
    tensor_file_problem,
)
from furl_wrappers.json_codec import ANY_BASE, CLASS_BASES, decode, encode

__all__ = ["SAFE_ENTRY", "TORCH_VARIABLES", "UnsafeFileError", "CorruptFileError", "safe_entry", "with_safe_entry",
           "save_model", "read_model_zip", "safe_custom_objects", "load_model"]

#: name of the safe description inside a model zip
SAFE_ENTRY = "furl_safe_data.json"
_FORMAT = 1
_TRUST = ("pass trusted=True (furl: --trusted) to load it with SB3's unpickling, which runs code from the file, if "
          "you made it yourself")
Source = Union[str, os.PathLike, bytes, IO[bytes]]
#: plain ``data`` keys SB3's ``load`` acts on that its ``save`` never writes (``env``: ``gym.make`` imports the module
#: before a colon): a zip holding one was not written by SB3 and is refused
_NEVER_SAVED = frozenset({"policy", "device", "env", "replay_buffer", "rollout_buffer", "_vec_normalize_env",
                          "_episode_storage", "_logger", "_custom_logger"})
#: keys SB3 saves as pickled objects (or None): a plain JSON value there is planted
_OBJECTS = frozenset({"observation_space", "action_space", "policy_class", "lr_schedule", "train_freq",
                      "replay_buffer_class", "action_noise", "_last_obs", "_last_original_obs",
                      "_last_episode_starts", "ep_info_buffer", "ep_success_buffer"})
#: largest uncompressed entry of a model zip read (JSON entries: see furl_wrappers._safe_files.MAX_JSON_BYTES)
MAX_ENTRY_BYTES = 2**31
#: most weights the networks a zip's settings describe may hold (the paper's SAC: 0.2 M; CrossQ's: 2.2 M): a load
#: builds the networks before reading their weights, so larger settings are refused before anything is allocated
MAX_NETWORK_PARAMETERS = 10**8


# ------------------------------------------------------------------------------------------------ model zips
def safe_entry(model: Any, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The JSON description of the attributes SB3's ``save`` pickles for ``model`` (or of ``keys``).

    Returns:
        ``{"format": 1, "data": {key: encoding}, "skipped": {key: why}}``; a skipped key (e.g. a lambda schedule)
        makes an untrusted load refuse the file.
    """
    if keys is None:  # SB3's own selection: __dict__ less the excluded names and torch state
        exclude = set(model._excluded_save_params())
        state_dicts, torch_vars = model._get_torch_save_params()
        exclude.update(name.split(".")[0] for name in state_dicts + torch_vars)
        keys = [k for k, v in model.__dict__.items() if k not in exclude and not is_json_serializable(v)]
    entry: dict[str, Any] = {"format": _FORMAT, "data": {}, "skipped": {}}
    for key in keys:
        try:
            entry["data"][key] = encode(model.__dict__[key])
        except (TypeError, ValueError, KeyError) as err:
            entry["skipped"][key] = str(err)
    return entry


def with_safe_entry(zip_bytes: bytes, model: Any) -> bytes:
    """``zip_bytes`` (the model's SB3 zip) with :data:`SAFE_ENTRY` appended (unchanged if it has one)."""
    buffer = io.BytesIO(zip_bytes)
    with zipfile.ZipFile(buffer, "a") as archive:
        if SAFE_ENTRY in archive.namelist():
            return zip_bytes
        data = json.loads(archive.read("data")) if "data" in archive.namelist() else {}
        keys = [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v]
        archive.writestr(SAFE_ENTRY, json.dumps(safe_entry(model, keys)))
    return buffer.getvalue()


def save_model(model: Any, path: str | os.PathLike | IO[bytes]) -> Path | None:
    """``model.save`` plus the safe entry; a path gets ``.zip`` when it has none and is written atomically.

    Returns:
        The path written (``None`` for a binary handle).
    """
    raw = io.BytesIO()
    model.save(raw)
    data = with_safe_entry(raw.getvalue(), model)
    return write_to(path, ".zip", lambda handle: handle.write(data))


def _read(source: Source) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, "<bytes>"
    if hasattr(source, "read"):
        return source.read(), str(getattr(source, "name", "<stream>"))
    path = find_with_suffix(source, ".zip")
    return path.read_bytes(), str(path)


def read_model_zip(source: Source, name: str | None = None) -> tuple[bytes, str]:
    """``(bytes, name)`` of a model zip (a path gains ``.zip`` when only that exists), checked to be complete.

    Raises:
        CorruptFileError: the zip is truncated or corrupt.
    """
    raw, label = _read(source)
    check_zip(io.BytesIO(raw), name or label, "model zip", "data")
    return raw, name or label


def _read_checked(raw: bytes, label: str) -> tuple[dict[str, Any], Any]:
    """``(data, safe entry or None)`` of a complete model zip, every entry bounded in size and every torch entry
    checked to hold tensors only (SB3 loads them with ``weights_only=True``, whose refusal is a long traceback)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        for name, info in infos.items():
            limit = MAX_JSON_BYTES if name in ("data", SAFE_ENTRY) else MAX_ENTRY_BYTES
            if info.file_size > limit:
                raise CorruptFileError(f"{label!r}: entry {name!r} unpacks to {info.file_size} bytes, more than the "
                                       f"{limit} read")
        data = loads_json(archive.read("data"), f"{label}:data")
        entry = loads_json(archive.read(SAFE_ENTRY), f"{label}:{SAFE_ENTRY}") if SAFE_ENTRY in infos else None
        for name in (n for n in infos if n.endswith((".pth", ".pt"))):
            try:
                tensors = torch.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                raise UnsafeFileError(f"{label!r}: {name!r} holds pickled objects besides tensors, which are not "
                                      f"loaded; {_TRUST}") from None
            except Exception as err:  # torch's own reading errors: a damaged entry
                raise CorruptFileError(f"{label!r}: {name!r} is not a torch tensor file ({type(err).__name__})"
                                       ) from None
            _check_tensors(tensors, name, label)
    if not isinstance(data, dict):
        raise CorruptFileError(f"{label!r} is not a complete model zip (truncated or corrupt): 'data' is no dict")
    return data, entry


#: the ``pytorch_variables`` SB3's family saves (SAC, TQC, CrossQ: the entropy coefficient); SB3's ``load`` sets
#: ``model.<name>.data`` for each name in ``pytorch_variables.pth`` / ``tensors.pth``, so any other name (dotted:
#: into the policy; ``__class__``: onto the class) is refused
TORCH_VARIABLES = frozenset({"log_ent_coef", "ent_coef_tensor"})


def _check_tensors(tensors: Any, name: str, label: str) -> None:
    """Refuse weights or optimiser state a model must not train on (NaN or inf, tensors that are not dense, absurd
    object counts) and SB3 variables other than :data:`TORCH_VARIABLES`."""
    problem = tensor_file_problem(tensors)
    if problem is not None:
        raise CorruptFileError(f"{label!r}: {name!r} holds {problem}: a diverged or damaged model, not loaded")
    if name in ("pytorch_variables.pth", "tensors.pth") and isinstance(tensors, dict):
        odd = sorted((str(key)[:60] for key in tensors if key not in TORCH_VARIABLES))
        if odd:
            raise CorruptFileError(f"{label!r}: {name} names {odd[0]!r}, not a variable SB3 saves (only "
                                   f"{', '.join(sorted(TORCH_VARIABLES))}); {_TRUST}")


def _check_plain_keys(data: dict[str, Any], label: str, cls: type[Any] | None) -> None:
    """Refuse ``data`` keys SB3's ``load`` would act on though SB3's ``save`` never writes them (``env`` makes
    ``gym.make`` import a module), and plain values where SB3 stores a pickled object."""
    never = set(_NEVER_SAVED)
    if cls is not None:  # the algorithm's own exclusions (networks, the relay's agents and state)
        try:
            never.update(cls._excluded_save_params(object.__new__(cls)))
        except Exception:  # an algorithm whose list needs a built model: SB3's own list still applies
            pass
    for key, value in data.items():
        serialized = isinstance(value, dict) and ":serialized:" in value
        if key in never:
            raise UnsafeFileError(f"{label!r}: its data holds {key!r}, which SB3's save never writes and its load "
                                  f"acts on (a planted key), so it is not loaded; {_TRUST}")
        if key in _OBJECTS and value is not None and not serialized:
            raise UnsafeFileError(f"{label!r}: its data holds a plain {key!r} ({str(value)[:40]!r}) where SB3 "
                                  f"stores an object, so it is not loaded; {_TRUST}")


def _network_size(policy_kwargs: Any, observation_space: Any) -> int | None:
    """Weights of the dense layers ``net_arch`` describes, times the number of critics (``None``: not a layout
    this can count, left to the algorithm to check). Image observations count as 512 features (after the CNN)."""
    if not isinstance(policy_kwargs, dict):
        return None
    arch = policy_kwargs.get("net_arch", [256, 256])
    layers = list(arch.values()) if isinstance(arch, dict) else [arch]
    shape = getattr(observation_space, "shape", None) or (1,)
    features = int(np.prod(shape)) if len(shape) == 1 else 512
    total = 0
    for widths in layers:
        if not (isinstance(widths, list) and all(type(w) is int for w in widths)):
            return None
        sizes = [features, *widths]
        total += sum(abs(a) * abs(b) for a, b in zip(sizes, sizes[1:]))
    critics = policy_kwargs.get("n_critics", 2)
    return total * (abs(critics) if type(critics) is int and critics else 1)


def safe_custom_objects(source: Source, name: str | None = None, cls: type[Any] | None = None) -> dict[str, Any]:
    """SB3 ``custom_objects`` rebuilding, without pickle, every attribute the zip's ``data`` pickled.

    Also refuses the zip when SB3's ``load`` would act on a planted plain key (``env``, ``device``,
    ``replay_buffer``, ``policy``...; see :func:`_check_plain_keys`), when a torch entry holds pickled objects,
    or when an entry, JSON document, array or space is absurdly large or deep.

    Args:
        source: the zip (path, bytes or binary handle).
        name: how errors name it (default: the path).
        cls: the algorithm class it is loaded as (its ``_excluded_save_params`` are refused too).

    Raises:
        UnsafeFileError: a pickled attribute has no safe description, or one naming a disallowed class; a planted
            key or pickle.
        CorruptFileError: the zip is truncated, corrupt or malformed.
    """
    raw, label = read_model_zip(source, name)
    try:
        data, entry = _read_checked(raw, label)
    except TRUNCATED_ERRORS as err:
        if isinstance(err, (UnsafeFileError, CorruptFileError)):
            raise
        raise CorruptFileError(f"{label!r} is not a complete model zip (truncated or corrupt): {err}") from None
    entry = {"format": _FORMAT, "data": {}} if entry is None else entry
    if not (isinstance(entry, dict) and entry.get("format") == _FORMAT and isinstance(entry.get("data"), dict)):
        raise UnsafeFileError(f"{label!r}: its {SAFE_ENTRY} is not one this furl_wrappers reads (update it), or "
                              f"{_TRUST}")
    _check_plain_keys(data, label, cls)
    custom: dict[str, Any] = {}
    for key in [k for k, item in data.items() if isinstance(item, dict) and ":serialized:" in item]:
        if key not in entry["data"]:
            skipped = entry.get("skipped")
            why = skipped.get(key, "an old or foreign zip") if isinstance(skipped, dict) else "an old or foreign zip"
            raise UnsafeFileError(f"{label!r}: {key!r} is stored only as a pickle ({why}), so it is not loaded; "
                                  f"re-save it with furl_wrappers.serialization.save_model, or {_TRUST}")
        try:
            custom[key] = decode(entry["data"][key], CLASS_BASES.get(key, ANY_BASE))
        except Exception as err:  # whatever fails, nothing was unpickled: refuse the description, naming it
            raise UnsafeFileError(f"{label!r}: the safe description of {key!r} is refused ({type(err).__name__}: "
                                  f"{err}); {_TRUST}") from None
    size = _network_size(custom.get("policy_kwargs", data.get("policy_kwargs")), custom.get("observation_space"))
    if size is not None and size > MAX_NETWORK_PARAMETERS:
        raise UnsafeFileError(f"{label!r}: its policy_kwargs describe networks of about {size:.3g} weights, more than "
                              f"the {MAX_NETWORK_PARAMETERS:.0e} a load builds; {_TRUST}")
    return custom


def load_model(cls: type[Any], path: Source, env: Any = None, *, trusted: bool = False,
               custom_objects: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """``cls.load`` without unpickling (``trusted=True``: SB3's own load, unpickling included).

    Classes whose ``load`` takes ``trusted`` (``RelayPolicy``) do this themselves and get the call as it is.

    Raises:
        UnsafeFileError, CorruptFileError: see :func:`safe_custom_objects`.
    """
    if "trusted" in inspect.signature(cls.load).parameters:
        return cls.load(path, env=env, trusted=trusted, custom_objects=custom_objects, **kwargs)
    raw, label = read_model_zip(path)
    custom = {} if trusted else safe_custom_objects(raw, label, cls)
    return cls.load(io.BytesIO(raw), env=env, custom_objects={**custom, **(custom_objects or {})}, **kwargs)


# ------------------------------------------------------------------------------------------------ buffers
