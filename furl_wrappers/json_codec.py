"""The pickle-free JSON codec of SB3 model attributes (what :mod:`furl_wrappers.serialization` writes beside SB3's
pickles): numpy arrays and scalars, Gymnasium spaces (with their RNG state), classes by name, ``TrainFreq``, deques,
SB3's schedule classes, devices and dtypes, dicts, lists and tuples. Decoding imports nothing but modules under
:data:`_ROOTS`, builds only allowed classes, and bounds every array and space at :data:`MAX_ELEMENTS`.

Example:
    >>> from gymnasium import spaces
    >>> decode(encode(spaces.Box(-1.0, 1.0, (3,))))
    Box(-1.0, 1.0, (3,), float32)
"""

from __future__ import annotations

import base64
import importlib
import inspect
import re
from collections import OrderedDict, deque
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

from furl_wrappers.vlm_reward import VLMReward

__all__ = ["MAX_ELEMENTS", "CLASS_BASES", "ANY_BASE", "encode", "decode", "resolve_class"]

#: most elements one decoded array or space may have (a 224x224 RGB frame stack is ~1.5e5)
MAX_ELEMENTS = 2**24
_TAG = "__type__"
_ROOTS = ("stable_baselines3", "sb3_contrib", "sbx", "furl_wrappers", "torch.nn", "torch.optim")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # no leading underscore: no __main__, no private modules
#: what each SB3 attribute holding a class must subclass (others: ANY_BASE)
CLASS_BASES: dict[str, tuple[type, ...]] = {
    "policy_class": (BasePolicy,), "replay_buffer_class": (ReplayBuffer,), "activation_fn": (torch.nn.Module,),
    "optimizer_class": (torch.optim.Optimizer,), "features_extractor_class": (torch.nn.Module,)}
ANY_BASE = (torch.nn.Module, torch.optim.Optimizer)
_SCHEDULES = {FloatSchedule: ("value_schedule",), ConstantSchedule: ("val",),
              LinearSchedule: ("start", "end", "end_fraction")}
_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete, spaces.Dict, spaces.Tuple)
_SPACE_FIELDS = {"Box": ("low", "high", "shape", "dtype"), "Discrete": ("n", "start", "dtype"), "MultiBinary": ("n",),
                 "MultiDiscrete": ("nvec", "start", "dtype")}
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _dtype(name: Any) -> np.dtype:
    dtype = np.dtype(str(name))
    if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(f"arrays of dtype {dtype} have no pickle-free encoding")
    return dtype


def encode(obj: Any) -> Any:
    """JSON for ``obj``: plain for None/bool/int/float/str/list, else ``{"__type__": ..., ...}`` (dicts too)."""
    kind = type(obj)
    if obj is None or kind in (bool, int, float, str):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.asarray(obj)
        return {_TAG: "ndarray" if kind is np.ndarray else "scalar", "dtype": _dtype(a.dtype.str).str,
                "shape": list(a.shape), "data": base64.b64encode(a.tobytes(order="C")).decode()}
    if kind in _SPACES:
        fields = _SPACE_FIELDS.get(kind.__name__, ("spaces",))  # Dict, Tuple: their children, in order
        node = {_TAG: "space", "space": kind.__name__, **{f: encode(getattr(obj, f)) for f in fields}}
        return {**node, "rng": encode(obj._np_random.bit_generator.state)} if obj._np_random else node
    if isinstance(obj, type):
        return {_TAG: "class", "path": f"{obj.__module__}:{obj.__qualname__}"}
    if kind is TrainFreq:
        return {_TAG: "train_freq", "frequency": encode(obj.frequency), "unit": TrainFrequencyUnit(obj.unit).value}
    if kind is deque:
        return {_TAG: "deque", "maxlen": obj.maxlen, "items": [encode(x) for x in obj]}
    if kind in _SCHEDULES:
        return {_TAG: "schedule", "class": kind.__name__, **{f: encode(getattr(obj, f)) for f in _SCHEDULES[kind]}}
    if kind is torch.device or isinstance(obj, np.dtype):
        return {_TAG: "device", "value": str(obj)} if kind is torch.device else {_TAG: "dtype", "value": obj.str}
    if isinstance(obj, VLMReward):
        return None  # never saved: it pickles to None as well (it holds the encoder); loaders re-attach it
    if kind in (dict, OrderedDict) and all(type(k) is str for k in obj):
        return {_TAG: "dict", "items": [[k, encode(v)] for k, v in obj.items()]}
    if kind in (list, tuple):
        items = [encode(x) for x in obj]
        return items if kind is list else {_TAG: "tuple", "items": items}
    raise TypeError(f"{kind.__module__}.{kind.__qualname__} has no pickle-free encoding")


