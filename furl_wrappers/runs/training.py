"""``furl train``: one training run of a paper method on one task, from the zoo YAML, into a run directory.

The run directory's layout and states are :mod:`furl_wrappers.runs.run_dir`'s. One process writes a run directory
at a time (:class:`~furl_wrappers.runs.run_lock.RunLock`); a finished run is never written again; an interrupted one
needs ``resume=True``, which continues exactly from its checkpoint set (:mod:`furl_wrappers.runs.checkpoint_set`)
after checking that task, goal, seed, method, encoder and hyperparameters are the run's, and keeps its logs up to
the checkpoint's step; a run that failed before its first checkpoint is started over. When the YAML's VLM
(LIV for the paper configs) cannot be had (offline machine) and no encoder was asked for, the run falls back to
the offline VLM shipped with the package (``furl-mw-vlm``), or to ``random-clip`` if that cannot load either, on
the fast image path, and says so plainly. Evaluation follows :mod:`furl_wrappers.runs.protocol`.

Example:
    >>> spec = RunSpec(method="furl", task="drawer-open", steps=500, vlm="random-clip:tiny")
    >>> run_dir = train_run(spec)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from furl_wrappers._atomic import atomic_write, atomic_write_text
from furl_wrappers._safe_files import CorruptFileError
from furl_wrappers.encoders import describe
from furl_wrappers.envs import GoalSetting, check_goal
from furl_wrappers.presets import get_preset
from furl_wrappers.registration import env_id
from furl_wrappers.relay import is_relay
from furl_wrappers.runs.checkpoint_callback import ResumeCheckpointCallback
from furl_wrappers.runs.encoder_choice import NOT_PRETRAINED_NOTICE, choose_encoder, wrapper_kwargs
from furl_wrappers.runs.evaluation import PaperEvalCallback, make_eval_env
from furl_wrappers.runs.progress import FuRLProgressCallback
from furl_wrappers.runs.protocol import eval_episodes, eval_seed
from furl_wrappers.runs.run_clock import RunClock
from furl_wrappers.runs.run_dir import RunDir
from furl_wrappers.runs.run_lock import RunLock, RunLockedError
from furl_wrappers.runs.zoo_config import (
    ConfigError,
    algo_class,
    load_config,
    make_env_fn_wrapper,
    make_vec_wrapper,
    split_config,
)
from furl_wrappers.serialization import save_model
from furl_wrappers.tasks import canonical_task, short_task
from furl_wrappers.validation import check_hyperparams, check_int, check_number
from furl_wrappers.vlm_buffer import VLMReplayBuffer

__all__ = ["RunSettings", "RunSpec", "RunExistsError", "train_run"]

class RunExistsError(FileExistsError):
    """The run directory already holds a run (pass ``resume`` or choose another ``out``)."""


@dataclass
class RunSettings:
    """What a run is trained with, shared by every cell of a sweep. ``None`` fields take the YAML's value."""

    goal: GoalSetting = "fixed"
    vlm: str | None = None
    image_preset: str | None = None
    steps: int | None = None
    n_envs: int = 1
    eval_freq: int | None = None
    eval_episodes: int | None = None
    checkpoint_freq: int | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """These fields only (a sweep's payload for each cell)."""
        return {f.name: getattr(self, f.name) for f in fields(RunSettings)}


@dataclass
class RunSpec(RunSettings):
    """One training run: a method on a task with a seed, the :class:`RunSettings`, where it goes and how it runs
    (``method`` and ``task`` are required)."""

    method: str = ""
    task: str = ""
    seed: int = 0
    out: str | None = None
    device: str = "auto"
    resume: bool = False
    quiet: bool = False
    trusted: bool = False

    def __post_init__(self) -> None:
        if not self.method or not self.task:
            raise ConfigError(f"a run needs a method and a task, got method={self.method!r}, task={self.task!r}")

    def run_dir(self) -> RunDir:
        """``out``, or the default ``runs/<method>/<task>[-random-goal]/seed<seed>``."""
        if self.out:
            return RunDir(self.out)
        return RunDir.default("runs", self.method, canonical_task(self.task), self.goal, self.seed)


