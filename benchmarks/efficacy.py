"""Efficacy at a small budget: methods × tasks × seeds through `furl sweep`, then `furl report` (Table-1 layout).

A thin wrapper over :func:`furl_wrappers.runs.sweep.run_sweep` with the benchmark's settings: paper hyperparameters
except ``--learning-starts``, the fast image path (``--image-preset``),
CPU, one torch thread per run, ``--jobs`` runs side by side. Runs go to
``--out/<method>/<task>/seed<seed>`` (finished runs are skipped, interrupted ones resumed from their checkpoint);
the report goes to ``--out/report``; each run's wall time is printed at the end.

    python benchmarks/efficacy.py --methods sac relay furl --tasks drawer-close drawer-open --seeds 0 1 \\
        --steps 15000 --vlm random-clip:tiny --jobs 2
"""

from __future__ import annotations

import argparse
import json

from furl_wrappers.runs.run_dir import RunDir
from furl_wrappers.runs.sweep import SweepGrid, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["sac", "relay", "furl"])
    parser.add_argument("--tasks", nargs="+", default=["drawer-close", "drawer-open"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=15_000)
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=None, help="override the configs' batch size (256)")
    parser.add_argument("--goal", default="fixed", choices=["fixed", "random"])
    parser.add_argument("--eval-freq", type=int, default=2_500)
    parser.add_argument("--vlm", default="random-clip:tiny")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--image-preset", default="fast", choices=["fast", "reference"],
                        help="fast (default, the CPU path) or the reference code's pipeline")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="runs/efficacy")
    args = parser.parse_args()
    hyperparams = {"learning_starts": args.learning_starts}
    if args.batch_size is not None:
        hyperparams["batch_size"] = args.batch_size
    grid = SweepGrid(methods=args.methods, tasks=args.tasks, seeds=args.seeds, steps=args.steps, vlm=args.vlm,
                     image_preset=args.image_preset, goal=args.goal,
                     eval_freq=args.eval_freq, hyperparams=hyperparams,
                     env_kwargs={"image_size": args.image_size} if args.image_size else {},
                     resources={"cpus": 1, "gpus": 0}, max_retries=1)
    print(f"{len(grid.cells(args.out))} runs, {args.steps} steps each, encoder {args.vlm} for the VLM methods",
          flush=True)
    result = run_sweep(grid, args.out, workers=args.jobs, device="cpu", quiet=True)
    wall = {}
    for cell in grid.cells(args.out):
        run = RunDir(cell.run_dir)
        if run.state() == "finished":
            wall[cell.name] = run.read_summary()["wall_time_s"]
    print("wall time per run (s):", json.dumps(wall, indent=1))
    if result["failed"]:
        raise SystemExit(f"failed runs: {result['failed']} (see the sweep failure files in their directories)")


if __name__ == "__main__":
    main()
