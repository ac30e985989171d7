"""The rl-zoo launcher (``python -m furl_wrappers.zoo {train,enjoy} [--trusted] ...``): rl-zoo's own
``train``/``enjoy``, with what it lacks for FuRL added and what is unsafe in it replaced, for the duration of the
hand-over only.

- ``relay`` (``relay_tqc``, ``relay_crossq``, ``relay_drq``) and ``drq`` join ``rl_zoo3.utils.ALGOS``, and with the
  jax extra the sbx algorithms (``sac_sbx``, ``crossq_sbx``, ``tqc_sbx``, ``relay_sbx``, ``relay_crossq_sbx``,
  ``relay_tqc_sbx``; without it, naming one exits 2 saying what to install).
- ``-optimize`` gets samplers for them (and ``crossq``): rl-zoo's SAC (TQC) sampler plus, for the relay agents,
  FuRL's own knobs (:func:`sample_params`); ``--trial-id`` converts a trial back (:func:`convert_params`).
- ``lin_<v>`` schedules become SB3's ``LinearSchedule`` (same values), which a model zip's pickle-free entry
  describes, so a zip trained with them loads without ``--trusted``.
- Nothing in a logs folder runs code (:mod:`furl_wrappers.runs.zoo_safety`): ``config.yml``/``args.yml`` are read by
  :class:`ZooYAMLLoader` (a ``normalize`` string parsed, not ``eval``-ed; ``env_wrapper``/``vec_env_wrapper``
  only wrapper classes of furl_wrappers, Gymnasium, SB3, sb3-contrib, rl-zoo); every algorithm's model zips
  (final, best, checkpoints) are written with the pickle-free entry and loaded from it by ``enjoy`` and
  ``train -i``, a zip without it (trained by plain ``rl_zoo3.train``) refused; ``vecnormalize.pkl`` and
  ``replay_buffer.pkl`` are refused. ``--trusted`` (stripped before rl-zoo sees the arguments) lifts these: SB3's
  and rl-zoo's unpickling and any wrapper, which run code from the files: only for runs you made. A refused file
  exits with status 2 and one line naming it. ``train`` parses the config strings rl-zoo would ``eval``
  (``policy_kwargs``, ...) the way ``furl train`` does (:func:`config_eval`).
- ``--seed`` selects the task instance and the YAML's ``env_kwargs`` are kept (:func:`launcher_args`).

Example:
    >>> launcher_args(["--env", "furl/reach-v3", "--seed", "1"])
    ['--env', 'furl/reach-v3', '--seed', '1', '--env-kwargs', 'seed:1']
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from furl_wrappers.registration import RANDOM_GOAL_SUFFIX
from furl_wrappers.runs.protocol import eval_seed
from furl_wrappers.runs.zoo_config import ALGOS, RELAY_ALGOS, ConfigError, algo_class, missing_extra
from furl_wrappers.runs.zoo_safety import (
    TRUSTED_FLAG,
    UnsafeYAMLError,
    ZooYAML,
    ZooYAMLLoader,
    config_eval,
    guard_pickles,
    guarded,
)
from furl_wrappers.serialization import CorruptFileError, UnsafeFileError
from furl_wrappers.validation import check_number

__all__ = ["UnsafeYAMLError", "ZooYAMLLoader", "config_eval", "BACKBONES", "sample_params", "convert_params", "tunable",
           "linear_schedule", "handover", "launcher_args", "USAGE", "main"]


# --------------------------------------------------------------------------------------------------- schedules
def linear_schedule(initial_value: float | str) -> Any:
    """rl-zoo's ``lin_<v>``: ``v * progress_remaining``, as SB3's ``LinearSchedule(v, 0, 1)`` (rl-zoo's own
    ``SimpleLinearSchedule`` has no pickle-free description, so a relay zip holding one would need ``--trusted``)."""
    from stable_baselines3.common.utils import LinearSchedule

    return LinearSchedule(float(initial_value), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------- samplers
#: algorithm → the rl-zoo sampler its backbone shares ("tqc": SAC's plus quantiles; "crossq": SAC's without tau)
BACKBONES = {"relay": "sac", "relay_tqc": "tqc", "relay_crossq": "crossq", "relay_drq": "sac", "drq": "sac",
             "crossq": "crossq", "sac_sbx": "sac", "relay_sbx": "sac", "crossq_sbx": "crossq",
             "relay_crossq_sbx": "crossq", "tqc_sbx": "tqc", "relay_tqc_sbx": "tqc"}
_FURL_PARAMS = ("relay_threshold", "relay_length", "relay_noise", "rho", "alignment_lr", "alignment_margin",
                "alignment_goal_margin")


def _suggest_furl(trial: Any) -> dict[str, Any]:
    """FuRL's knobs, around the paper's values (in brackets). Tuning ρ is fair: a trial's score is the evaluation
    env's Monitor return, the task reward (the VLM term is added by the vector wrapper, outside Monitor). The
    alignment knobs are unused by configs with ``align: false`` (the Relay baseline)."""
    return {
        "relay_threshold": trial.suggest_int("relay_threshold", 500, 10_000, log=True),  # [2500]
        "relay_length": trial.suggest_categorical("relay_length", [25, 50, 100]),  # [50]: lengths 50, 100, 150, 200
        "relay_noise": trial.suggest_float("relay_noise", 0.05, 0.5),  # [0.2]
        "rho": trial.suggest_float("rho", 0.01, 0.25, log=True),  # [0.05]
        "alignment_lr": trial.suggest_float("alignment_lr", 1e-5, 1e-3, log=True),  # [1e-4]
        "alignment_margin": trial.suggest_float("alignment_margin", 0.02, 0.5, log=True),  # [0.1]
        "alignment_goal_margin": trial.suggest_float("alignment_goal_margin", 0.1, 0.5),  # [0.25]
    }


def _furl_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    unit = int(params["relay_length"])
    return {"relay_threshold": int(params["relay_threshold"]), "relay_lengths": [unit, 2 * unit, 3 * unit, 4 * unit],
            "relay_noise": float(params["relay_noise"]),
            "furl_tuning": {"rho": float(params["rho"]), "alignment_kwargs": {
                "lr": float(params["alignment_lr"]), "margin": float(params["alignment_margin"]),
                "goal_margin": float(params["alignment_goal_margin"])}}}


def sample_params(algo: str, trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo's sampler for ``algo`` (bind ``algo``: rl-zoo calls ``(trial, n_actions, n_envs, additional_args)``).

    Returns:
        The backbone's hyperparameters from rl-zoo's SAC (TQC) sampler; for a relay agent also ``relay_threshold``,
        ``relay_lengths`` and ``relay_noise``, and ``furl_tuning`` (ρ and the alignment's lr, margin, goal_margin,
        applied by :func:`tunable`).
    """
    from rl_zoo3 import hyperparams_opt

    base = BACKBONES[algo]
    sample = hyperparams_opt.sample_tqc_params if base == "tqc" else hyperparams_opt.sample_sac_params
    kwargs = sample(trial, n_actions, n_envs, additional_args)
    if base == "crossq":
        kwargs.pop("tau", None)  # CrossQ has no target network
    if algo in RELAY_ALGOS:
        kwargs.update(_furl_kwargs(_suggest_furl(trial)))
    return kwargs


