"""rl-zoo-style YAML configs: loading and validation, building envs and models (the launcher: ``furl_wrappers.zoo``).

``zoo_configs/<method>.yml`` hold one block per env id (``furl/<task>-v3`` and ``furl/<task>-v3-random-goal``) in
rl-zoo's format. Methods whose algorithm is SAC (or sb3-contrib's TQC, CrossQ) run with rl-zoo directly (through
the launcher below their zips carry the pickle-free entry its ``enjoy`` loads without ``--trusted``); the relay
methods need ``RelayPolicy`` (or ``RelayTQC``, ``RelayCrossQ``, ``RelayDrQ``) and the pixel baseline needs ``DrQ``,
which rl-zoo cannot import by name, so ``python -m furl_wrappers.zoo`` is a launcher
(:mod:`furl_wrappers.runs.zoo_launcher`) that adds them to ``rl_zoo3.utils.ALGOS`` as ``"relay"`` (``"relay_tqc"``,
``"relay_crossq"``, ``"relay_drq"``, ``"drq"``; the JAX backbones of the jax extra as ``"sac_sbx"``, ``"relay_sbx"``,
``"crossq_sbx"``, ``"relay_crossq_sbx"``, ``"tqc_sbx"``, ``"relay_tqc_sbx"``), with samplers for ``-optimize``, and
hands over to rl-zoo's own ``train``/``enjoy`` (loading every algorithm's model zips without unpickling;
``--trusted`` opts in)::

    python -m furl_wrappers.zoo train --algo relay --env furl/drawer-open-v3 --gym-packages furl_wrappers \\
        --conf-file zoo_configs/furl.yml
    python -m furl_wrappers.zoo enjoy --algo relay --env furl/drawer-open-v3 --gym-packages furl_wrappers -f logs/

``furl train`` reads the same files through :func:`load_config`.

Example:
    >>> cfg = load_config("furl", "furl/drawer-open-v3")
    >>> cfg["learning_rate"], cfg["relay_threshold"]
    (0.0001, 2500)
"""

from __future__ import annotations

import copy
import difflib
import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any, Callable

import yaml
from stable_baselines3.common.buffers import ReplayBuffer

from furl_wrappers.callbacks import RewardAlignmentCallback
from furl_wrappers.runs.safe_eval import safe_eval
from furl_wrappers.validation import init_keywords
from furl_wrappers.vlm_buffer import VLMReplayBuffer

__all__ = [
    "METHODS",
    "ALGOS",
    "RELAY_ALGOS",
    "JAX_ALGOS",
    "missing_extra",
    "CONFIG_DIR",
    "ConfigError",
    "config_path",
    "load_config",
    "algo_class",
    "split_config",
    "make_env_fn_wrapper",
    "make_vec_wrapper",
]

#: The paper's methods: name → (algorithm, Table-1 row).
METHODS: dict[str, dict[str, str]] = {
    "sac": {"algo": "sac", "row": "SAC"},
    "vlm_rm": {"algo": "sac", "row": "VLM-RMs"},
    "vlm_rm_gb": {"algo": "sac", "row": "VLM-RMs-GB"},
    "vlm": {"algo": "sac", "row": "LIV"},
    "vlm_proj": {"algo": "sac", "row": "LIV-Proj"},
    "relay": {"algo": "relay", "row": "Relay"},
    "furl_no_goal": {"algo": "relay", "row": "FuRL w/o goal img"},
    "furl": {"algo": "relay", "row": "FuRL"},
    "vlm_clip": {"algo": "sac", "row": "CLIP reward (Table 3)"},
    "furl_clip": {"algo": "relay", "row": "CLIP-FuRL (Table 3)"},
    # beyond the paper: the same methods over sb3-contrib's TQC and CrossQ (both relay agents of that algorithm)
    "tqc": {"algo": "tqc", "row": "TQC"},
    "furl_tqc": {"algo": "relay_tqc", "row": "FuRL (TQC)"},
    "crossq": {"algo": "crossq", "row": "CrossQ"},
    "furl_crossq": {"algo": "relay_crossq", "row": "FuRL (CrossQ)"},
    # paper §5.4: pixel observations, DrQ as the backbone
    "drq": {"algo": "drq", "row": "DrQ (pixels)"},
    "furl_pixels": {"algo": "relay_drq", "row": "FuRL (pixels, DrQ)"},
    # the JAX backbones (sbx; the jax extra): the same methods, far cheaper updates
    "sac_sbx": {"algo": "sac_sbx", "row": "SAC (sbx)"},
    "furl_sbx": {"algo": "relay_sbx", "row": "FuRL (sbx)"},
    "crossq_sbx": {"algo": "crossq_sbx", "row": "CrossQ (sbx)"},
    "furl_crossq_sbx": {"algo": "relay_crossq_sbx", "row": "FuRL (CrossQ, sbx)"},
}

