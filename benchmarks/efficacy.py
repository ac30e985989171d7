"""Efficacy at a small budget: methods × tasks × seeds with `furl train`, then `furl report` (Table-1 layout).

Runs go to ``--out/<method>/<task>/seed<seed>`` (finished runs are skipped, interrupted ones resumed), then the
report is written to ``--out/report``. ``--jobs`` runs that many training processes side by side (each with one
torch thread).

    python benchmarks/efficacy.py --methods sac relay furl --tasks drawer-close drawer-open --seeds 0 1 \\
        --steps 15000 --vlm random-clip:tiny --jobs 2
"""

from __future__ import annotations

import argparse
import itertools
import os
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_one(method: str, task: str, seed: int, args: argparse.Namespace) -> tuple[str, float, str]:
    out = Path(args.out) / method / task / f"seed{seed}"
    if (out / "summary.json").exists():
        return str(out), 0.0, "skipped (finished)"
    cmd = [sys.executable, "-m", "furl_wrappers.cli", "train", "--method", method, "--task", task, "--seed",
           str(seed), "--steps", str(args.steps), "--out", str(out), "--quiet", "--device", "cpu",
           "--eval-freq", str(args.eval_freq), "--hyperparams", f"learning_starts={args.learning_starts}"]
    if method != "sac":
        cmd += ["--vlm", args.vlm]
    if args.image_size:
        cmd += ["--env-kwargs", f"image_size={args.image_size}"]
    if out.exists():
        cmd.append("--resume")
    start = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    (out.parent).mkdir(parents=True, exist_ok=True)
    (out.parent / f"seed{seed}.log").write_text(done.stdout + done.stderr)
    status = "ok" if done.returncode == 0 else f"failed ({done.returncode}), see {out.parent}/seed{seed}.log"
    return str(out), time.time() - start, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=["sac", "relay", "furl"])
    parser.add_argument("--tasks", nargs="+", default=["drawer-close", "drawer-open"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=15_000)
    parser.add_argument("--learning-starts", type=int, default=10_000)
    parser.add_argument("--eval-freq", type=int, default=2_500)
    parser.add_argument("--vlm", default="random-clip:tiny")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="runs/efficacy")
    args = parser.parse_args()
    cells = list(itertools.product(args.methods, args.tasks, args.seeds))
    print(f"{len(cells)} runs, {args.steps} steps each, encoder {args.vlm} for the VLM methods", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda cell: run_one(*cell, args), cells))
    for run_dir, seconds, status in results:
        print(f"{run_dir}: {status} ({seconds:.0f} s)")
    finished = [r for r, _, s in results if (Path(r) / "summary.json").exists()]
    if finished:
        from furl_wrappers.report import report

        written = report(finished, Path(args.out) / "report")
        print(written["markdown"])
        wall = {r: json.loads((Path(r) / "summary.json").read_text())["wall_time_s"] for r in finished}
        print("wall time per run (s):", json.dumps(wall, indent=1))


if __name__ == "__main__":
    main()
