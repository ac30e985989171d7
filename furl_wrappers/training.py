"""``furl train``: one training run of a paper method on one task, from the zoo YAML, into a run directory.

The run directory's layout and states are :mod:`furl_wrappers.run_dir`'s. A run directory is never overwritten:
an existing one needs ``resume=True`` (continues from its checkpoint) or another ``out``. When the YAML's VLM
(LIV for the paper configs) cannot be had (offline machine) and no encoder was asked for, the run falls back to
the offline VLM shipped with the package (``furl-mw-vlm``), or to ``random-clip`` if that cannot load either, on
the fast image path, and says so plainly. Evaluation follows :mod:`furl_wrappers.protocol`.

Example:
    >>> spec = RunSpec(method="furl", task="drawer-open", steps=500, vlm="random-clip:tiny")
    >>> run_dir = train_run(spec)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

from furl_wrappers._atomic import atomic_write, atomic_write_text
from furl_wrappers.envs import check_goal, env_id, make_metaworld_env
from furl_wrappers.presets import get_preset
from furl_wrappers.protocol import eval_episodes, eval_seed
from furl_wrappers.run_dir import RunDir
from furl_wrappers.tasks import canonical_task, short_task
from furl_wrappers.validation import check_int
from furl_wrappers.zoo import ConfigError, algo_class, load_config, make_env_fn_wrapper, make_vec_wrapper, split_config

__all__ = ["RunSettings", "RunSpec", "RunExistsError", "train_run", "evaluate_run", "NOT_PRETRAINED_NOTICE",
           "OFFLINE_VLM_NOTICE"]

OFFLINE_VLM_NOTICE = (
    "NOTE: using furl-mw-vlm, the toolkit's offline VLM (a small Meta-World frame encoder trained on the 40 tasks "
    "outside MT10 against frozen all-MiniLM-L6-v2; see furl_wrappers/assets/furl-mw-vlm.md). It is neither LIV nor "
    "CLIP: for the paper's VLMs pass --vlm liv (hub), --vlm liv:DIR (LIV's model.pt and CLIP's tokenizer saved in "
    "DIR), or --vlm openai/clip-vit-base-patch32 / a local CLIP directory."
)

NOT_PRETRAINED_NOTICE = (
    "NOTE: the VLM is random-clip, which is NOT pretrained: its reward carries no language meaning, so this run "
    "shows the machinery, not FuRL's language grounding. To use a real VLM, pass --vlm openai/clip-vit-base-patch32 "
    "on a machine that can reach the Hugging Face hub, --vlm /path/to/a/local/clip-checkpoint, or --vlm liv."
)


class RunExistsError(FileExistsError):
    """The run directory already holds a run (pass ``resume`` or choose another ``out``)."""


@dataclass
class RunSettings:
    """What a run is trained with, shared by every cell of a sweep. ``None`` fields take the YAML's value."""

    goal: str = "fixed"
    vlm: Optional[str] = None
    image_preset: Optional[str] = None
    steps: Optional[int] = None
    n_envs: int = 1
    eval_freq: Optional[int] = None
    eval_episodes: Optional[int] = None
    checkpoint_freq: Optional[int] = None
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
    out: Optional[str] = None
    device: str = "auto"
    resume: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        if not self.method or not self.task:
            raise ConfigError(f"a run needs a method and a task, got method={self.method!r}, task={self.task!r}")

    def run_dir(self) -> RunDir:
        """``out``, or the default ``runs/<method>/<task>[-random-goal]/seed<seed>``."""
        if self.out:
            return RunDir(self.out)
        return RunDir.default("runs", self.method, canonical_task(self.task), self.goal, self.seed)


def _wrapper_kwargs(vec_spec: Any) -> list[dict[str, Any]]:
    """The keyword-argument dicts of the YAML's ``vec_env_wrapper`` entries (the config's own objects)."""
    items = vec_spec if isinstance(vec_spec, list) else [vec_spec]
    return [kwargs for item in items if isinstance(item, dict) for kwargs in item.values() if isinstance(kwargs, dict)]