def convert_params(algo: str, params: dict[str, Any]) -> dict[str, Any]:
    """A finished trial's ``params`` as hyperparameters: what :func:`sample_params` returned for it."""
    from rl_zoo3 import hyperparams_opt

    kwargs = hyperparams_opt.convert_offpolicy_params({k: v for k, v in params.items() if k not in _FURL_PARAMS})
    if BACKBONES[algo] == "crossq":
        kwargs.pop("tau", None)
    if algo in RELAY_ALGOS:
        kwargs.update(_furl_kwargs(params))
    return kwargs


@functools.lru_cache(maxsize=None)
def tunable(cls: type[Any]) -> type:
    """``cls`` (a relay agent) also taking ``furl_tuning={"rho": ..., "alignment_kwargs": {...}}``: settings that
    live outside its own arguments. ρ is the VLM reward's (set on the env's reward, which the buffer relabels with),
    the alignment entries update the YAML's ``alignment_kwargs`` instead of replacing them."""

    def __init__(self: Any, *args: Any, furl_tuning: dict[str, Any] | None = None, **kwargs: Any) -> None:
        tuning = dict(furl_tuning or {})
        rho, align = tuning.pop("rho", None), tuning.pop("alignment_kwargs", None)
        if tuning:
            raise ConfigError(f"furl_tuning: unknown key {sorted(tuning)[0]!r} (valid: alignment_kwargs, rho)")
        if align:
            kwargs["alignment_kwargs"] = {**(kwargs.get("alignment_kwargs") or {}), **align}
        cls.__init__(self, *args, **kwargs)
        if rho is not None:
            if self.vlm_reward is None:
                raise ConfigError("furl_tuning: rho needs the env's VLM reward (vec_env_wrapper VecFuzzyVLMReward)")
            self.vlm_reward.rho = check_number("furl_tuning rho", rho, low=0.0, hint="0.05 in the paper",
                                               error=ConfigError)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__doc__": cls.__doc__})


