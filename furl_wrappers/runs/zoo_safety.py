"""What the rl-zoo launcher reads from a logs folder, read without running code from it (unless ``--trusted``).

- Run files (``config.yml``, ``args.yml``): :class:`ZooYAMLLoader` instead of PyYAML's unsafe loader, a
  ``normalize`` string parsed, not ``eval``-ed, wrapper entries limited to wrapper classes; the config strings
  ``train`` would ``eval`` through :func:`config_eval`.
- Model zips, for every algorithm rl-zoo knows: :func:`guarded` classes save them with the pickle-free entry of
  :mod:`furl_wrappers.serialization` (final model, best model, checkpoints) and load them from it, so ``enjoy``,
  ``train -i`` and ``--load-best``/``--load-checkpoint`` unpickle nothing; a zip without the entry (trained by
  plain ``rl_zoo3.train``, downloaded, tampered with) is refused.
- Pickles rl-zoo reads beside a run (``vecnormalize.pkl``, ``replay_buffer.pkl``) are refused
  (:func:`guard_pickles`): they cannot be rebuilt without unpickling.

``--trusted`` (``trusted=True``) restores SB3's and rl-zoo's own loading of zips and pickles, which runs code
from the files: only for runs you made. Every refusal is one line naming the file.

Example:
    >>> yaml.load("!!python/tuple [1, 2]", Loader=ZooYAMLLoader)
    (1, 2)
    >>> yaml.load("!!python/object/apply:os.system ['echo hi']", Loader=ZooYAMLLoader)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    furl_wrappers.runs.zoo_safety.UnsafeYAMLError: <unicode string>, line 1: YAML tag '!!python/object/apply:os...
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import os
import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import IO, Any

import yaml

from furl_wrappers import serialization
from furl_wrappers._atomic import write_to
from furl_wrappers._safe_files import UnsafeFileError
from furl_wrappers.json_codec import resolve_class
from furl_wrappers.runs.safe_eval import safe_eval
from furl_wrappers.runs.zoo_config import ConfigError

__all__ = ["UnsafeYAMLError", "ZooYAMLLoader", "ZooYAML", "config_eval", "TRUSTED_FLAG", "WRAPPER_ROOTS",
           "guarded", "guard_pickles"]

#: the launcher's opt-in to SB3's and rl-zoo's unpickling (stripped before rl-zoo parses its arguments)
TRUSTED_FLAG = "--trusted"
#: where a run file's ``env_wrapper``/``vec_env_wrapper`` classes may come from without ``--trusted``
WRAPPER_ROOTS = ("furl_wrappers", "gymnasium.wrappers", "stable_baselines3.common", "sb3_contrib.common",
                 "rl_zoo3.wrappers")
_PUBLIC = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # no leading underscore: no __main__, no private modules
_TRUST = f"pass {TRUSTED_FLAG} to load it with unpickling, which runs code from the file, if you made it yourself"


# ------------------------------------------------------------------------------------ run files, loaded safely
class UnsafeYAMLError(ConfigError):
    """A run file holds a YAML tag or a ``normalize`` expression that would run code."""


_NAME_TAG = "tag:yaml.org,2002:python/name:"
_ORDERED_DICT_TAG = "tag:yaml.org,2002:python/object/apply:collections.OrderedDict"
_NAME_BASES_DOC = "torch.nn modules, torch.optim optimizers, SB3 policies and replay buffers"
_ALLOWED = (f"plain YAML, !!python/tuple, !!python/object/apply:collections.OrderedDict (a list of [key, value] "
            f"pairs) and !!python/name: of {_NAME_BASES_DOC} (what rl-zoo writes)")


class ZooYAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus the tags rl-zoo writes into ``config.yml``/``args.yml``: ``OrderedDict`` (its
    hyperparameters and arguments), tuples, and classes by name (``policy_kwargs``' ``activation_fn``, ...),
    resolved only inside stable_baselines3, sb3_contrib, furl_wrappers, torch.nn and torch.optim
    (the rules of :mod:`furl_wrappers.serialization`). Any other tag raises :class:`UnsafeYAMLError`; nothing is called
    but ``OrderedDict`` and ``tuple``. ``env_wrapper``/``vec_env_wrapper`` entries, which ``enjoy`` imports and
    calls with the file's keyword arguments, must name Gymnasium / SB3 vector-env wrapper classes under
    :data:`WRAPPER_ROOTS` (unless :attr:`trusted_classes`: ``--trusted``)."""

    #: any importable name in ``env_wrapper``/``vec_env_wrapper`` (``--trusted``; the hand-over sets it)
    trusted_classes = False

    def _where(self, node: yaml.Node) -> str:
        return f"{self.name}, line {node.start_mark.line + 1}"

    def _refuse(self, node: yaml.Node) -> Any:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise UnsafeYAMLError(f"{self._where(node)}: YAML tag {tag!r} is refused; allowed: {_ALLOWED}")

    def _tuple(self, node: yaml.Node) -> tuple:
        if not isinstance(node, yaml.SequenceNode):
            self._refuse(node)
        return tuple(self.construct_sequence(node, deep=True))

    def _ordered_dict(self, node: yaml.Node) -> OrderedDict:
        args = self.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else None
        pairs = args[0] if args and len(args) == 1 and isinstance(args[0], list) else None
        if pairs is None or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise UnsafeYAMLError(f"{self._where(node)}: !!python/object/apply:collections.OrderedDict must hold one "
                                  "list of [key, value] pairs, as rl-zoo writes it")
        try:
            return OrderedDict((key, value) for key, value in pairs)
        except TypeError:  # an unhashable key
            raise UnsafeYAMLError(f"{self._where(node)}: an OrderedDict key is not hashable") from None

    def _class(self, suffix: str, node: yaml.Node) -> type:
        import torch
        from stable_baselines3.common.buffers import ReplayBuffer
        from stable_baselines3.common.policies import BasePolicy

        module, _, name = suffix.rpartition(".")
        bases = (torch.nn.Module, torch.optim.Optimizer, BasePolicy, ReplayBuffer)
        try:  # imports a module only under the allowed roots; refuses functions (os.system) and other classes
            return resolve_class(f"{module}:{name}", bases)
        except (ImportError, ValueError) as err:
            raise UnsafeYAMLError(f"{self._where(node)}: !!python/name:{suffix} is refused ({err}); allowed: "
                                  f"{_NAME_BASES_DOC}") from None

    def construct_document(self, node: yaml.Node) -> Any:
        data = super().construct_document(node)
        if isinstance(data, dict) and isinstance(data.get("normalize"), str):
            # enjoy eval()s this string (rl_zoo3.utils.get_saved_hyperparams): parsed in the restricted grammar
            data["normalize"] = safe_eval(data["normalize"], f"{self.name}: normalize", error=UnsafeYAMLError)
        if isinstance(data, dict) and not self.trusted_classes:
            for key in ("env_wrapper", "vec_env_wrapper"):
                self._check_wrappers(key, data.get(key))
        return data

    def _check_wrappers(self, key: str, spec: Any) -> None:
        """rl-zoo's ``get_wrapper_class`` imports any module and calls any callable a run file names (a planted
        ``{pydoc.pipepager: {cmd: ...}}`` runs a shell command): only wrapper classes under the roots pass."""
        import gymnasium as gym
        from stable_baselines3.common.vec_env import VecEnvWrapper

        base = VecEnvWrapper if key == "vec_env_wrapper" else gym.Wrapper
        for item in spec if isinstance(spec, list) else [] if spec is None else [spec]:
            name = next(iter(item)) if isinstance(item, dict) and len(item) == 1 else item
            module, _, attr = name.rpartition(".") if isinstance(name, str) else ("", "", "")
            obj = None
            if any(module == r or module.startswith(r + ".") for r in WRAPPER_ROOTS) and all(
                    map(_PUBLIC.fullmatch, name.split("."))):
                with contextlib.suppress(ImportError):
                    obj = getattr(importlib.import_module(module), attr, None)
            if not (isinstance(obj, type) and issubclass(obj, base)):
                raise UnsafeYAMLError(f"{self.name}: {key} {str(name)[:80]!r} is refused; allowed: "
                                      f"{base.__module__.split('.')[0]} {base.__name__} subclasses in "
                                      f"{', '.join(WRAPPER_ROOTS)} (or pass {TRUSTED_FLAG} if you made the run)")


