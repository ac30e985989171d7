"""Frames/s of render_quality="full" vs "fast" at 224², measured side by side in one process.

Both renderers draw the same env states (a random-action rollout), alternating in rounds so machine noise hits
both alike. Every frame is checked to be non-empty.

    python benchmarks/render.py [--task drawer-open] [--frames 60] [--rounds 3] [--size 224]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import furl_wrappers
from furl_wrappers import FrameRenderer, make_metaworld_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="drawer-open")
    parser.add_argument("--frames", type=int, default=60, help="frames per quality per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    env = make_metaworld_env(args.task, image_size=args.size, render_quality="fast")
    env.reset(seed=0)
    base = env.unwrapped
    renderers = {q: FrameRenderer(base.model, base.data, "corner2", args.size, q) for q in ("full", "fast")}
    for r in renderers.values():
        r.render()  # warm-up (context, shaders)
    seconds = {q: 0.0 for q in renderers}
    frames = {q: 0 for q in renderers}
    empty = 0
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):
        for quality, renderer in renderers.items():
            env.reset()
            for _ in range(args.frames):
                env.step(rng.uniform(-1, 1, 4).astype(np.float32))
                start = time.perf_counter()
                frame = renderer.render()
                seconds[quality] += time.perf_counter() - start
                frames[quality] += 1
                empty += int(frame.max() < 50 or frame.std() < 10)
    fps = {q: frames[q] / seconds[q] for q in renderers}
    print(f"furl_wrappers {furl_wrappers.__version__} | {platform.node()} | {os.cpu_count()} CPUs | "
          f"MUJOCO_GL={os.environ.get('MUJOCO_GL')} | task {args.task} | {args.size}x{args.size}")
    for quality in renderers:
        print(f"  {quality:>4}: {fps[quality]:7.1f} frames/s ({frames[quality]} frames)")
    print(f"  ratio fast/full: {fps['fast'] / fps['full']:.2f}x (target >= 7x, aim 10x)")
    print(f"  empty frames: {empty} of {sum(frames.values())}")
    diff = np.abs(renderers["fast"].render().astype(np.int16) - renderers["full"].render().astype(np.int16))
    print(f"  fast vs full on the same state: mean |pixel diff| {diff.mean():.2f} / 255, median {np.median(diff):.0f}")
    for r in renderers.values():
        r.close()


if __name__ == "__main__":
    main()