# --------------------------------------------------------------------------------------------------- hand-over
@contextlib.contextmanager
def handover(command: str, trusted: bool = False) -> Iterator[None]:
    """rl-zoo patched for ``train``/``enjoy`` (see the module docstring), restored on exit.

    Args:
        command: ``"train"`` (relay agents registered through :func:`tunable`) or ``"enjoy"``.
        trusted: ``--trusted``: model zips, ``vecnormalize.pkl`` and ``replay_buffer.pkl`` load with SB3's
            unpickling; otherwise zips load from their pickle-free entry (:func:`~.zoo_safety.guarded`)
            and the pickles are refused.
    """
    import rl_zoo3.enjoy
    import rl_zoo3.exp_manager
    import rl_zoo3.hyperparams_opt as opt
    import rl_zoo3.train
    import rl_zoo3.utils

    ours = [name for name in ALGOS if name not in rl_zoo3.utils.ALGOS and not missing_extra(name)]  # JAX: if installed
    algos = {**rl_zoo3.utils.ALGOS, **{name: algo_class(name) for name in ours}}
    if command == "train":  # optimize and --trial-id pass furl_tuning
        algos = {name: tunable(cls) if name in RELAY_ALGOS else cls for name, cls in algos.items()}
    algos = {name: guarded(cls, trusted) for name, cls in algos.items()}  # every algorithm, rl-zoo's own included
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(rl_zoo3.utils.ALGOS, algos))
        stack.enter_context(guard_pickles(trusted))
        stack.enter_context(mock.patch.object(ZooYAMLLoader, "trusted_classes", trusted))
        for table, make in ((opt.HYPERPARAMS_SAMPLER, sample_params), (opt.HYPERPARAMS_CONVERTER, convert_params)):
            stack.enter_context(mock.patch.dict(table, {a: functools.partial(make, a) for a in BACKBONES
                                                        if a not in table}))
        stack.enter_context(mock.patch.object(rl_zoo3.exp_manager, "eval", config_eval, create=True))
        stack.enter_context(mock.patch.object(rl_zoo3.exp_manager, "SimpleLinearSchedule", linear_schedule))
        stack.enter_context(mock.patch.object(rl_zoo3.utils, "linear_schedule", linear_schedule))
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] == "rl_zoo3" and getattr(module, "yaml", None) is yaml:
                stack.enter_context(mock.patch.object(module, "yaml", ZooYAML()))
        yield


_VALUE_FLAGS = ("--seed", "--env", "--conf-file", "-conf", "--env-kwargs", "--eval-env-kwargs")