ZooYAMLLoader.add_constructor(None, ZooYAMLLoader._refuse)  # SafeLoader's fallback for every unknown tag
ZooYAMLLoader.add_constructor("tag:yaml.org,2002:python/tuple", ZooYAMLLoader._tuple)
ZooYAMLLoader.add_constructor(_ORDERED_DICT_TAG, ZooYAMLLoader._ordered_dict)
ZooYAMLLoader.add_multi_constructor(_NAME_TAG, ZooYAMLLoader._class)


def _zoo_load(stream: Any, Loader: Any = None) -> Any:
    return yaml.load(stream, Loader=ZooYAMLLoader)  # the loader above, whichever rl-zoo asked for


def _zoo_load_all(stream: Any, Loader: Any = None) -> Iterator[Any]:
    return yaml.load_all(stream, Loader=ZooYAMLLoader)


class ZooYAML:
    """``yaml`` as rl-zoo's modules see it during the hand-over: every loader they can name is
    :class:`ZooYAMLLoader` (``yaml.load(f, Loader=yaml.UnsafeLoader)`` included); dumping is PyYAML's."""

    UnsafeLoader = Loader = FullLoader = ZooYAMLLoader
    load = unsafe_load = full_load = staticmethod(_zoo_load)
    load_all = unsafe_load_all = full_load_all = staticmethod(_zoo_load_all)

    def __getattr__(self, name: str) -> Any:
        return getattr(yaml, name)


