"""Zero-shot quality of offline VLMs on held-out tasks: instruction retrieval, success AUC, progress Spearman.

Rolls out, per task, the same held-out episodes as ``benchmarks/alignment.py`` (scripted expert with noise 0.1,
kept until its first success run ends; uniform-random and noise-1.0 expert episodes, labelled by outcome), renders
them once on the fast path (corner2, 224²) and scores every encoder on those frames with the raw cosine — no
FuRL heads. Metrics (``furl_wrappers.pretraining.evaluation``): instruction retrieval top-1 among the given
tasks' instructions, matched-vs-mismatched AUC, and per task success-vs-failure AUC and progress Spearman.

    python benchmarks/offline_vlm.py --vlm furl-mw-vlm furl-mw-vlm:v1.pt random-clip:tiny   # MT10 by default

Where the instruction comes from: the task's canonical instruction (``furl_wrappers.instruction``).
``--paraphrase`` also scores each task under a rewording not used in training (MT10 has none there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from alignment import collect_episodes

import furl_wrappers
from furl_wrappers.encoders import describe, make_encoder
from furl_wrappers.pretraining.evaluation import zero_shot_metrics

#: rewordings of the MT10 instructions that appear nowhere in training (for --paraphrase)
MT10_REWORDINGS = {
    "reach-v3": "Move the gripper to the target position.",
    "push-v3": "Slide the puck over to the target.",
    "pick-place-v3": "Pick up the puck and put it at the goal.",
    "door-open-v3": "Swing the door open on its hinge.",
    "drawer-open-v3": "Pull the drawer open.",
    "drawer-close-v3": "Shut the drawer.",
    "button-press-topdown-v3": "Press the button down from above.",
    "peg-insert-side-v3": "Push the peg sideways into the hole.",
    "window-open-v3": "Slide the window open.",
    "window-close-v3": "Slide the window shut.",
}


def embed(episodes: list[dict], encoder) -> list[dict]:
    out = []
    for ep in episodes:
        emb = np.concatenate([encoder.encode_images(ep["frames"][i:i + 64]).cpu().numpy()
                              for i in range(0, len(ep["frames"]), 64)])
        out.append({"embeddings": emb, "success": ep["success"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(furl_wrappers.MT10_TASKS))
    parser.add_argument("--vlm", nargs="+", default=["furl-mw-vlm", "random-clip:tiny"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--test-episodes", type=int, default=4, help="expert episodes (and as many failing ones)")
    parser.add_argument("--max-steps", type=int, default=150, help="steps per failing episode")
    parser.add_argument("--seed", type=int, default=0, help="episodes use seed + 1000, as alignment.py's test set")
    parser.add_argument("--paraphrase", action="store_true", help="also score under MT10_REWORDINGS")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    tasks = [furl_wrappers.canonical_task(t) for t in args.tasks]
    unworded = sorted(set(tasks) - set(MT10_REWORDINGS))
    if args.paraphrase and unworded:
        parser.error(f"--paraphrase has rewordings for the MT10 tasks only, not {unworded}")
    encoders = [make_encoder(v, device=args.device) for v in args.vlm]
    print(f"furl_wrappers {furl_wrappers.__version__} | {platform.node()} | {os.cpu_count()} CPUs | "
          f"device {encoders[0].device} | {time.strftime('%Y-%m-%d')}")
    counts = {"expert": args.test_episodes, "random": args.test_episodes // 2,
              "noisy": args.test_episodes - args.test_episodes // 2}
    t0 = time.perf_counter()
    episodes = {t: collect_episodes(t, counts, args.seed + 1000, args.max_steps, 224) for t in tasks}
    print(f"rendered {sum(len(e['frames']) for eps in episodes.values() for e in eps)} frames of {len(tasks)} "
          f"tasks in {time.perf_counter() - t0:.0f} s")
    wordings = {"instruction": [furl_wrappers.instruction(t) for t in tasks]}
    if args.paraphrase:
        wordings["rewording"] = [MT10_REWORDINGS[t] for t in tasks]
    results = {}
    for encoder in encoders:
        embedded = {t: embed(eps, encoder) for t, eps in episodes.items()}
        for wording, texts in wordings.items():
            m = zero_shot_metrics(embedded, encoder.encode_text(texts).cpu().numpy())
            results[f"{describe(encoder)} | {wording}"] = m
    print(f"\n{'task':<26}" + "".join(f"{'rank / AUC / rho':>22}" for _ in results))
    for t in tasks:
        print(f"{t:<26}" + "".join(f"{m['tasks'][t]['rank']:>8} {m['tasks'][t]['success_auc']:>6.2f} "
                                   f"{m['tasks'][t]['spearman']:>6.2f}" for m in results.values()))
    print()
    for name, m in results.items():
        print(f"{name}: top-1 {m['top1']:.0%} ({round(m['top1'] * len(tasks))}/{len(tasks)}), matched AUC "
              f"{m['matched_auc']:.3f}, median success AUC {m['median_success_auc']:.3f}, median Spearman "
              f"{m['median_spearman']:.3f}")
    out = Path(args.out) / "offline_vlm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
