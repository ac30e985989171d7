"""Pickle-free parameters for sbx (JAX) algorithms: the JAX state an sbx model holds, as tensors SB3 saves.

sbx keeps its networks, their targets and batch statistics, the optimiser states and the random keys in flax
``TrainState``\\ s and JAX arrays on the model and on its policy; SB3's ``save`` would pickle them (and the policy).
:class:`JaxParameters`, mixed in before an sbx algorithm, hands them to SB3 as one more parameter dict instead:
``get_parameters()["jax"]`` is ``{path: tensor}`` (one tensor per leaf), which SB3 writes as ``jax.pth`` (tensors
only, read with ``weights_only=True``), and ``set_parameters`` puts them back into the freshly built model leaf by
leaf, every path, shape and dtype checked against it: the file supplies numbers, never structure or code. The random
keys travel too, so a loaded model samples as the saved one would have (exact resume).

Example:
    >>> import gymnasium as gym
    >>> from furl_wrappers.jax_backbones import SbxSAC
    >>> model = SbxSAC("MlpPolicy", gym.make("Pendulum-v1"), buffer_size=100, seed=0)
    >>> params = model.get_parameters()["jax"]
    >>> params["policy.key"].dtype, params["model.ent_coef_state.params['log_ent_coef']"].shape
    (torch.uint32, torch.Size([]))
"""

from __future__ import annotations

import io
import math
import pickle
import re
import zipfile
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import torch
from flax import linen
from flax.training.train_state import TrainState
from stable_baselines3.common.save_util import load_from_zip_file

from furl_wrappers._safe_files import MAX_JSON_BYTES, CorruptFileError, UnsafeFileError, loads_json

__all__ = ["JAX_PARAMS", "JaxParameters", "JaxStateError", "state_attributes", "state_tensors", "restore_state",
           "check_zip_settings"]

#: the parameter dict (``jax.pth`` in a model zip) holding the JAX state
JAX_PARAMS = "jax"
#: the holders of JAX state: the model itself and its policy
_OWNERS = ("model", "policy")
#: the parameter files an sbx zip holds (SB3 writes pytorch_variables.pth, empty for sbx)
_PARAM_FILES = {f"{JAX_PARAMS}.pth", "pytorch_variables.pth"}
_AUTO = re.compile(r"auto(_[0-9.eE+-]+)?")
#: sbx attributes never saved as such (networks' definitions, JAX state): rebuilt on load, refused if planted
_REBUILT = ("policy", "actor", "qf", "qf1", "qf2", "ent_coef", "ent_coef_state", "key")


class JaxStateError(CorruptFileError, RuntimeError):
    """A zip's JAX parameters do not fit the model its own settings build (a RuntimeError too: SB3's ``load`` passes
    those on as they are, where it would retry a ValueError as an old DQN zip)."""


def state_attributes(obj: Any) -> list[str]:
    """Names of ``obj``'s attributes holding JAX state (flax ``TrainState`` or JAX array), sorted."""
    return sorted(name for name, value in vars(obj).items() if isinstance(value, (TrainState, jax.Array)))


def _holders(model: Any) -> dict[str, Any]:
    return {"model": model, "policy": model.policy}


def _flat(model: Any) -> tuple[list[tuple[str, Any]], Any]:
    """``([(path, leaf)], treedef)`` of ``{"model": {attr: state}, "policy": {attr: state}}``."""
    tree = {owner: {name: getattr(obj, name) for name in state_attributes(obj)}
            for owner, obj in _holders(model).items()}
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    # "['policy']['actor_state'].params['Dense_0']['bias']" → "policy.actor_state.params['Dense_0']['bias']"
    named = []
    for path, leaf in with_paths:
        owner, attr, rest = path[0].key, path[1].key, jax.tree_util.keystr(tuple(path[2:]))
        named.append((f"{owner}.{attr}{rest}", leaf))
    return named, treedef


def state_tensors(model: Any) -> dict[str, torch.Tensor]:
    """Every JAX leaf of ``model`` (and its policy) as a CPU tensor, keyed by its path (SB3 saves these)."""
    named, _ = _flat(model)
    return {name: torch.from_numpy(np.array(leaf)) for name, leaf in named}


