"""FuRL from pixels (paper §5.4): env steps/s of DrQ vs FuRL-pixels side by side, and replay memory per transition.

Throughput — configurations measured one after another in one process, same seeds, the paper's pixel settings
(84×84 frames, stack 3, action repeat 2, batch 256, DrQ's networks):

- ``drq``: plain DrQ, no VLM (the env renders 84×84 directly);
- ``drq+vlm``: DrQ on the fixed VLM reward (``VecFuzzyVLMReward``, raw cosine): one render per step at the VLM's
  size (224, the fast preset), downsized for the policy;
- ``furl relay``: RelayDrQ + alignment while relaying (two DrQ agents train on one batch);
- ``furl after``: the same after the threshold (one agent trains).

Target: FuRL after relay >= 0.8x DrQ + fixed VLM reward. random-clip at ViT-B/32 size (costs what CLIP ViT-B/32
costs; not pretrained) and at a tiny size.

Memory — bytes per stored transition of :class:`~furl_wrappers.pixel_buffer.PixelReplayBuffer` (and the VLM
buffer) against SB3's ``ReplayBuffer`` for the same observations, and the resident memory measured while filling
a buffer with ``--fill`` transitions.

    OMP_NUM_THREADS=1 python benchmarks/pixels.py [--steps 40] [--sizes b32 tiny] [--fill 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from timing import steps_per_s  # benchmarks/timing.py, beside this script

import furl_wrappers
from furl_wrappers.backbones import RelayDrQ
from furl_wrappers.drq import DrQ
from furl_wrappers.pixel_buffer import PixelReplayBuffer, VLMPixelReplayBuffer

CONFIGS = ("drq", "drq+vlm", "furl relay", "furl after")
PIXELS = {"observation": "pixels", "max_episode_steps": 200}  # 100 agent steps per episode (action repeat 2)


def build(config: str, size: str, batch_size: int, seed: int = 0) -> Any:
    common = dict(batch_size=batch_size, seed=seed, device="cpu", buffer_size=20_000)
    if config == "drq":
        env = furl_wrappers.make_metaworld_env("window-open", goal="random", seed=seed, image_size=84, **PIXELS)
        return DrQ("CnnPolicy", env, **common)
    vlm = "random-clip" if size == "b32" else "random-clip:tiny"
    venv = furl_wrappers.make_vlm_vec_env("window-open", goal="random", seed=seed, vlm=vlm, device="cpu",
                                          mode="raw" if config == "drq+vlm" else "learned", env_kwargs=PIXELS)
    if config == "drq+vlm":
        return DrQ("CnnPolicy", venv, **common)
    return RelayDrQ("CnnPolicy", venv, relay_threshold=10**9 if config == "furl relay" else 0,
                    alignment_kwargs={"batch_size": 256}, **common)


def measure(config: str, size: str, steps: int, warmup: int, batch_size: int) -> float:
    # warm-up (and a first episode's frames for stage-1 alignment), 10 updates
    return steps_per_s(build(config, size, batch_size), steps, warmup, prime=10)


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(fill: int) -> None:
    obs = spaces.Box(0, 255, (9, 84, 84), np.uint8)
    act = spaces.Box(-1, 1, (4,), np.float32)
    sb3 = ReplayBuffer(10, obs, act, device="cpu")
    sb3_bytes = sum(getattr(sb3, k).nbytes for k in ("observations", "next_observations", "actions", "rewards",
                                                      "dones", "timeouts")) // 10
    pixel = PixelReplayBuffer(10, obs, act, device="cpu")
    vlm = VLMPixelReplayBuffer(10, obs, act, device="cpu", embedding_dim=512)
    vlm_bytes = vlm.bytes_per_transition + sum(getattr(vlm, k).nbytes for k in
                                               ("embeddings", "task_rewards", "goal_distances")) // 10
    print(f"\nbytes per transition (84x84x3 frames, stack 3, 4 actions, one env): SB3 ReplayBuffer {sb3_bytes:,} | "
          f"PixelReplayBuffer {pixel.bytes_per_transition:,} ({sb3_bytes / pixel.bytes_per_transition:.1f}x less) | "
          f"VLMPixelReplayBuffer, D=512 float16 {vlm_bytes:,}; plus one frame (21,168 B) per episode")
    print(f"2e5 transitions (the paper's DrQ buffer): SB3 {2e5 * sb3_bytes / 1e9:.1f} GB | PixelReplayBuffer "
          f"{2e5 * pixel.bytes_per_transition / 1e9:.2f} GB | VLMPixelReplayBuffer {2e5 * vlm_bytes / 1e9:.2f} GB")
    before = _rss()
    buffer = PixelReplayBuffer(fill, obs, act, device="cpu")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (64, 3, 84, 84), dtype=np.uint8)
    stack = np.concatenate([frames[0]] * 3)[None]
    for t in range(fill):
        nxt = np.concatenate([stack[0, 3:], frames[(t + 1) % 64]])[None]
        done = np.array([(t + 1) % 250 == 0])  # 250-step episodes, as with 500 simulator steps and repeat 2
        buffer.add(stack, nxt, np.zeros((1, 4)), np.zeros(1), done, [{}])
        stack = np.concatenate([frames[0]] * 3)[None] if done[0] else nxt
    grown = _rss() - before
    print(f"measured: resident memory grew by {grown / 1e6:.1f} MB filling {fill:,} transitions = "
          f"{grown / fill:,.0f} B per transition (first frames: {len(buffer.first_frames)} episodes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="measured agent steps per configuration")
    parser.add_argument("--warmup", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sizes", nargs="+", default=["b32", "tiny"])
    parser.add_argument("--fill", type=int, default=20_000)
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    print(f"furl_wrappers {furl_wrappers.__version__} | {platform.node()} | {os.cpu_count()} CPUs | torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads | device=cpu | n_envs 1 | batch {args.batch_size} "
          "| random-clip is NOT pretrained")
    for size in args.sizes:
        print(f"\n=== encoder random-clip:{size} ===")
        print(" ".join(f"{c:>12}" for c in CONFIGS) + "   after/+vlm  relay/+vlm")
        rates = {c: measure(c, size, args.steps, args.warmup, args.batch_size) for c in CONFIGS}
        print(" ".join(f"{rates[c]:>12.2f}" for c in CONFIGS)
              + f"   {rates['furl after'] / rates['drq+vlm']:>9.2f}x {rates['furl relay'] / rates['drq+vlm']:>10.2f}x",
              flush=True)
    print("\nagent steps/s per configuration (2 simulator steps each); target: furl after / drq+vlm >= 0.8x")
    memory(args.fill)


if __name__ == "__main__":
    main()