def _check_run_dir(spec: RunSpec, run: RunDir, holding_lock: bool = False) -> bool:
    """Whether the run resumes from a checkpoint, if its directory may be written at all (a finished run never
    is; an interrupted one only with ``resume``; a failed one starts over); nothing is written. Checked before
    the encoder loads, and again once the run's lock is held."""
    foreign = run.foreign_files()
    if foreign:
        names = sorted(p.name for p in foreign)
        why = "" if run.run_id() is not None else f", and no {RunDir.MARKER} says furl wrote any of them"
        raise RunExistsError(f"{str(run.path)!r} holds files that are not a furl run's ({', '.join(names[:3])}"
                             f"{', ...' if len(names) > 3 else ''}{why}): pass a new or empty --out (nothing was "
                             "changed)")
    state = run.state(holding_lock)
    if state == "finished":
        raise RunExistsError(f"{str(run.path)!r} holds a finished run, which is never written again: pass --out to "
                             "train another (nothing was changed)")
    if state == "running":
        raise RunLockedError(f"{str(run.path)!r} is being written by pid {run.live_writer()}: a second writer would "
                             "corrupt it; wait for that run to end or stop it first")
    if state == "interrupted" and not spec.resume:
        raise RunExistsError(f"run directory {str(run.path)!r} already holds a run: pass --resume to continue it "
                             "or --out to write elsewhere (nothing was changed)")
    if state == "new" and spec.resume:
        raise FileNotFoundError(f"--resume: {str(run.path)!r} holds no run to resume")
    return state == "interrupted"


#: what a resume must share with the run it continues (config.json key, RunSpec field)
_RESUME_KEYS = (("method", "method"), ("task", "task"), ("goal", "goal"), ("seed", "seed"), ("n_envs", "n_envs"))


def _check_resume(spec: RunSpec, run: RunDir, config: dict[str, Any]) -> dict[str, Any]:
    """The run's recorded config.json, checked against this call (task, goal, seed, method, n_envs, encoder,
    env kwargs, image preset, hyperparameters but ``n_timesteps``)."""
    recorded = run.read_json(run.config)
    if not recorded:
        raise ConfigError(f"--resume: {str(run.config)!r} is missing or unreadable, so the run cannot be checked; "
                          "start it over with another --out")
    ours = {**asdict(spec), "task": canonical_task(spec.task)}
    for key, field_name in _RESUME_KEYS:
        if key in recorded and recorded[key] != ours[field_name]:
            raise ConfigError(f"--resume: {str(run.path)!r} was made with {key}={recorded[key]!r}, this call has "
                              f"{ours[field_name]!r}; pass --out to start a new run instead")
    if spec.vlm is not None and recorded.get("encoder_spec") not in (None, spec.vlm):
        raise ConfigError(f"--resume: {str(run.path)!r} was made with --vlm {recorded['encoder_spec']}, this call "
                          f"has --vlm {spec.vlm}")
    made_with = recorded.get("env_kwargs") or {}
    changed = sorted(k for k, v in spec.env_kwargs.items() if made_with and made_with.get(k) != v)
    if changed:
        raise ConfigError(f"--resume: {str(run.path)!r} was made with other --env-kwargs ({', '.join(changed)}: "
                          f"{', '.join(f'{k}={made_with.get(k)!r}' for k in changed)}); pass --out for a new run")
    if spec.image_preset is not None and recorded.get("image_preset") not in (None, spec.image_preset):
        raise ConfigError(f"--resume: {str(run.path)!r} was made with --image-preset {recorded['image_preset']}, "
                          f"this call has {spec.image_preset}")
    def comparable(hyperparams: dict[str, Any]) -> dict[str, Any]:  # the wrapper's vlm is the encoder, checked above
        plain = json.loads(json.dumps({k: v for k, v in hyperparams.items() if k != "n_timesteps"}, default=str))
        for kwargs in wrapper_kwargs(plain.get("vec_env_wrapper")):
            kwargs.pop("vlm", None)
        return plain

    before, now = comparable(recorded.get("hyperparams") or {}), comparable(config)
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if before and changed:
        raise ConfigError(f"--resume: {str(run.path)!r} was made with other hyperparameters ({', '.join(changed)}); "
                          "pass --out to start a new run with them")
    return recorded


