"""Render at the size the encoder reads? Speed and fidelity of smaller renders for the offline VLM (64² input).

For each task and seed, the noise-free scripted expert's episode is rendered at 224² (what the offline VLM was
trained on: 224² resized to 64² with antialiasing) and again, state for state, at smaller sizes. Printed per size:
render time per frame, its ratio to 224², and how close the VLM's view stays to the 224² one — the cosine between
the two image embeddings, and the Spearman correlation of the per-frame task scores (cosine to the instruction)
along the episode, which is what the reward ranks.

    python benchmarks/render_size.py [--tasks drawer-open button-press-topdown reach window-open] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from furl_wrappers.encoders import make_encoder
from furl_wrappers.metrics import spearman
from furl_wrappers.scripted import run_scripted_episode, scripted_policy
from furl_wrappers.tasks import instruction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["drawer-open", "button-press-topdown", "reach", "window-open"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 128, 96, 64])
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    torch.set_num_threads(1)
    encoder = make_encoder("furl-mw-vlm", device="cpu")
    rows: dict[int, dict[str, list[float]]] = {s: {"ms": [], "cos": [], "rho": []} for s in args.sizes}
    for task in args.tasks:
        text = encoder.encode_text([instruction(task)])[0]
        for seed in args.seeds:
            ref_scores = ref_emb = None
            for size in args.sizes:
                start = time.perf_counter()
                episode = run_scripted_episode(task, seed, scripted_policy(task), max_steps=args.steps,
                                               image_size=size, stop_after_success=None)
                wall = time.perf_counter() - start
                with torch.no_grad():
                    emb = encoder.encode_images(episode.frames)
                scores = (emb @ text).numpy()
                rows[size]["ms"].append(1e3 * wall / len(episode.frames))
                if ref_emb is None:
                    ref_emb, ref_scores = emb, scores
                    continue
                rows[size]["cos"].append(float(torch.nn.functional.cosine_similarity(emb, ref_emb).mean()))
                rows[size]["rho"].append(float(spearman(scores, ref_scores)))
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread; "
          f"tasks {args.tasks}, seeds {args.seeds}, {args.steps} steps")
    base = float(np.mean(rows[args.sizes[0]]["ms"]))
    print("| render size | ms per step (physics + render) | vs 224² | embedding cosine to 224²'s | score Spearman |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        r = rows[size]
        cos = f"{np.mean(r['cos']):.3f} (min {np.min(r['cos']):.3f})" if r["cos"] else "1"
        rho = f"{np.mean(r['rho']):.3f} (min {np.min(r['rho']):.3f})" if r["rho"] else "1"
        print(f"| {size}² | {np.mean(r['ms']):.2f} | {base / np.mean(r['ms']):.2f}× | {cos} | {rho} |")


if __name__ == "__main__":
    main()
