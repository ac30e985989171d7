"""The ``furl`` command line.

Sub-commands:
    furl tasks                      list the 50 Meta-World tasks and their instructions
    furl goal-image TASK [...]      roll out the scripted expert, save the goal image, print the success step

Example:
    $ furl goal-image drawer-open --seed 0 --out drawer-open-goal.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

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
    return parser


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    Image.fromarray(frame).save(tmp, format="PNG")
    tmp.replace(out)
    console.print(f"first success at step {step}; goal image saved to {out} ({time.perf_counter() - start:.1f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``furl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except ValueError as exc:  # bad task names, sizes, ...: one clear line, no traceback
        print(f"furl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