#: ``_algo`` names → (module, class); the ``relay*`` ones are FuRL's relay agents (rl-zoo does not know them)
ALGOS: dict[str, tuple[str, str]] = {
    "sac": ("stable_baselines3", "SAC"),
    "tqc": ("sb3_contrib", "TQC"),
    "crossq": ("sb3_contrib", "CrossQ"),
    "relay": ("furl_wrappers.relay", "RelayPolicy"),
    "relay_tqc": ("furl_wrappers.backbones", "RelayTQC"),
    "relay_crossq": ("furl_wrappers.backbones", "RelayCrossQ"),
    "drq": ("furl_wrappers.drq", "DrQ"),
    "relay_drq": ("furl_wrappers.backbones", "RelayDrQ"),
    "sac_sbx": ("furl_wrappers.jax_backbones", "SbxSAC"),
    "crossq_sbx": ("furl_wrappers.jax_backbones", "SbxCrossQ"),
    "tqc_sbx": ("furl_wrappers.jax_backbones", "SbxTQC"),
    "relay_sbx": ("furl_wrappers.jax_backbones", "RelaySbxSAC"),
    "relay_crossq_sbx": ("furl_wrappers.jax_backbones", "RelaySbxCrossQ"),
    "relay_tqc_sbx": ("furl_wrappers.jax_backbones", "RelaySbxTQC"),
}
RELAY_ALGOS = tuple(name for name in ALGOS if name.startswith("relay"))
#: the algorithms of the optional ``jax`` extra (sbx)
JAX_ALGOS = tuple(name for name, (module, _) in ALGOS.items() if module == "furl_wrappers.jax_backbones")
_JAX_INSTALL = 'pip install "furl_wrappers[jax]"'


def _config_dir() -> Path:
    """The zoo configs: inside the package in an installed wheel, at the top of the repository in a checkout."""
    package = Path(__file__).resolve().parent.parent  # furl_wrappers/
    return package / "zoo_configs" if (package / "zoo_configs").is_dir() else package.parent / "zoo_configs"


CONFIG_DIR = _config_dir()

# rl-zoo keys that are not algorithm arguments
_ZOO_KEYS = {"n_timesteps", "policy", "env_wrapper", "vec_env_wrapper", "callback", "env_kwargs", "normalize",
             "frame_stack", "monitor_kwargs", "n_envs", "policy_kwargs", "replay_buffer_class",
             "replay_buffer_kwargs"}
