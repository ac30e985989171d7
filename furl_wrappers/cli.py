"""The ``furl`` command line.

Sub-commands:
    furl train --method M --task T [...]   train one paper method on one task (zoo_configs/M.yml)
    furl evaluate RUN_DIR [...]            success rate of a run's final model (optional GIF)
    furl report RUN_DIR... [--out DIR]     Table-1 style Markdown, learning curves, r_VLM curves
    furl tasks                             list the 50 Meta-World tasks and their instructions
    furl goal-image TASK [...]             roll out the scripted expert, save the goal image, print the step
    furl pretrain-vlm --out PATH [...]     train the offline VLM (furl-mw-vlm) on the 40 non-MT10 tasks
    furl sweep --out DIR [GRID] [...]      methods × tasks × seeds on a local pool or Ray; resumable

Example:
    $ furl train --method furl --task drawer-open --seed 0 --steps 20000
    $ furl report runs/furl/drawer-open/seed0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from furl_wrappers._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``furl`` argument parser (one sub-parser per command)."""
    parser = argparse.ArgumentParser(
        prog="furl",
        description="FuRL (VLMs as fuzzy rewards) for Stable-Baselines3 on Meta-World.",
    )
    parser.add_argument("--version", action="version", version=f"furl_wrappers {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train one paper method on one Meta-World task")
    from furl_wrappers.pretraining.data import DATA_DEFAULTS
    from furl_wrappers.pretraining.objective import PretrainConfig
    from furl_wrappers.runs.zoo_config import METHODS

    _PRETRAIN = PretrainConfig()

    train.add_argument("--method", required=True,
                       help=f"{', '.join(METHODS)}, or a path to a YAML file in the same format (zoo_configs/)")
    train.add_argument("--task", required=True, help="Meta-World task, e.g. drawer-open (furl tasks lists all 50)")
    train.add_argument("--seed", type=int, default=0,
                       help="run seed; with a fixed goal also the task instance trained and evaluated on (default 0)")
    train.add_argument("--steps", type=int, default=None, help="env steps (default: the YAML's n_timesteps, 1e6)")
    train.add_argument("--vlm", default=None,
                       help="encoder for the VLM methods: liv, liv:DIR, a CLIP hub id or local directory, furl-mw-vlm "
                            "(shipped, offline), furl-mw-vlm:PATH, random-clip[:tiny] (not pretrained). Default: the "
                            "YAML's (LIV; CLIP for VLM-RMs and the Table-3 configs); offline, without --vlm, the run "
                            "falls back to furl-mw-vlm and says so")
    train.add_argument("--goal", default="fixed", choices=["fixed", "random"],
                       help="fixed goal (Table 1) or a random goal each episode (Table 2) (default fixed)")
    train.add_argument("--image-preset", default=None, choices=["fast", "reference"],
                       help="frames for the VLM: reference = the reference code's pipeline (256² full-quality render, "
                            "[32:224] crop, LIV's BGR/bilinear input, lower-case instructions); fast = 224² fast "
                            "render (the CPU path). Default: the YAML's (reference for the paper configs)")
    train.add_argument("--n-envs", type=int, default=1, help="envs stepped together, one VLM forward (default 1)")
    train.add_argument("--out", default=None, help="run directory (default runs/<method>/<task>/seed<seed>)")
    train.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 (default auto)")
    train.add_argument("--eval-freq", type=int, default=None,
                       help="env steps between evaluations (default: steps / 10, at most 10,000)")
    train.add_argument("--eval-episodes", type=int, default=None,
                       help="episodes per evaluation (default: the paper's, 1 for a fixed goal / 10 for random)")
    train.add_argument("--checkpoint-freq", type=int, default=None,
                       help="env steps between resumable checkpoints (default: steps / 4, at most 50,000)")
    train.add_argument("--hyperparams", "-params", nargs="*", default=[], metavar="KEY=VALUE",
                       help="override YAML keys, e.g. learning_starts=1000 learning_rate=1e-4 (values parsed as YAML; "
                            "numbers in any notation)")
    train.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                       help="make_metaworld_env arguments, e.g. image_size=128 max_episode_steps=200")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run exactly from its checkpoint (same task, goal, seed, method, "
                            "encoder and hyperparameters; a finished run is never written again)")
    train.add_argument("--trusted", action="store_true",
                       help="also resume checkpoints that need unpickling (written by an older furl_wrappers): this "
                            "runs code from those files, so only for files you made")
    train.add_argument("--quiet", action="store_true", help="plain progress lines instead of a live display")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a run's final model (paper protocol)")
    evaluate.add_argument("run_dir", help="a finished run directory (furl train's --out)")
    evaluate.add_argument("--episodes", type=int, default=None, help="default 1 (fixed goal) / 10 (random goal)")
    evaluate.add_argument("--seed", type=int, default=None,
                          help="eval env instance seed (default: the paper's protocol: the run's own instance for a "
                               "fixed goal, seed + 100 for random goals)")
    evaluate.add_argument("--video", default=None, help="write the episodes as an animated GIF here")
    evaluate.add_argument("--device", default="auto", help="default auto (CUDA when available)")
    evaluate.add_argument("--trusted", action="store_true",
                          help="also load models that need unpickling (saved by SB3 itself or an older furl_wrappers): "
                               "this runs code from the file, so only for files you made")
    evaluate.set_defaults(func=_cmd_evaluate)

    report = sub.add_parser("report", help="aggregate runs: Markdown table, learning curves, r_VLM curves")
    report.add_argument("run_dirs", nargs="+", help="finished run directories")
    report.add_argument("--out", default="runs/report", help="where results.md and the PNGs go (default runs/report)")
    report.add_argument("--no-plots", action="store_true", help="results.md only")
    report.set_defaults(func=_cmd_report)

    tasks = sub.add_parser("tasks", help="list the Meta-World tasks and their text instructions")
    tasks.add_argument("--mt10", action="store_true", help="only the paper's ten MT10 tasks")
    tasks.set_defaults(func=_cmd_tasks)

    goal = sub.add_parser(
        "goal-image",
        help="roll out Meta-World's scripted expert, save the frame at first success, print the success step",
    )
    goal.add_argument("task", help="Meta-World task, e.g. drawer-open or drawer-open-v3")
    goal.add_argument("--seed", type=int, default=0, help="task instance (fixed goal) seed (default 0)")
    goal.add_argument("--camera", default="corner2", help="camera name (default corner2, the paper's)")
    goal.add_argument("--image-size", type=int, default=224, help="frame side in pixels (default 224)")
    goal.add_argument("--render-quality", default="fast", choices=["fast", "full"], help="default fast")
    goal.add_argument("--out", type=Path, default=None, help="PNG path (default <task>-seed<seed>-goal.png)")
    goal.add_argument("--no-cache", action="store_true", help="ignore the on-disk goal-image cache")
    goal.set_defaults(func=_cmd_goal_image)

    pre = sub.add_parser("pretrain-vlm", help="train the offline VLM's frame encoder on the 40 tasks outside MT10")
    pre.add_argument("--out", required=True, help="checkpoint path; load it with --vlm furl-mw-vlm:PATH")
    pre.add_argument("--tasks", nargs="*", default=None, help="subset of the non-MT10 tasks (default all 40)")
    pre.add_argument("--expert-episodes", type=int, default=DATA_DEFAULTS["expert_episodes"],
                     help=f"per task (default {DATA_DEFAULTS['expert_episodes']})")
    pre.add_argument("--failed-episodes", type=int, default=DATA_DEFAULTS["failed_episodes"],
                     help=f"random/perturbed-policy episodes per task (default {DATA_DEFAULTS['failed_episodes']})")
    pre.add_argument("--every", type=int, default=DATA_DEFAULTS["every"],
                     help=f"keep every N-th frame (default {DATA_DEFAULTS['every']})")
    pre.add_argument("--steps", type=int, default=_PRETRAIN.steps, help=f"optimiser steps (default {_PRETRAIN.steps})")
    pre.add_argument("--batch-size", type=int, default=_PRETRAIN.batch_size,
                     help=f"frames per loss term and step (default {_PRETRAIN.batch_size})")
    pre.add_argument("--lr", type=float, default=_PRETRAIN.lr, help=f"AdamW learning rate (default {_PRETRAIN.lr})")
    pre.add_argument("--text-adapter", type=int, default=_PRETRAIN.text_adapter,
                     help=f"hidden width of the trained text adapter, 0 for none (default {_PRETRAIN.text_adapter})")
    pre.add_argument("--no-paraphrases", action="store_true", help="train on the canonical instructions only")
    pre.add_argument("--val-tasks", nargs="+", default=None,
                     help="some of the tasks to render but hold out of training, scored zero-shot at the end "
                          "(model selection without MT10)")
    pre.add_argument("--hard-negatives", action="store_true",
                     help="add the scene-sibling ranking term (off in the shipped model: it lowered progress Spearman)")
    pre.add_argument("--seed", type=int, default=0, help="seeds the data and the training (default 0)")
    pre.add_argument("--input-size", type=int, default=64, help="encoder input side, multiple of 16 (default 64)")
    pre.add_argument("--data-cache", default=None, help="reuse / write the rendered dataset here (.npz)")
    pre.add_argument("--workers", type=int, default=1, help="processes rendering the dataset")
    pre.add_argument("--device", default="auto", help="default auto (CUDA when available)")
    pre.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    pre.set_defaults(func=_cmd_pretrain_vlm)

    sweep = sub.add_parser("sweep", help="run methods × tasks × seeds on a local process pool or a Ray cluster")
    sweep.add_argument("grid", nargs="?", default=None, help="grid YAML (methods, tasks, seeds, steps, ...)")
    sweep.add_argument("--out", required=True, help="results directory (shared by all nodes on a cluster)")
    sweep.add_argument("--methods", nargs="+", default=None, help="zoo_configs names or YAML paths (or the grid's)")
    sweep.add_argument("--tasks", nargs="+", default=None, help="Meta-World tasks (or the grid's)")
    sweep.add_argument("--seeds", nargs="+", type=int, default=None, help="run seeds = task instances (default 0)")
    sweep.add_argument("--goal", default=None, choices=["fixed", "random"], help="default fixed")
    sweep.add_argument("--vlm", default=None, help="as for furl train (default: each YAML's)")
    sweep.add_argument("--image-preset", default=None, choices=["fast", "reference"], help="as for furl train")
    sweep.add_argument("--steps", type=int, default=None, help="env steps per run (default: each YAML's)")
    sweep.add_argument("--n-envs", type=int, default=None, help="envs per run (default 1)")
    sweep.add_argument("--eval-freq", type=int, default=None, help="as for furl train")
    sweep.add_argument("--eval-episodes", type=int, default=None, help="as for furl train")
    sweep.add_argument("--checkpoint-freq", type=int, default=None, help="bounds the work a killed cell loses")
    sweep.add_argument("--hyperparams", "-params", nargs="*", default=[], metavar="KEY=VALUE",
                       help="YAML overrides for every cell, as for furl train")
    sweep.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="as for furl train")
    sweep.add_argument("--cpus-per-run", type=float, default=None, help="CPUs (torch threads) per run (default 1)")
    sweep.add_argument("--gpus-per-run", type=float, default=None, help="a fraction shares a GPU")
    sweep.add_argument("--max-retries", type=int, default=None, help="retries per failed cell (default 2)")
    sweep.add_argument("--workers", type=int, default=None, help="local pool size (default: what fits)")
    sweep.add_argument("--ray-address", default=None,
                       help="run on Ray: 'auto' (the running cluster), 'ray://HOST:10001', or 'local' (start one here)")
    sweep.add_argument("--device", default="auto", help="device of CPU-only cells (default auto)")
    sweep.add_argument("--quiet", action="store_true", help="plain lines instead of the live table")
    sweep.add_argument("--no-plots", action="store_true", help="final report without PNGs")
    sweep.set_defaults(func=_cmd_sweep)
    return parser