def _settings(spec: RunSpec) -> tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """``(task, env id, config, algo kwargs, zoo keys, env kwargs, image preset)`` of a run, every input checked
    before anything is written (a NaN gamma would otherwise die 50 steps in)."""
    task = canonical_task(spec.task)
    check_goal(spec.goal, error=ConfigError)
    check_int("n_envs", spec.n_envs, error=ConfigError)
    eid = env_id(task, spec.goal)
    config = load_config(spec.method, eid, spec.hyperparams)
    if spec.steps is not None:
        config["n_timesteps"] = check_int("steps", spec.steps, error=ConfigError)
    algo_kwargs, zoo = split_config(config)
    check_hyperparams(algo_kwargs, error=ConfigError)
    env_kwargs = {**zoo.get("env_kwargs", {}), **spec.env_kwargs}
    if spec.image_preset is not None:
        env_kwargs["image_preset"] = spec.image_preset
    preset = get_preset(env_kwargs.get("image_preset", "fast")).name  # unknown preset: refused before any file
    if "seed" in env_kwargs:
        raise ConfigError(f"env_kwargs may not set seed ({env_kwargs['seed']!r}): the task instance is the run's seed "
                          "(--seed)")
    if "vlm" in env_kwargs:
        raise ConfigError(f"env_kwargs may not set vlm ({env_kwargs['vlm']!r}): pass --vlm {env_kwargs['vlm']}")
    return task, eid, config, algo_kwargs, zoo, env_kwargs, preset


def _as_recorded(spec: RunSpec, recorded: dict[str, Any], env_kwargs: dict[str, Any], preset: str
                 ) -> tuple[RunSpec, dict[str, Any], str]:
    """A resumed run's spec, env kwargs and image preset as it was trained (no encoder fallback)."""
    env_kwargs = {**env_kwargs, **(recorded.get("env_kwargs") or {})}
    if recorded.get("image_preset"):
        preset = env_kwargs["image_preset"] = recorded["image_preset"]
    if recorded.get("encoder_spec") and spec.vlm is None:
        spec = replace(spec, vlm=recorded["encoder_spec"])
    return spec, env_kwargs, preset


def _vlm_wrapper(vec_spec: Any, encoder: Any, encoder_spec: str, seed: int, say: Callable[[str], None]) -> Any:
    """The YAML's VLM reward wrapper around the chosen encoder (``config.json`` records the encoder used)."""
    for kwargs in wrapper_kwargs(vec_spec):
        kwargs["vlm"] = encoder_spec
    if getattr(encoder, "pretrained", True) is False:
        say(NOT_PRETRAINED_NOTICE)
    return make_vec_wrapper(vec_spec, vlm=encoder, seed=seed)


def _prepare_run_dir(spec: RunSpec, run: RunDir, resume: bool, say: Callable[[str], None]) -> None:
    """With the lock held: the directory checked again, tidied, cleared when a run starts over, and marked."""
    if _check_run_dir(spec, run, holding_lock=True) != resume:  # again, now that no other writer can change it
        raise RunExistsError(f"{str(run.path)!r} changed while this run was starting (another process wrote "
                             "it): run the command again")
    run.tidy()  # the newest complete checkpoint set in place, no temp files of killed writes
    if not resume:
        if run.run_files():
            say(f"[furl] {run.path} holds a run that stopped before its first checkpoint: starting it over")
        run.clear_run_files()
    run.mark()  # before any run file: what this run writes is provably furl's (see RunDir.clear_run_files)


def _resumed_model(cls: type, venv: Any, run: RunDir, spec: RunSpec, total: int, vlm_reward: Any,
                   say: Callable[[str], None]) -> Any:
    """The model of the run's checkpoint set, its logs rewound to the checkpoint's step."""
    model = run.checkpoint_set.load(cls, venv, device=spec.device, trusted=spec.trusted,
                                    **({} if vlm_reward is None else {"vlm_reward": vlm_reward}))
    if model.num_timesteps > total:
        raise ConfigError(f"--steps {total} is below the step of {str(run.path)!r}'s checkpoint "
                          f"({model.num_timesteps}): pass --steps {model.num_timesteps} or more")
    run.rewind_logs(model.num_timesteps)  # rows past the checkpoint are redone; every earlier row stays
    if not run.checkpoint_set.read_meta().get("exact", False):
        say("[furl] note: this checkpoint was not taken when every env had just started an episode (or its "
            "envs cannot replay one): the run continues from it, but not bit for bit as an uninterrupted run")
    say(f"[furl] resuming {run.path} at step {model.num_timesteps} of {total}")
    return model