_TYPES: dict[str, tuple[type, ...]] = {
    "n_timesteps": (int, float), "learning_rate": (int, float), "buffer_size": (int,), "learning_starts": (int,),
    "batch_size": (int,), "tau": (int, float), "gamma": (int, float), "train_freq": (int, list),
    "gradient_steps": (int,), "target_entropy": (int, float, str), "policy": (str,), "policy_kwargs": (str, dict),
    "relay_threshold": (int,), "relay_lengths": (list,), "relay_noise": (int, float), "align": (bool,),
    "alignment_kwargs": (dict,), "n_envs": (int,), "env_kwargs": (dict,), "ent_coef": (str, int, float),
    "policy_delay": (int,), "top_quantiles_to_drop_per_net": (int,), "image_pad": (int,),
    "qf_learning_rate": (int, float),
}


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and the valid choices."""


def config_path(method: str) -> Path:
    """``zoo_configs/<method>.yml`` for a method name, or ``method`` itself when it is a path to a YAML file."""
    candidate = Path(method)
    if candidate.suffix in (".yml", ".yaml"):
        if not candidate.exists():
            raise ConfigError(f"config file {method!r} does not exist")
        return candidate
    if method not in METHODS:
        close = difflib.get_close_matches(method, list(METHODS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown method {method!r}.{hint} Valid methods: {', '.join(METHODS)}")
    return CONFIG_DIR / f"{method}.yml"


def _have_sbx() -> bool:
    return importlib.util.find_spec("sbx") is not None


def missing_extra(name: str) -> str | None:
    """What to install for algorithm ``name`` (``None``: nothing is missing): the JAX ones need the jax extra."""
    if name not in JAX_ALGOS or _have_sbx():
        return None
    return f"algorithm {name!r} runs on JAX (sbx), which is not installed: {_JAX_INSTALL}"


def algo_class(name: str) -> type:
    """``"sac"`` → SB3 ``SAC``; ``"relay"`` → :class:`~furl_wrappers.relay.RelayPolicy`; ``"tqc"``, ``"crossq"``
    → sb3-contrib's; ``"drq"`` → :class:`~furl_wrappers.drq.DrQ`; ``"relay_tqc"``, ``"relay_crossq"``,
    ``"relay_drq"`` → :mod:`furl_wrappers.backbones`' relay agents; ``"sac_sbx"``, ``"crossq_sbx"``, ``"tqc_sbx"``,
    ``"relay_sbx"``, ``"relay_crossq_sbx"``, ``"relay_tqc_sbx"`` → :mod:`furl_wrappers.jax_backbones`' (the jax
    extra).

    Raises:
        ConfigError: an unknown name (listing the valid ones), or a JAX one without the extra (saying what to
            install).
    """
    if name not in ALGOS:
        close = difflib.get_close_matches(name, list(ALGOS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown algorithm {name!r}.{hint} Valid: {', '.join(ALGOS)}")
    missing = missing_extra(name)
    if missing:
        raise ConfigError(missing)
    module, attr = ALGOS[name]
    return getattr(importlib.import_module(module), attr)


def _valid_keys(algo: str) -> set[str]:
    cls = algo_class(algo)
    keys = init_keywords(cls)  # the constructor's own keywords (CrossQ takes no tau, though its base class does)
    if keys is None:
        keys = set()
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                keys |= set(inspect.signature(vars(klass)["__init__"]).parameters)
    return (keys | _ZOO_KEYS) - {"self", "env", "args", "kwargs", "_init_setup_model"}


def load_config(method: str, env_id: str, overrides: dict[str, Any] | None = None,
                algo: str | None = None) -> dict[str, Any]:
    """The validated hyperparameters of ``env_id`` in a method's YAML (a deep copy), with overrides applied.

    Raises:
        ConfigError: unknown method or env id, a mistyped key, or a value of the wrong type — naming the key and
            the valid choices.
    """
    path = config_path(method)
    try:
        blocks = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(blocks, dict):
        raise ConfigError(f"{path}: expected a mapping of env ids to hyperparameters")
    env_ids = [k for k in blocks if k != "defaults"]
    if env_id not in blocks:
        close = difflib.get_close_matches(env_id, env_ids, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{path.name} has no block for {env_id!r}.{hint} It covers: {', '.join(env_ids)}")
    config = copy.deepcopy(blocks[env_id])
    config.update(copy.deepcopy(overrides or {}))
    algo = algo or METHODS.get(path.stem, {}).get("algo") or ("relay" if "relay_threshold" in config else "sac")
    valid = _valid_keys(algo)
    for key, value in config.items():
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"{path.name} [{env_id}]: unknown key {key!r}.{hint} Valid keys for {algo}: "
                              f"{', '.join(sorted(valid))}")
        expected = _TYPES.get(key)
        if expected and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
            names = " or ".join(t.__name__ for t in expected)
            raise ConfigError(f"{path.name} [{env_id}]: {key} must be {names}, got {value!r} "
                              f"({type(value).__name__}); note YAML reads 1e-4 as a string: write 1.0e-4")
    if "n_timesteps" in config:
        config["n_timesteps"] = int(config["n_timesteps"])
    config["_algo"] = algo
    return config


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot import {dotted!r}: {exc}") from exc


def _wrapper_specs(spec: Any) -> list[tuple[Any, dict[str, Any]]]:
    """rl-zoo's wrapper format: a dotted path, ``{path: kwargs}``, or a list of those."""
    if spec is None:
        return []
    items = spec if isinstance(spec, list) else [spec]
    out: list[tuple[Any, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, str):
            out.append((_resolve(item), {}))
        elif isinstance(item, dict) and len(item) == 1:
            (name, kwargs), = item.items()
            out.append((_resolve(name), dict(kwargs or {})))
        else:
            raise ConfigError(f"bad wrapper entry {item!r}: use 'module.Class' or {{'module.Class': {{kwargs}}}}")
    return out


def make_env_fn_wrapper(spec: Any) -> Callable | None:
    """A ``wrapper_class`` for ``make_vec_env`` from the YAML ``env_wrapper`` entry (or ``None``)."""
    specs = _wrapper_specs(spec)
    if not specs:
        return None

    def wrap(env: Any) -> Any:
        for cls, kwargs in specs:
            env = cls(env, **kwargs)
        return env

    return wrap


def make_vec_wrapper(spec: Any, **override: Any) -> Callable | None:
    """A function applying the YAML ``vec_env_wrapper`` entries; ``override`` updates the kwargs of each."""
    specs = _wrapper_specs(spec)
    if not specs:
        return None

    def wrap(venv: Any) -> Any:
        for cls, kwargs in specs:
            accepted = inspect.signature(cls.__init__).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
            venv = cls(venv, **{**kwargs, **{k: v for k, v in override.items() if takes_any or k in accepted}})
        return venv

    return wrap


# ReplayBuffer arguments SB3 fills in itself
_BUFFER_INTERNAL_KEYS = {"buffer_size", "observation_space", "action_space", "device", "n_envs", "env"}


def _check_keys(what: str, given: Any, cls: type, drop: set[str]) -> None:
    """Refuse a key of ``given`` (the ``**kwargs`` of ``cls``) that ``cls`` does not take: one line naming it."""
    valid = init_keywords(cls)
    if not isinstance(given, dict) or valid is None:
        return  # the constructor reports a wrong type itself
    valid -= drop
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(str(key), sorted(valid), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{what}: unknown key {key!r}{hint} (valid: {', '.join(sorted(valid))})")


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(algorithm kwargs, zoo settings)``: ``policy_kwargs``/``replay_buffer_*`` strings are evaluated as rl-zoo
    does, in the restricted grammar of :mod:`furl_wrappers.runs.safe_eval` (no ``eval``); the keys of
    ``alignment_kwargs`` and ``replay_buffer_kwargs`` are checked against the classes that take them.

    Raises:
        ConfigError: an expression outside that grammar, or an unknown nested key (naming it and the valid ones).
    """
    algo_kwargs, zoo = {}, {}
    for key, value in config.items():
        if key in ("n_timesteps", "env_wrapper", "vec_env_wrapper", "callback", "env_kwargs", "normalize",
                   "frame_stack", "monitor_kwargs", "n_envs", "_algo"):
            zoo[key] = value
        elif key in ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs") and isinstance(value, str):
            algo_kwargs[key] = safe_eval(value, key, error=ConfigError)  # rl-zoo evals these strings
        else:
            algo_kwargs[key] = value
    if "alignment_kwargs" in algo_kwargs:
        _check_keys("alignment_kwargs", algo_kwargs["alignment_kwargs"], RewardAlignmentCallback, {"vlm_reward"})
    if algo_kwargs.get("replay_buffer_kwargs"):
        buffer = algo_kwargs.get("replay_buffer_class")
        if buffer is None:

            buffer = VLMReplayBuffer if config.get("_algo") in RELAY_ALGOS else ReplayBuffer
        if isinstance(buffer, type):
            _check_keys("replay_buffer_kwargs", algo_kwargs["replay_buffer_kwargs"], buffer, _BUFFER_INTERNAL_KEYS)
    return algo_kwargs, zoo