def restore_state(model: Any, tensors: dict[str, Any], label: str = "the file") -> None:
    """Put :func:`state_tensors` back into ``model`` (built with the same settings), leaf by leaf.

    Each value is checked as it is in the file before anything is converted: a dense CPU tensor of the leaf's shape
    and dtype, and finite (a NaN weight would only show as NaN actions later).

    Raises:
        JaxStateError: a leaf is missing, unexpected, not such a tensor, of another shape or dtype than the
            model's, or not finite.
    """
    named, treedef = _flat(model)
    expected = {name for name, _ in named}
    given = set(tensors) if isinstance(tensors, dict) else set()
    if given != expected:
        odd = sorted(map(repr, given - expected))[:1] or sorted(map(repr, expected - given))[:1]
        kind = "unexpected" if given - expected else "missing"
        raise JaxStateError(f"{label}: its JAX parameters do not fit a {type(model).__name__} built with its settings "
                            f"({kind} {odd[0] if odd else type(tensors).__name__})")
    leaves = []
    for name, template in named:
        want = np.asarray(template)
        value = tensors[name]
        if not (isinstance(value, torch.Tensor) and value.layout == torch.strided and value.device.type == "cpu"
                and not value.is_quantized):
            raise JaxStateError(f"{label}: JAX parameter {name!r} is not a dense CPU tensor")
        got = str(value.dtype).removeprefix("torch.")
        # a fresh TrainState counts steps in a Python int (int64 here), a trained one in an int32 array
        loose = not isinstance(template, jax.Array) and want.dtype.kind == "i" and got in ("int32", "int64")
        if tuple(value.shape) != want.shape or (got != str(want.dtype) and not loose):
            raise JaxStateError(f"{label}: JAX parameter {name!r} is {got}{list(value.shape)}, the model's "
                                f"{want.dtype}{list(want.shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise JaxStateError(f"{label}: JAX parameter {name!r} holds NaN or inf (a diverged or damaged model)")
        leaves.append(jax.device_put(value.numpy()))
    tree = jax.tree_util.tree_unflatten(treedef, leaves)
    for owner, obj in _holders(model).items():
        for name, value in tree[owner].items():
            setattr(obj, name, value)


# mixed in before an sbx algorithm, whose attributes it uses: typed against SB3's base, derived from object
if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm as _Base
else:
    _Base = object


class JaxParameters(_Base):
    """Mix in before an sbx algorithm (``class SbxSAC(JaxParameters, sbx.SAC)``): its JAX state is saved as the
    ``"jax"`` parameters (tensors) instead of pickled, and restored by ``set_parameters`` (so by ``load``)."""

    def _excluded_save_params(self) -> list[str]:
        excluded = super()._excluded_save_params()
        owned = [name for name, value in vars(self).items() if isinstance(value, linen.Module)]
        return excluded + [name for name in (*_REBUILT, *owned, *state_attributes(self)) if name not in excluded]

    def get_parameters(self) -> dict[str, dict[str, Any]]:
        """SB3's (none for sbx) plus ``"jax"``: :func:`state_tensors`."""
        return {**super().get_parameters(), JAX_PARAMS: state_tensors(self)}

    def set_parameters(self, load_path_or_dict: Any, exact_match: bool = True, device: Any = "auto") -> None:
        """SB3's ``set_parameters``, with the ``"jax"`` entry restored by :func:`restore_state` (``exact_match``: a
        zip without it is refused)."""
        if isinstance(load_path_or_dict, dict):
            params = dict(load_path_or_dict)
        else:  # a zip (path or handle), as SB3 accepts
            _, loaded, _ = load_from_zip_file(load_path_or_dict, device=device, load_data=False)
            params = dict(loaded or {})
        state = params.pop(JAX_PARAMS, None)
        super().set_parameters(params, exact_match=exact_match, device=device)
        if state is None:
            if exact_match:
                raise JaxStateError(f"no {JAX_PARAMS!r} parameters to load into {type(self).__name__} (not one of its "
                                 "zips)")
            return
        restore_state(self, state, f"{type(self).__name__} parameters")

    @classmethod
    def load(cls, path: Any, env: Any = None, device: Any = "auto", custom_objects: dict[str, Any] | None = None,
             print_system_info: bool = False, force_reset: bool = True, **kwargs: Any) -> Any:
        """SB3's ``load``, after checking what SB3 would act on unchecked (:func:`check_zip_settings`); a setting
        that still fails to build the model is refused in one line (:class:`CorruptFileError`)."""
        from furl_wrappers.serialization import read_model_zip

        raw, label = read_model_zip(path)
        check_zip_settings(raw, label, custom_objects or {}, getattr(cls, "extra_param_files", ()))
        try:
            return super().load(io.BytesIO(raw), env=env, device=device, custom_objects=custom_objects,
                                print_system_info=print_system_info, force_reset=force_reset, **kwargs)
        except JaxStateError:
            raise
        except (AssertionError, TypeError, ZeroDivisionError, KeyError, AttributeError, IndexError, OverflowError,
                MemoryError, RuntimeError) as err:  # sbx/JAX building from the file's settings (RuntimeError: XLA's)
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise CorruptFileError(f"{label!r}: its settings do not build a {cls.__name__} ({type(err).__name__}: "
                                   f"{first})") from None


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_zip_settings(raw: bytes, label: str, custom: dict[str, Any], extra_files: tuple[str, ...] = ()) -> None:
    """Refuse an sbx zip whose parameter files or settings SB3 and sbx would act on unchecked: a ``.pth``/``.pt``
    entry besides ``jax.pth``, an empty ``pytorch_variables.pth`` (SB3 sets any attribute named there) and
    ``extra_files`` (the relay's, checked by its own reader), or an entropy coefficient, target entropy, learning
    rate, policy delay or reset schedule that is not a valid value.

    Raises:
        UnsafeFileError: a parameter file holds pickled objects.
        CorruptFileError: naming the entry or setting and what would be valid.
    """
    import torch as th

    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        names = archive.namelist()
        allowed = _PARAM_FILES | set(extra_files)
        extra = sorted(n for n in names if n.endswith((".pth", ".pt")) and n not in allowed)
        if extra:
            raise CorruptFileError(f"{label!r}: entry {extra[0]!r} is not a parameter file of an sbx model (only "
                                   f"{', '.join(sorted(allowed))})")
        if "pytorch_variables.pth" in names:
            try:
                variables = th.load(io.BytesIO(archive.read("pytorch_variables.pth")), weights_only=True)
            except pickle.UnpicklingError:
                raise UnsafeFileError(f"{label!r}: pytorch_variables.pth holds pickled objects") from None
            except Exception as err:  # torch's reading errors: a damaged entry
                raise CorruptFileError(f"{label!r}: pytorch_variables.pth is not a tensor file "
                                       f"({type(err).__name__})") from None
            if variables not in ({}, None):
                raise CorruptFileError(f"{label!r}: pytorch_variables.pth names variables, which an sbx model has "
                                       "none of")
        info = archive.getinfo("data")
        if info.file_size > MAX_JSON_BYTES:
            raise CorruptFileError(f"{label!r}: 'data' unpacks to {info.file_size} bytes")
        data = loads_json(archive.read("data"), f"{label}:data")
    if not isinstance(data, dict):
        raise CorruptFileError(f"{label!r}: 'data' is not a mapping")
    value = {key: custom.get(key, data.get(key)) for key in ("ent_coef_init", "target_entropy", "learning_rate",
                                                              "initial_qf_learning_rate", "policy_delay",
                                                              "param_resets")}
    # a value still pickled (a trusted load without safe descriptions) is SB3's to unpickle: not checked here
    pickled = {key for key, item in value.items() if isinstance(item, dict) and ":serialized:" in item}
    ent = value["ent_coef_init"]
    if isinstance(ent, str):
        match = _AUTO.fullmatch(ent)
        valid = match is not None and (match.group(1) is None or _positive(_float(match.group(1)[1:])))
    else:
        valid = isinstance(ent, float) and _positive(ent)
    checks = {
        "ent_coef_init": ("'auto', 'auto_<positive number>' or a positive float", valid),
        "target_entropy": ("'auto' or a finite number", value["target_entropy"] == "auto"
                           or _finite(value["target_entropy"])),
        # 0 is allowed: rl-zoo's enjoy loads with learning_rate 0.0 (no training)
        "learning_rate": ("a non-negative number or a schedule", _positive(value["learning_rate"])
                          or (type(value["learning_rate"]) in (int, float) and value["learning_rate"] == 0)
                          or callable(value["learning_rate"])),
        "initial_qf_learning_rate": ("None or a positive number", value["initial_qf_learning_rate"] is None
                                     or _positive(value["initial_qf_learning_rate"])),
        "policy_delay": ("a positive integer", value["policy_delay"] is None
                         or (type(value["policy_delay"]) is int and value["policy_delay"] >= 1)),
        "param_resets": ("None or a list of step counts", value["param_resets"] is None
                         or (isinstance(value["param_resets"], list)
                             and all(type(v) is int and v >= 0 for v in value["param_resets"]))),
    }
    for key, (expected, ok) in checks.items():
        if not ok and key not in pickled:
            raise CorruptFileError(f"{label!r}: its {key} is {str(value[key])[:60]!r}, not {expected}")


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _finite(value: Any) -> bool:
    try:
        return not isinstance(value, (bool, str)) and value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