def _choose_encoder(spec: RunSpec, vec_spec: Any, preset: str, say: Callable[[str], None]
                    ) -> tuple[Any, str, bool, str]:
    """The encoder for the run, the name it was built from, whether it fell back (offline), and the image preset
    the run will use (the offline fallbacks run on the fast path, which the offline VLM was trained on)."""
    from furl_wrappers.encoders import OFFLINE_VLM, CorruptCheckpointError, ModelUnavailableError, make_encoder

    yaml_vlm = next((kwargs["vlm"] for kwargs in _wrapper_kwargs(vec_spec) if "vlm" in kwargs), None)
    requested = spec.vlm or yaml_vlm or "liv"
    if str(requested).startswith(OFFLINE_VLM) and preset != "fast":
        raise ConfigError(f"{OFFLINE_VLM} runs on the fast image path it was trained on: pass --image-preset fast "
                          f"(got image preset {preset!r})")
    try:
        return make_encoder(requested, device=spec.device, **get_preset(preset).encoder_kwargs(spec.device)), \
            requested, False, preset
    except ModelUnavailableError as exc:
        if spec.vlm is not None:
            raise  # asked for explicitly: do not silently swap it
        say(f"[furl] the default VLM {requested!r} is unavailable ({exc}).")
    if preset != "fast":
        say(f"[furl] The fallback VLMs run on the fast image path: image preset fast instead of {preset!r}.")
    fast = get_preset("fast").encoder_kwargs(spec.device)
    try:
        encoder = make_encoder(OFFLINE_VLM, device=spec.device)
        say(f"[furl] Falling back to {OFFLINE_VLM}, the offline VLM shipped with furl_wrappers.")
        say(OFFLINE_VLM_NOTICE)
        return encoder, OFFLINE_VLM, True, "fast"
    except (ModelUnavailableError, CorruptCheckpointError) as exc:
        say(f"[furl] the offline VLM {OFFLINE_VLM!r} cannot be loaded either ({exc}).")
    say("[furl] Falling back to random-clip.")
    return make_encoder("random-clip", device=spec.device, **fast), "random-clip", True, "fast"


def _check_run_dir(spec: RunSpec) -> RunDir:
    """The run's directory, if it may be written (new, or resumable with ``resume``); nothing is created."""
    run = spec.run_dir()
    if run.run_files():
        if not spec.resume:
            raise RunExistsError(f"run directory {str(run.path)!r} already holds a run: pass --resume to continue it "
                                 "or --out to write elsewhere (nothing was changed)")
        if not run.checkpoint_model.exists():
            raise RunExistsError(f"{str(run.path)!r} has no checkpoint to resume from ({run.checkpoint_model})")
    elif spec.resume:
        raise FileNotFoundError(f"--resume: run directory {str(run.path)!r} does not exist")
    return run