def _decode_space(node: dict[str, Any]) -> spaces.Space:
    kind = node["space"]
    if kind not in _SPACE_FIELDS and kind not in ("Dict", "Tuple"):
        raise ValueError(f"space {kind!r} is not allowed")
    fields = {f: decode(node[f]) for f in _SPACE_FIELDS.get(kind, ("spaces",))}
    for name in ("shape", "n"):  # Box(low=0, high=1, shape=(8000, 8000)) would allocate 2 x 64e6 floats
        if isinstance(fields.get(name), (int, list, tuple)):
            _check_elements(fields[name], f"{kind} {name}")
    space = getattr(spaces, kind)(**(fields if kind != "Dict" else {"spaces": OrderedDict(fields["spaces"])}))
    if "rng" in node:
        state = decode(node["rng"])
        if state.get("bit_generator") not in _BIT_GENERATORS:
            raise ValueError(f"bit generator {state.get('bit_generator')!r} is not allowed")
        space._np_random = np.random.Generator(getattr(np.random, state["bit_generator"])())
        space._np_random.bit_generator.state = state
    return space


def _check_elements(shape: Any, what: str) -> None:
    size = 1
    for n in (shape if isinstance(shape, (list, tuple)) else [shape]):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{what} {shape!r} is not a shape")
        size *= int(n)
    if size > MAX_ELEMENTS:
        raise ValueError(f"{what} {shape!r} has {size} elements, more than the {MAX_ELEMENTS} allowed")


def resolve_class(path: str, bases: tuple[type, ...]) -> type:
    """The class at ``"module:qualname"``: a module under :data:`_ROOTS` is imported (nothing else is), and the
    class is returned only if it is defined there and subclasses one of ``bases``."""
    module, _, qualname = str(path).partition(":")
    if not any(module == r or module.startswith(r + ".") for r in _ROOTS):
        raise ValueError(f"class {path!r} is outside {', '.join(_ROOTS)}")
    if not all(map(_NAME.fullmatch, module.split(".") + qualname.split("."))):
        raise ValueError(f"{path!r} is not a public class")
    obj: Any = importlib.import_module(module)
    for name in qualname.split("."):
        obj = getattr(obj, name, None)
    if not (isinstance(obj, type) and issubclass(obj, bases) and (obj.__module__, obj.__qualname__) == (module,
                                                                                                        qualname)):
        raise ValueError(f"{path!r} is not a subclass of {' or '.join(b.__name__ for b in bases)}")
    if inspect.isabstract(obj):
        raise ValueError(f"{path!r} is abstract (it cannot be built)")
    return obj


def decode(node: Any, bases: tuple[type, ...] = ANY_BASE) -> Any:
    """Undo :func:`_encode`; nothing is imported or called but the codec's own constructors (and allowed classes'
    modules, see :func:`_resolve_class`)."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        return [decode(x, bases) for x in node]
    tag = node.get(_TAG) if isinstance(node, dict) else None
    if tag in ("ndarray", "scalar"):
        dtype, shape = _dtype(node["dtype"]), tuple(node["shape"])
        _check_elements(shape, "array shape")
        a = np.frombuffer(base64.b64decode(node["data"], validate=True), dtype=dtype).reshape(shape).copy()
        return a if tag == "ndarray" else a[()]
    if tag == "space":
        return _decode_space(node)
    if tag == "class":
        return resolve_class(node["path"], bases)
    if tag == "train_freq":
        return TrainFreq(int(node["frequency"]), TrainFrequencyUnit(node["unit"]))
    if tag == "deque":
        return deque([decode(x) for x in node["items"]], maxlen=None if node["maxlen"] is None else
                     int(node["maxlen"]))
    if tag == "schedule":
        cls = {c.__name__: c for c in _SCHEDULES}[node["class"]]
        fields = [decode(node[f]) for f in _SCHEDULES[cls]]
        ok = (type(fields[0]) in (ConstantSchedule, LinearSchedule) if cls is FloatSchedule else
              all(isinstance(f, (int, float, np.number)) and not isinstance(f, bool) for f in fields))
        if not ok:
            raise ValueError(f"{cls.__name__} fields {fields!r} are not allowed")
        return cls(*fields)
    if tag in ("device", "dtype"):
        return torch.device(str(node["value"])) if tag == "device" else _dtype(node["value"])
    if tag == "dict":
        return {str(k): decode(v, CLASS_BASES.get(k, ANY_BASE)) for k, v in node["items"]}
    if tag == "tuple":
        return tuple(decode(x, bases) for x in node["items"])
    raise ValueError(f"unknown JSON node {str(node)[:60]!r}")