def _resumed_clock(run: RunDir, say: Callable[[str], None]) -> RunClock:
    """The run's clock, continued from the seconds its checkpoint recorded (the steps redone after it count
    once)."""
    before = run.checkpoint_set.read_meta().get("wall_time_s")
    if before is None:
        say("[furl] note: this checkpoint does not record how long the run had trained: wall_time_s counts from "
            "this resume")
        return RunClock()
    where = f"{str(run.checkpoint_set.meta)!r}: wall_time_s"
    return RunClock(check_number(where, before, low=0.0, hint="seconds trained", error=CorruptFileError))


def _seed_vlm_buffer(cls: type, algo_kwargs: dict[str, Any], seed: int) -> None:
    """``--seed`` seeds a VLM replay buffer's alignment sampling too: same seed, same run."""
    buffer_class = algo_kwargs.get("replay_buffer_class") or (VLMReplayBuffer if is_relay(cls) else None)
    if isinstance(buffer_class, type) and issubclass(buffer_class, VLMReplayBuffer):
        algo_kwargs["replay_buffer_kwargs"] = {"seed": seed, **(algo_kwargs.get("replay_buffer_kwargs") or {})}


def _log_formats() -> list[str]:
    """SB3 logger formats: the CSV, and TensorBoard's event files when it is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return ["csv"]
    return ["csv", "tensorboard"]


def _encoder_info(encoder: Any) -> dict[str, Any]:
    """What ``config.json`` and ``summary.json`` say of the encoder (``None`` values without one)."""
    if encoder is None:
        return {"encoder": None, "encoder_pretrained": None, "encoder_description": None}
    return {"encoder": getattr(encoder, "name", type(encoder).__name__),
            "encoder_pretrained": getattr(encoder, "pretrained", None), "encoder_description": describe(encoder)}


def train_run(spec: RunSpec, console: Any = None, lock: RunLock | None = None) -> Path:
    """Train, evaluate and summarise one run; returns its directory. See the module docstring.

    Args:
        lock: the run directory's lock, already held by the caller (a sweep cell takes it before writing its
            status); by default the run takes and releases it itself.
    """
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecCheckNan

    def say(text: str) -> None:
        if console is None:
            print(text, flush=True)
        else:
            console.print(text, markup=False, highlight=False)

    task, eid, config, algo_kwargs, zoo, env_kwargs, preset = _settings(spec)
    total = int(zoo["n_timesteps"])
    run = spec.run_dir()
    resume = _check_run_dir(spec, run, holding_lock=lock is not None)
    recorded = _check_resume(spec, run, config) if resume else {}
    if resume:  # the env, image path and encoder it was trained with (no fallback)
        spec, env_kwargs, preset = _as_recorded(spec, recorded, env_kwargs, preset)

    encoder, encoder_spec, fell_back = None, None, bool(recorded.get("encoder_fallback", False))
    vec_wrapper = None
    if zoo.get("vec_env_wrapper"):
        encoder, encoder_spec, fell_back_now, preset = choose_encoder(spec.vlm, spec.device, zoo["vec_env_wrapper"],
                                                                      preset, say)
        fell_back = fell_back or fell_back_now
        env_kwargs["image_preset"] = preset
        vec_wrapper = _vlm_wrapper(zoo["vec_env_wrapper"], encoder, encoder_spec, spec.seed, say)
    own_lock = lock is None
    if lock is None:  # every input checked, the encoder loaded: the run starts here
        lock = run.lock().acquire()
    try:
        _prepare_run_dir(spec, run, resume, say)
        # every env copy on the run's task instance (SB3's seed + i only reseeds episodes): see runs.protocol
        venv = make_vec_env(eid, n_envs=spec.n_envs, seed=spec.seed, env_kwargs={**env_kwargs, "seed": spec.seed},
                            wrapper_class=make_env_fn_wrapper(zoo.get("env_wrapper")),
                            monitor_kwargs={"info_keywords": ("is_success",)})
        vlm_reward = None
        if vec_wrapper is not None:  # the YAML's VLM reward wrapper: it owns the VLM reward
            venv = vec_wrapper(venv)
            vlm_reward = getattr(venv, "vlm_reward", None)
        # every method: a NaN or inf action, observation or reward stops the run at once, naming it
        venv = VecCheckNan(venv, raise_exception=True)
        cls = algo_class(zoo["_algo"])
        if vlm_reward is not None and is_relay(cls):
            algo_kwargs["vlm_reward"] = vlm_reward
        _seed_vlm_buffer(cls, algo_kwargs, spec.seed)

        if resume:
            clock = _resumed_clock(run, say)  # checked first: a bad meta.json fails before the logs are rewound
            model = _resumed_model(cls, venv, run, spec, total, vlm_reward if "vlm_reward" in algo_kwargs else None,
                                   say)
        else:
            clock = RunClock()
            model = cls(env=venv, seed=spec.seed, device=spec.device, verbose=0, **algo_kwargs)
        model.set_logger(run.logger(_log_formats()))

        reward_model = None if vlm_reward is None else vlm_reward.reward_model
        if reward_model is not None and not resume:
            atomic_write(run.reward_initial, lambda handle: torch.save(reward_model.state_dict(), handle))
        info = {"method": spec.method, "task": task, "goal": spec.goal, "seed": spec.seed, "env_id": eid,
                "steps": total, "n_envs": spec.n_envs, "algo": zoo["_algo"], **_encoder_info(encoder),
                "encoder_fallback": fell_back, "encoder_spec": encoder_spec,
                "reward_mode": getattr(reward_model, "mode", None), "reward_alpha": getattr(reward_model, "alpha", 0.0),
                "image_preset": preset, "instruction": getattr(vlm_reward, "text", None),
                "env_kwargs": env_kwargs,
                "hyperparams": config, "spec": asdict(spec)}
        if encoder is not None:
            say(f"[furl] encoder: {describe(encoder)}")

        n_eval = spec.eval_episodes or eval_episodes(spec.goal)
        eval_instance = eval_seed(spec.seed, spec.goal)
        eval_env = make_eval_env(task, spec.goal, eval_instance, env_kwargs)
        info.update(train_instance_seed=spec.seed, eval_instance_seed=eval_instance,
                    train_goal=venv.get_attr("goal_position", indices=[0])[0],
                    eval_goal=eval_env.get_wrapper_attr("goal_position"), eval_episodes=n_eval,
                    success_criterion="final_step")
        if not resume:
            atomic_write_text(run.config, json.dumps({**info, "wall_time_s": 0.0}, indent=1, default=str))
        eval_freq = spec.eval_freq or max(min(10_000, total // 10), 1)
        evaluation = PaperEvalCallback(eval_env, eval_freq, n_eval, log_path=str(run.evaluations), seed=eval_instance,
                                       clock=clock)
        ckpt = ResumeCheckpointCallback(run.checkpoint, spec.checkpoint_freq or max(min(50_000, total // 4), 1),
                                        clock=clock)
        progress = FuRLProgressCallback(total, evaluation, quiet=spec.quiet,
                                        description=f"{spec.method} {short_task(task)} seed {spec.seed}")
        remaining = max(total - model.num_timesteps, 0)
        if remaining:
            model.learn(remaining, callback=[evaluation, ckpt, progress], reset_num_timesteps=not resume,
                        log_interval=1)
        else:
            evaluation.init_callback(model)
            evaluation.evaluate()
        save_model(model, run.model)
        if reward_model is not None:
            atomic_write(run.reward_final, lambda handle: torch.save(reward_model.state_dict(), handle))
        wall = clock.elapsed()
        assert evaluation.last_result is not None  # evaluated at the end of training or just above
        summary = {**{k: v for k, v in info.items() if k not in ("hyperparams", "spec")},
                   "timesteps_done": int(model.num_timesteps), "final_success": evaluation.last_success,
                   "final_success_any_step": evaluation.last_result.success_any_step,
                   "best_success": evaluation.best_success, "wall_time_s": round(wall, 1),
                   "positive_count": int(getattr(model.replay_buffer, "positive_count", 0))}
        atomic_write_text(run.config, json.dumps({**info, "wall_time_s": round(wall, 1)}, indent=1, default=str))
        atomic_write_text(run.summary, json.dumps(summary, indent=1, default=str))  # last: the run is finished
        venv.close()
        eval_env.close()
        return run.path
    finally:
        if own_lock:
            lock.release()