def train_run(spec: RunSpec, console: Any = None) -> Path:
    """Train, evaluate and summarise one run; returns its directory. See the module docstring."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    from furl_wrappers.callbacks import FuRLProgressCallback, PaperEvalCallback, ResumeCheckpointCallback
    from furl_wrappers.encoders import describe
    from furl_wrappers.relay import RelayPolicy

    def say(text: str) -> None:
        if console is None:
            print(text, flush=True)
        else:
            console.print(text, markup=False, highlight=False)

    task = canonical_task(spec.task)
    check_goal(spec.goal, error=ConfigError)
    check_int("n_envs", spec.n_envs, error=ConfigError)
    eid = env_id(task, spec.goal)
    config = load_config(spec.method, eid, spec.hyperparams)
    if spec.steps is not None:
        config["n_timesteps"] = check_int("steps", spec.steps, error=ConfigError)
    algo_kwargs, zoo = split_config(config)
    total = int(zoo["n_timesteps"])
    env_kwargs = {**zoo.get("env_kwargs", {}), **spec.env_kwargs}
    if spec.image_preset is not None:
        env_kwargs["image_preset"] = spec.image_preset
    preset = get_preset(env_kwargs.get("image_preset", "fast")).name  # unknown preset: refused before any file
    if "seed" in env_kwargs:
        raise ConfigError(f"env_kwargs may not set seed ({env_kwargs['seed']!r}): the task instance is the run's seed "
                          "(--seed)")
    if "vlm" in env_kwargs:
        raise ConfigError(f"env_kwargs may not set vlm ({env_kwargs['vlm']!r}): pass --vlm {env_kwargs['vlm']}")
    run = _check_run_dir(spec)

    encoder, encoder_spec, fell_back = None, None, False
    vec_wrapper = None
    if zoo.get("vec_env_wrapper"):
        encoder, encoder_spec, fell_back, preset = _choose_encoder(spec, zoo["vec_env_wrapper"], preset, say)
        env_kwargs["image_preset"] = preset
        for kwargs in _wrapper_kwargs(zoo["vec_env_wrapper"]):  # config.json records the encoder actually used
            kwargs["vlm"] = encoder_spec
        if getattr(encoder, "pretrained", True) is False:
            say(NOT_PRETRAINED_NOTICE)
        vec_wrapper = make_vec_wrapper(zoo["vec_env_wrapper"], vlm=encoder, seed=spec.seed)
    run.path.mkdir(parents=True, exist_ok=True)  # every input checked, the encoder loaded: the run starts here
    # every env copy on the run's task instance (SB3's seed + i only reseeds episodes); see furl_wrappers.protocol
    venv = make_vec_env(eid, n_envs=spec.n_envs, seed=spec.seed, env_kwargs={**env_kwargs, "seed": spec.seed},
                        wrapper_class=make_env_fn_wrapper(zoo.get("env_wrapper")),
                        monitor_kwargs={"info_keywords": ("is_success",)})
    if vec_wrapper is not None:
        venv = vec_wrapper(venv)
    vlm_reward = getattr(venv, "vlm_reward", None)  # the YAML's VLM reward wrapper is the outermost layer
    cls = algo_class(zoo["_algo"])
    if vlm_reward is not None and cls is RelayPolicy:
        algo_kwargs["vlm_reward"] = vlm_reward

    started = time.time()
    if spec.resume:
        model = cls.load(run.checkpoint_model, env=venv, device=spec.device,
                         **({"vlm_reward": vlm_reward} if "vlm_reward" in algo_kwargs else {}))
        model.load_replay_buffer(run.checkpoint_buffer)
        started -= float(run.read_json(run.config).get("wall_time_s", 0.0))
        say(f"[furl] resuming {run.path} at step {model.num_timesteps} of {total}")
    else:
        model = cls(env=venv, seed=spec.seed, device=spec.device, verbose=0, **algo_kwargs)
    formats = ["csv"]
    try:
        import tensorboard  # noqa: F401

        formats.append("tensorboard")
    except ImportError:
        pass
    model.set_logger(configure(str(run.path), formats))

    reward_model = None if vlm_reward is None else vlm_reward.reward_model
    if reward_model is not None and not spec.resume:
        torch.save(reward_model.state_dict(), run.reward_initial)
    info = {"method": spec.method, "task": task, "goal": spec.goal, "seed": spec.seed, "env_id": eid,
            "steps": total, "n_envs": spec.n_envs, "algo": zoo["_algo"],
            "encoder": None if encoder is None else getattr(encoder, "name", type(encoder).__name__),
            "encoder_pretrained": None if encoder is None else getattr(encoder, "pretrained", None),
            "encoder_description": None if encoder is None else describe(encoder),
            "encoder_fallback": fell_back, "encoder_spec": encoder_spec,
            "reward_mode": getattr(reward_model, "mode", None), "reward_alpha": getattr(reward_model, "alpha", 0.0),
            "image_preset": preset, "instruction": None if vlm_reward is None else vlm_reward.text,
            "env_kwargs": env_kwargs,
            "hyperparams": config, "spec": asdict(spec)}
    if encoder is not None:
        say(f"[furl] encoder: {describe(encoder)}")

    n_eval = spec.eval_episodes or eval_episodes(spec.goal)
    eval_instance = eval_seed(spec.seed, spec.goal)
    eval_env = make_metaworld_env(task, goal=spec.goal, seed=eval_instance, **env_kwargs)
    info.update(train_instance_seed=spec.seed, eval_instance_seed=eval_instance,
                train_goal=venv.get_attr("goal_position", indices=[0])[0],
                eval_goal=eval_env.get_wrapper_attr("goal_position"), eval_episodes=n_eval,
                success_criterion="final_step")
    atomic_write_text(run.config, json.dumps({**info, "wall_time_s": 0.0}, indent=1, default=str))
    eval_freq = spec.eval_freq or max(min(10_000, total // 10), 1)
    evaluation = PaperEvalCallback(eval_env, eval_freq, n_eval, log_path=str(run.evaluations))
    ckpt = ResumeCheckpointCallback(run.checkpoint, spec.checkpoint_freq or max(min(50_000, total // 4), 1))
    progress = FuRLProgressCallback(total, evaluation, quiet=spec.quiet,
                                    description=f"{spec.method} {short_task(task)} seed {spec.seed}")
    remaining = max(total - model.num_timesteps, 0)
    if remaining:
        model.learn(remaining, callback=[evaluation, ckpt, progress], reset_num_timesteps=not spec.resume,
                    log_interval=1)
    else:
        evaluation.init_callback(model)
        evaluation.evaluate()
    ckpt.init_callback(model)
    ckpt.save()
    model.save(run.model)
    if reward_model is not None:
        torch.save(reward_model.state_dict(), run.reward_final)
    wall = time.time() - started
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


def evaluate_run(run_dir: str | Path, episodes: Optional[int] = None, video: Optional[str] = None,
                 seed: Optional[int] = None, device: str = "auto") -> dict[str, Any]:
    """Evaluate a finished run's final model with the paper's protocol (or ``episodes``); optionally save a GIF.

    Returns:
        ``{"success_rate" (final step), "success_rate_any_step", "mean_task_return", "episodes", "seed"}``.
    """
    from furl_wrappers.callbacks import evaluate_policy_success

    run = RunDir(run_dir)
    if not run.config.exists() or not run.model.exists():
        raise FileNotFoundError(f"{str(run.path)!r} is not a finished furl run (needs {RunDir.CONFIG} and "
                                f"{RunDir.MODEL})")
    config = json.loads(run.config.read_text())
    cls = algo_class(config["algo"])
    model = cls.load(run.model, device=device, buffer_size=1)  # inference only: no full-size buffer
    goal = config.get("goal", "fixed")
    seed = eval_seed(config["seed"], goal) if seed is None else seed
    episodes = episodes or eval_episodes(goal)
    # the run's own env settings (image preset included); runs recorded before had only the spec's
    env_kwargs = config.get("env_kwargs") or config.get("spec", {}).get("env_kwargs", {})
    env = make_metaworld_env(config["task"], goal=goal, seed=seed, **env_kwargs)
    frames: Optional[list] = [] if video else None
    result = evaluate_policy_success(model, env, episodes, frames=frames)
    env.close()
    if video and frames:
        from PIL import Image

        images = [Image.fromarray(f) for f in frames[::2]]
        atomic_write(video, lambda handle: images[0].save(handle, format="GIF", save_all=True,
                                                          append_images=images[1:], duration=40, loop=0))
    return {"success_rate": result.success, "success_rate_any_step": result.success_any_step,
            "mean_task_return": result.mean_task_return, "episodes": episodes, "seed": seed}
