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

from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import torch
from flax import linen
from flax.training.train_state import TrainState
from stable_baselines3.common.save_util import load_from_zip_file

from furl_wrappers._safe_files import CorruptFileError

__all__ = ["JAX_PARAMS", "JaxParameters", "JaxStateError", "state_attributes", "state_tensors", "restore_state"]

#: the parameter dict (``jax.pth`` in a model zip) holding the JAX state
JAX_PARAMS = "jax"
#: the holders of JAX state: the model itself and its policy
_OWNERS = ("model", "policy")
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

    Raises:
        JaxStateError: a leaf is missing, unexpected, not a tensor, or of another shape or dtype than the model's.
    """
    named, treedef = _flat(model)
    expected = {name for name, _ in named}
    if not isinstance(tensors, dict) or set(tensors) != expected:
        given = set(tensors) if isinstance(tensors, dict) else set()
        odd = sorted(given - expected)[:1] or sorted(expected - given)[:1]
        raise JaxStateError(f"{label}: its JAX parameters do not fit a {type(model).__name__} built with its settings "
                         f"({'unexpected' if odd and odd[0] in given else 'missing'} {odd[0] if odd else '?'!r})")
    leaves = []
    for name, template in named:
        value = tensors[name]
        if not isinstance(value, torch.Tensor):
            raise JaxStateError(f"{label}: JAX parameter {name!r} is a {type(value).__name__}, not a tensor")
        array = value.detach().cpu().numpy()
        want = np.asarray(template)
        # a fresh TrainState counts steps in a Python int (int64 here), a trained one in an int32 array
        loose = not isinstance(template, jax.Array)
        same = array.dtype == want.dtype or (loose and array.dtype.kind == want.dtype.kind)
        if array.shape != want.shape or not same:
            raise JaxStateError(f"{label}: JAX parameter {name!r} is {array.dtype}{list(array.shape)}, the model's "
                             f"{want.dtype}{list(want.shape)}")
        leaves.append(jax.device_put(array))
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