def _key_values(pairs: Sequence[str], what: str) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} entries must look like KEY=VALUE, got {pair!r}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 1e-4 as a string: take numbers in any notation
            try:
                number = float(parsed)
                parsed = int(number) if number.is_integer() and "inf" not in parsed.lower() else number
            except ValueError:
                pass
        out[key] = parsed
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from furl_wrappers.runs.encoder_choice import NOT_PRETRAINED_NOTICE, OFFLINE_VLM_NOTICE
    from furl_wrappers.runs.training import RunSpec, train_run

    console = Console()
    spec = RunSpec(method=args.method, task=args.task, seed=args.seed, steps=args.steps, vlm=args.vlm,
                   goal=args.goal, image_preset=args.image_preset, n_envs=args.n_envs, out=args.out,
                   device=args.device, eval_freq=args.eval_freq,
                   eval_episodes=args.eval_episodes, checkpoint_freq=args.checkpoint_freq,
                   hyperparams=_key_values(args.hyperparams, "--hyperparams"),
                   env_kwargs=_key_values(args.env_kwargs, "--env-kwargs"), resume=args.resume, quiet=args.quiet,
                   trusted=args.trusted)
    from furl_wrappers.runs.run_dir import RunDir

    run_dir = train_run(spec, console=console)
    summary = RunDir(run_dir).read_summary()
    console.print(f"[bold]done[/bold]: {run_dir} — final success {summary['final_success']}, "
                  f"best {summary['best_success']}, {summary['timesteps_done']} steps in {summary['wall_time_s']} s")
    if summary.get("encoder_pretrained") is False:
        console.print(NOT_PRETRAINED_NOTICE, markup=False)
    elif summary.get("encoder_fallback") and summary.get("encoder_spec") == "furl-mw-vlm":
        console.print(OFFLINE_VLM_NOTICE, markup=False)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from furl_wrappers.runs.evaluation import evaluate_run

    result = evaluate_run(args.run_dir, episodes=args.episodes, video=args.video, seed=args.seed, device=args.device,
                          trusted=args.trusted)
    print(f"{args.run_dir}: success rate {result['success_rate']:.2f} (success at the final step; at any step "
          f"{result['success_rate_any_step']:.2f}) over {result['episodes']} episode(s) (eval seed {result['seed']}), "
          f"mean task return {result['mean_task_return']:.1f}")
    if args.video:
        print(f"video: {args.video}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from furl_wrappers.runs.report import report

    written = report(args.run_dirs, args.out, plots=not args.no_plots)
    print(written["markdown"])
    print(f"wrote {written['table']}" + "".join(f", {p}" for p in written["curves"] + written["rvlm"]))
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from furl_wrappers.tasks import ALL_TASKS, INSTRUCTIONS, MT10_TASKS

    table = Table(title="Meta-World tasks" + (" (MT10)" if args.mt10 else ""))
    table.add_column("task")
    table.add_column("MT10")
    table.add_column("instruction")
    for task in MT10_TASKS if args.mt10 else ALL_TASKS:
        table.add_row(task, "yes" if task in MT10_TASKS else "", INSTRUCTIONS[task])
    Console().print(table)
    return 0


def _cmd_goal_image(args: argparse.Namespace) -> int:
    import time

    from PIL import Image
    from rich.console import Console

    from furl_wrappers._atomic import atomic_write
    from furl_wrappers.goal_images import goal_image
    from furl_wrappers.tasks import canonical_task, instruction

    console = Console()
    task = canonical_task(args.task)
    out = args.out or Path(f"{task}-seed{args.seed}-goal.png")
    console.print(f"[bold]{task}[/bold] (seed {args.seed}): \"{instruction(task)}\" — scripted expert rollout…")
    start = time.perf_counter()
    frame, step = goal_image(
        task,
        seed=args.seed,
        camera=args.camera,
        image_size=args.image_size,
        render_quality=args.render_quality,
        use_cache=not args.no_cache,
        return_step=True,
    )
    atomic_write(out, lambda handle: Image.fromarray(frame).save(handle, format="PNG"))
    console.print(f"first success at step {step}; goal image saved to {out} ({time.perf_counter() - start:.1f} s)")
    return 0


def _cmd_pretrain_vlm(args: argparse.Namespace) -> int:
    from furl_wrappers.pretraining import PretrainConfig, run_pretraining

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    config = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            text_adapter=args.text_adapter, paraphrases=not args.no_paraphrases,
                            hard_negatives=args.hard_negatives)
    run_pretraining(out, tasks=args.tasks, expert_episodes=args.expert_episodes,
                    failed_episodes=args.failed_episodes, every=args.every, input_size=args.input_size,
                    data_cache=args.data_cache, workers=args.workers, device=args.device, config=config,
                    val_tasks=args.val_tasks,
                    command="furl " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["pretrain-vlm"] else "",
                    say=lambda line: print(line, flush=True))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from furl_wrappers.runs.sweep import load_grid, run_sweep

    resources = {k: v for k, v in (("cpus", args.cpus_per_run), ("gpus", args.gpus_per_run)) if v is not None}
    grid = load_grid(args.grid, methods=args.methods, tasks=args.tasks, seeds=args.seeds, goal=args.goal,
                     vlm=args.vlm, image_preset=args.image_preset, steps=args.steps, n_envs=args.n_envs,
                     eval_freq=args.eval_freq,
                     eval_episodes=args.eval_episodes, checkpoint_freq=args.checkpoint_freq,
                     hyperparams=_key_values(args.hyperparams, "--hyperparams"),
                     env_kwargs=_key_values(args.env_kwargs, "--env-kwargs"), resources=resources,
                     max_retries=args.max_retries)
    result = run_sweep(grid, args.out, workers=args.workers, ray_address=args.ray_address, device=args.device,
                       quiet=args.quiet, console=Console(), plots=not args.no_plots)
    return 1 if result["failed"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``furl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    from furl_wrappers.encoders.clip import ModelUnavailableError
    from furl_wrappers.runs.run_lock import RunLockedError

    try:
        return int(args.func(args))
    except (ValueError, FileExistsError, FileNotFoundError, ModelUnavailableError, RunLockedError) as exc:
        print(f"furl: error: {exc}", file=sys.stderr)  # bad input: one clear line, no traceback, exit 2
        return 2
    except OSError as exc:  # the machine's side: a full disk, a read-only --out, a lost mount
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"furl: error: {exc.strerror or exc}{where}: free space or choose a writable --out, then run the "
              "same command again (add --resume when the run has a checkpoint)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
