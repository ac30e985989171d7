"""Offline alignment benchmark: does FuRL's alignment make r_VLM rank real Meta-World frames by progress?

For each task: roll out Meta-World's scripted expert with action noise (successful episodes, kept until the end
of the first unbroken success run) and failing policies (uniform random actions, and the expert with heavy noise;
labelled by their actual outcome), render fast-path frames at 224² from corner2, encode them with the chosen
encoder, then train the heads with exactly RewardAlignmentCallback's stage-2 losses (a VLMReplayBuffer is filled
with the training episodes and `align_once` is called). On held-out episodes it reports, for raw cosine, random
frozen heads and the aligned heads:

- Spearman correlation of r_VLM with the time step along successful episodes (start → first success);
- ROC-AUC of r_VLM for positive frames (successful episodes, start → success run) vs failed-episode frames.

It also plots r_VLM along one held-out expert episode before/after alignment (PNG).

    python benchmarks/alignment.py --tasks drawer-open button-press-topdown window-open --vlm random-clip
    python benchmarks/alignment.py --tasks reach push ... --vlm furl-mw-vlm random-clip:tiny   # same episodes

``--stage1-steps N`` also compares where stage-1 batches come from (before any success, with the goal image):
heads trained N stage-1 steps on the failing training episodes — the last one left unfinished, as during
training — drawing frames from the whole replay buffer (the reference code's, ``stage1_frames="replay"``) or from
the failed-episode ring (``"failed"``), then scored on the held-out episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

import furl_wrappers
from furl_wrappers.alignment_store import label_episode
from furl_wrappers.callbacks import RewardAlignmentCallback
from furl_wrappers.encoders import describe, make_encoder
from furl_wrappers.metrics import roc_auc, spearman
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.vlm_buffer import VLMReplayBuffer
from furl_wrappers.vlm_reward import VLMReward


def rollout(task: str, kind: str, rng: np.random.Generator, max_steps: int, image_size: int) -> dict:
    """One episode: frames (T, H, W, 3) after each step and success flags (T,). Experts (noise 0.1) stop when
    their first success run ends, or 10 frames into it; failing policies (random, expert with noise 1.0) run on."""
    from furl_wrappers.scripted import run_scripted_episode, scripted_policy

    policy = scripted_policy(task, "random" if kind == "random" else "expert",
                             noise={"expert": 0.1, "noisy": 1.0}.get(kind, 0.0), rng=rng)
    expert = kind == "expert"
    episode = run_scripted_episode(task, 0, policy, max_steps=max_steps, image_size=image_size, render="all",
                                   stop_after_success=9 if expert else None, stop_when_success_run_ends=expert)
    return {"frames": episode.frames, "success": episode.success}


def collect_episodes(task: str, counts: dict, seed: int, max_steps: int, image_size: int) -> list[dict]:
    """Roll out the episodes once (frames kept), so that every encoder is scored on the same frames."""
    rng = np.random.default_rng(seed)
    return [dict(rollout(task, kind, rng, max_steps, image_size), kind=kind)
            for kind, n in counts.items() for _ in range(n)]


def encode_episodes(episodes: list[dict], encoder) -> list[dict]:
    out = []
    for ep in episodes:
        emb = np.concatenate([encoder.encode_images(ep["frames"][i:i + 32]).cpu().numpy()
                              for i in range(0, len(ep["frames"]), 32)])
        out.append({"kind": ep["kind"], "embeddings": emb, "success": ep["success"]})
    return out


def evaluate(model: RewardModel, episodes: list[dict]) -> dict:
    spearmans, pos, neg = [], [], []
    for ep in episodes:
        ok, n_pos = label_episode(ep["success"])
        r = model.reward(torch.as_tensor(ep["embeddings"])).cpu().numpy()
        if ok:
            first = int(np.flatnonzero(ep["success"])[0])
            if first >= 2:
                spearmans.append(spearman(np.arange(first + 1), r[: first + 1]))
            pos.append(r[:n_pos])
        else:
            neg.append(r)
    return {"spearman": float(np.nanmean(spearmans)) if spearmans else float("nan"),
            "auc": roc_auc(np.concatenate(pos), np.concatenate(neg)) if pos and neg else float("nan"),
            "n_success": len(pos), "n_failed": len(neg)}


def run_task(task: str, encoders: list, args) -> list[dict]:
    t0 = time.perf_counter()
    text = furl_wrappers.instruction(task)
    counts_train = {"expert": args.train_episodes, "random": args.train_episodes // 2,
                    "noisy": args.train_episodes - args.train_episodes // 2}
    counts_test = {"expert": args.test_episodes, "random": args.test_episodes // 2,
                   "noisy": args.test_episodes - args.test_episodes // 2}
    train_eps = collect_episodes(task, counts_train, args.seed, args.max_steps, args.image_size)
    test_eps = collect_episodes(task, counts_test, args.seed + 1000, args.max_steps, args.image_size)
    collect_s = time.perf_counter() - t0
    results = []
    for encoder in encoders:
        t1 = time.perf_counter()
        train, test = encode_episodes(train_eps, encoder), encode_episodes(test_eps, encoder)
        encode_s = time.perf_counter() - t1
        models = {
            "raw cosine": RewardModel.from_encoder(encoder, text, mode="raw"),
            "random frozen heads": RewardModel.from_encoder(encoder, text, mode="frozen", seed=args.seed),
            "aligned heads": RewardModel.from_encoder(encoder, text, mode="learned", seed=args.seed),
        }
        before = {name: evaluate(m, test) for name, m in models.items()}
        aligned = models["aligned heads"]
        buf = VLMReplayBuffer(100_000, spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (1,)), device="cpu",
                              lag=args.lag, seed=args.seed, embedding_dtype="float32")
        for ep in train:
            for t, (e, s) in enumerate(zip(ep["embeddings"], ep["success"])):
                done = float(t == len(ep["success"]) - 1)
                buf.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.array([done]),
                        [{"vlm_embedding": e, "is_success": bool(s), "task_reward": float(s) - 1.0}])
        reward = VLMReward(encoder, aligned, text=text, goal_image=None)  # stage 2 only
        callback = RewardAlignmentCallback(reward, batch_size=args.batch_size, lr=args.lr)
        callback.bind(buf, reward)
        torch.manual_seed(args.seed)
        t2 = time.perf_counter()
        for _ in range(args.steps):
            callback.align_once()
        align_s = time.perf_counter() - t2
        after = {name: evaluate(m, test) for name, m in models.items()}
        results.append({"task": task, "vlm": describe(encoder), "before": before, "after": after,
                        "train_positive_frames": buf.positive_count,
                        "train_episodes": {"successful": buf.alignment.successful_episodes,
                                           "failed": buf.alignment.failed_episodes},
                        "collect_s": round(collect_s, 1), "encode_s": round(encode_s, 1),
                        "align_s": round(align_s, 1)})
        if args.stage1_steps:
            results[-1]["stage1"] = stage1_comparison(task, encoder, text, train, test, args)
        tag = "" if len(encoders) == 1 else "_" + "".join(c if c.isalnum() or c in "-." else "_"
                                                          for c in getattr(encoder, "name", "encoder"))
        plot(task, test, models, before_model=RewardModel.from_encoder(encoder, text, mode="learned", seed=args.seed),
             out=Path(args.out) / f"alignment_{task}{tag}.png")
    return results


def plot(task: str, test: list[dict], models: dict, before_model: RewardModel, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = next(e for e in test if e["kind"] == "expert" and e["success"].any())
    first = int(np.flatnonzero(ep["success"])[0])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, model in (("before alignment (random heads)", before_model),
                         ("after alignment", models["aligned heads"]),
                         ("raw cosine", models["raw cosine"])):
        ax.plot(model.reward(torch.as_tensor(ep["embeddings"])).cpu().numpy(), label=label)
    ax.axvline(first, color="gray", linestyle="--", label="first success")
    ax.set_xlabel("step of a held-out expert episode")
    ax.set_ylabel("r_VLM")
    ax.set_title(task)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def stage1_comparison(task: str, encoder, text: str, train: list[dict], test: list[dict], args) -> dict:
    """Stage-1-only alignment from the failing episodes, frames from the whole buffer vs the failed ring."""
    goal = furl_wrappers.goal_image(task, seed=0, image_size=args.image_size)
    failing = [ep for ep in train if not ep["success"].any()]
    out = {}
    for source in ("replay", "failed"):
        heads = RewardModel.from_encoder(encoder, text, mode="learned", seed=args.seed)
        reward = VLMReward(encoder, heads, text=text, goal_image=goal)
        buf = VLMReplayBuffer(100_000, spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (1,)), device="cpu",
                              seed=args.seed, embedding_dtype="float32", vlm_reward=reward)
        for k, ep in enumerate(failing):
            for t, e in enumerate(ep["embeddings"]):
                done = float(t == len(ep["embeddings"]) - 1 and k < len(failing) - 1)  # the last one is unfinished
                buf.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.array([done]),
                        [{"vlm_embedding": e, "is_success": False, "task_reward": -1.0}])
        callback = RewardAlignmentCallback(reward, batch_size=args.batch_size, lr=args.lr, stage1_frames=source)
        callback.bind(buf, reward)
        torch.manual_seed(args.seed)
        steps = sum(bool(callback.align_once()) for _ in range(args.stage1_steps))
        out[source] = {**evaluate(heads, test), "stage1_steps": steps,
                       "frames": int(buf.size()), "ring_frames": int(buf.alignment.num_negative)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["drawer-open", "button-press-topdown", "window-open"])
    parser.add_argument("--vlm", nargs="+", default=["random-clip"],
                        help="one or more encoders, all scored on the same episodes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-episodes", type=int, default=8, help="expert episodes (and as many failing ones)")
    parser.add_argument("--test-episodes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3000, help="alignment steps")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lag", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=150, help="steps per failing episode")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage1-steps", type=int, default=0,
                        help="also compare stage-1 frame sources (whole replay buffer vs failed ring) for N steps")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    encoders = [make_encoder(v, device=args.device) for v in args.vlm]
    print(f"furl_wrappers {furl_wrappers.__version__} | {platform.node()} | {os.cpu_count()} CPUs | "
          f"device {encoders[0].device}")
    for encoder in encoders:
        print(f"encoder: {describe(encoder)}")
    results = []
    for task in args.tasks:
        for res in run_task(furl_wrappers.canonical_task(task), encoders, args):
            results.append(res)
            print(f"\n{res['task']} — {res['vlm']}: train {res['train_episodes']} ({res['train_positive_frames']} "
                  f"positive frames); collect {res['collect_s']} s, encode {res['encode_s']} s, {args.steps} "
                  f"alignment steps {res['align_s']} s")
            print(f"  {'reward':<22} {'Spearman before':>16} {'after':>8} {'AUC before':>11} {'after':>8}")
            for name in res["before"]:
                b, a = res["before"][name], res["after"][name]
                print(f"  {name:<22} {b['spearman']:>16.3f} {a['spearman']:>8.3f} {b['auc']:>11.3f} "
                      f"{a['auc']:>8.3f}")
            for source, r in res.get("stage1", {}).items():
                print(f"  stage 1 only, frames from {source:<7}: Spearman {r['spearman']:.3f}, AUC {r['auc']:.3f} "
                      f"({r['stage1_steps']} steps; buffer {r['frames']} frames, failed ring {r['ring_frames']})")
    summary = {}
    for encoder in encoders:
        rows = [r for r in results if r["vlm"] == describe(encoder)]
        summary[describe(encoder)] = {
            f"median {stage} {metric}": float(np.nanmedian([r[stage][model][metric] for r in rows]))
            for stage, model in (("before", "raw cosine"), ("after", "aligned heads"))
            for metric in ("spearman", "auc")}
    print("\nmedians over tasks (zero-shot = raw cosine before alignment; aligned = heads after):")
    for name, med in summary.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()))
    out = Path(args.out) / "alignment.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"vlm": [describe(e) for e in encoders], "args": vars(args), "results": results,
                               "medians": summary}, indent=1))
    print(f"\nwrote {out} and alignment_<task>*.png")


if __name__ == "__main__":
    main()