def config_eval(text: str, *_: Any) -> Any:
    """What rl-zoo's ``train`` ``eval``s in a config (``policy_kwargs``, ``replay_buffer_class``/``_kwargs``,
    ``monitor_kwargs``, ``normalize`` strings), in :func:`~furl_wrappers.runs.safe_eval.safe_eval`'s grammar as
    ``furl train`` reads them; a lone dotted name is read as a replay buffer class.

    Raises:
        ConfigError: anything outside the grammar, naming the piece and what is allowed.
    """
    try:
        return safe_eval(text, "config string", error=ConfigError)
    except ConfigError:
        if not re.fullmatch(r"\s*[A-Za-z_][\w.]*\s*", text):
            raise
        return safe_eval(text, "replay_buffer_class", error=ConfigError)


# ------------------------------------------------------------------------------------------ model zips, pickles
def _save_with_entry(base: type[Any]) -> Any:
    """``base.save`` writing SB3's zip plus :data:`~furl_wrappers.serialization.SAFE_ENTRY` (a path gets ``.zip``
    when it has none and is written atomically, as :func:`~furl_wrappers.serialization.save_model` does)."""

    def save(self: Any, path: str | os.PathLike | IO[bytes], exclude: Any = None, include: Any = None) -> None:
        raw = io.BytesIO()
        base.save(self, raw, exclude, include)
        data = serialization.with_safe_entry(raw.getvalue(), self)
        write_to(path, ".zip", lambda handle: handle.write(data))

    save.__doc__ = f"``{base.__name__}.save`` plus the pickle-free entry (rl-zoo's model, best model, checkpoints)."
    return save


def guarded(cls: type, trusted: bool = False) -> type:
    """``cls`` (an SB3 algorithm) as the launcher registers it in rl-zoo: its zips carry the pickle-free entry and
    load from it, its SB3 replay-buffer pickles are refused.

    - ``save``: SB3's zip plus the entry (:func:`~furl_wrappers.serialization.with_safe_entry`); the relay agents
      keep their own ``save``, which adds it already (nothing is done twice).
    - ``load``: :func:`~furl_wrappers.serialization.load_model`'s pickle-free load (the instance is of this class,
      so a continued run saves through it too); relay agents get ``trusted`` passed on.
    - ``load_replay_buffer``: refused (SB3 unpickles the file) unless ``trusted``.

    Args:
        cls: the algorithm class.
        trusted: load zips and replay buffers with SB3's unpickling (``--trusted``).

    Example:
        >>> from stable_baselines3 import SAC
        >>> from furl_wrappers.relay import RelayPolicy
        >>> guarded(SAC).__name__, guarded(SAC).save is SAC.save, guarded(RelayPolicy).save is RelayPolicy.save
        ('SAC', False, True)
    """
    return _guarded(cls, bool(trusted))  # one class per (cls, trusted), however ``trusted`` is passed


@functools.lru_cache(maxsize=None)
def _guarded(cls: type[Any], trusted: bool) -> type:
    own = "trusted" in inspect.signature(cls.load).parameters  # the relay agents: safe save and load of their own

    class Guarded(cls):
        @classmethod
        def load(klass, path: Any, env: Any = None, custom_objects: Any = None, **kwargs: Any) -> Any:
            if own:
                return super().load(path, env=env, trusted=trusted, custom_objects=custom_objects, **kwargs)
            raw, label = serialization.read_model_zip(path)  # what load_model does, with this class's load
            custom = {} if trusted else serialization.safe_custom_objects(raw, label, cls)
            return super().load(io.BytesIO(raw), env=env, custom_objects={**custom, **(custom_objects or {})},
                                **kwargs)

        def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
            if not trusted:  # rl-zoo's train -i loads replay_buffer.pkl beside the zip: SB3 unpickles it
                raise UnsafeFileError(f"{os.fspath(path)!r}: SB3's replay buffer file is a pickle, so it is not "
                                      f"loaded (continuing without it: move it away); {_TRUST}")
            super().load_replay_buffer(path, truncate_last_traj)

    if not own:
        Guarded.save = _save_with_entry(cls)
    Guarded.__name__, Guarded.__qualname__, Guarded.__doc__ = cls.__name__, cls.__qualname__, cls.__doc__
    return Guarded


def _refuse_vec_normalize(load_path: str, venv: Any) -> Any:
    raise UnsafeFileError(f"{os.fspath(load_path)!r}: VecNormalize statistics (rl-zoo's normalize) are a pickle, so "
                          f"they are not loaded (without {TRUSTED_FLAG} only runs trained without normalize load); "
                          f"{_TRUST}")


@contextlib.contextmanager
def guard_pickles(trusted: bool = False) -> Iterator[None]:
    """Unless ``trusted``, ``VecNormalize.load`` refuses its file, restored on exit: rl-zoo's ``enjoy`` (a run
    whose config asks for ``normalize``) and ``train`` (``-i``, and even without it ``<env>/vecnormalize.pkl``
    under the working directory) load ``vecnormalize.pkl`` with it, which unpickles a whole ``VecNormalize``
    (spaces, RNG states, running statistics): no plain arrays to rebuild it from."""
    if trusted:
        yield
        return
    from unittest import mock

    from stable_baselines3.common.vec_env import VecNormalize

    with mock.patch.object(VecNormalize, "load", staticmethod(_refuse_vec_normalize)):
        yield