def _values(argv: list[str], *flags: str) -> tuple[int, int] | None:
    """``(start, end)`` of the values after the last of ``flags`` in ``argv`` (``None`` when absent)."""
    hits = [i for i, a in enumerate(argv) if a in flags]
    if not hits:
        return None
    start = hits[-1] + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("-") and not _is_number(argv[i])), len(argv))
    return start, end


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def launcher_args(argv: list[str]) -> list[str]:
    """rl-zoo ``train`` arguments, adjusted for the paper's protocol and for rl-zoo's handling of ``env_kwargs``.

    - ``--seed S`` selects the task instance: ``seed:S`` joins ``--env-kwargs`` (run seed s trains on instance s
      and, with a fixed goal, is evaluated on it); a random-goal run's evaluation env gets ``seed:S+100``. An
      explicit ``seed:`` entry is kept; without ``--seed`` (or with rl-zoo's ``-1``) the instance is 0.
    - rl-zoo replaces the YAML block's ``env_kwargs`` with the command line's ``--env-kwargs`` as a whole, so the
      YAML's entries (``image_preset: reference``) are carried into the one ``--env-kwargs`` written here, the
      user's own entries winning (e.g. ``vlm:"'furl-mw-vlm'"`` with ``image_preset:"'fast'"``).

    Example:
        >>> launcher_args(["--env", "furl/reach-v3", "--seed", "3", "--env-kwargs", "image_size:128"])
        ['--env', 'furl/reach-v3', '--seed', '3', '--env-kwargs', 'image_size:128', 'seed:3']
    """
    split: list[str] = []
    for arg in argv:  # "--seed=3" → "--seed", "3"
        flag, eq, value = arg.partition("=")
        split += [flag, value] if eq and flag in _VALUE_FLAGS else [arg]
    argv = split
    seed_at, env_at, conf_at = _values(argv, "--seed"), _values(argv, "--env"), _values(argv, "--conf-file", "-conf")
    seed = int(argv[seed_at[0]]) if seed_at and seed_at[0] < len(argv) else None
    seed = None if seed is None or seed < 0 else seed
    at = _values(argv, "--env-kwargs")
    if seed is None and at is None:
        return argv
    env = argv[env_at[0]] if env_at and env_at[0] < len(argv) else ""
    yaml_kwargs: dict[str, Any] = {}
    if conf_at and conf_at[0] < len(argv) and env:
        try:
            block = (yaml.safe_load(Path(argv[conf_at[0]]).read_text()) or {}).get(env) or {}
            yaml_kwargs = dict(block.get("env_kwargs") or {})
        except (OSError, yaml.YAMLError, AttributeError):
            pass  # rl-zoo reports an unreadable config itself
    entries: dict[str, str] = {k: f"{k}:{v!r}" for k, v in yaml_kwargs.items()}
    if at is not None:
        entries.update({a.split(":", 1)[0]: a for a in argv[at[0]:at[1]]})
        argv = argv[: at[0] - 1] + argv[at[1]:]
    if seed is not None:
        entries.setdefault("seed", f"seed:{seed}")
    argv = argv + ["--env-kwargs", *entries.values()]
    if seed is not None and env.endswith(RANDOM_GOAL_SUFFIX):  # evaluated on seed s + 100
        eval_at = _values(argv, "--eval-env-kwargs")
        evals = {k: v for k, v in entries.items() if k != "seed"}
        if eval_at is not None:
            evals.update({a.split(":", 1)[0]: a for a in argv[eval_at[0]:eval_at[1]]})
            argv = argv[: eval_at[0] - 1] + argv[eval_at[1]:]
        evals.setdefault("seed", f"seed:{eval_seed(seed, 'random')}")
        argv += ["--eval-env-kwargs", *evals.values()]
    return argv


USAGE = f"""usage: python -m furl_wrappers.zoo {{train,enjoy}} [{TRUSTED_FLAG}] [rl-zoo arguments...]
  {TRUSTED_FLAG}  load model zips without furl's pickle-free entry (trained by plain rl_zoo3.train, downloaded),
             vecnormalize.pkl and replay_buffer.pkl with SB3's/rl-zoo's unpickling, and build any env_wrapper /
             vec_env_wrapper a run's config.yml names: all run code from the files, only for runs you made
             (default: such files are refused, exit status 2)"""


def main(argv: list[str] | None = None) -> None:
    """``python -m furl_wrappers.zoo {train,enjoy} [--trusted] ...``: rl-zoo inside :func:`handover`, ``train``
    arguments through :func:`launcher_args`; ``--trusted`` (anywhere in ``argv``) is the launcher's own flag and is
    removed before rl-zoo parses the rest. A refused file or setting exits with status 2 and one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    trusted = TRUSTED_FLAG in argv
    argv = [a for a in argv if a != TRUSTED_FLAG]
    if not argv or argv[0] not in ("train", "enjoy"):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    if {"-h", "--help"} & set(argv):
        print(USAGE + "\n\nrl-zoo's arguments:")  # rl-zoo's argparse help follows
    try:
        import rl_zoo3.utils  # noqa: F401
    except ImportError as exc:
        raise SystemExit("rl-zoo3 is not installed: pip install 'furl_wrappers[zoo]'") from exc
    command = argv.pop(0)
    algo = _values(argv, "--algo")
    missing = missing_extra(argv[algo[0]]) if algo and algo[1] > algo[0] else None
    if missing:  # rl-zoo would only call the name an invalid choice
        print(f"error: {missing}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = [f"rl_zoo3.{command}", *(launcher_args(argv) if command == "train" else argv)]
    try:
        with handover(command, trusted):
            if command == "train":
                from rl_zoo3.train import train

                train()
            else:
                from rl_zoo3.enjoy import enjoy

                enjoy()
    except (ConfigError, UnsafeFileError, CorruptFileError) as exc:  # one line naming the file or setting
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

if __name__ == "__main__":
    main()
