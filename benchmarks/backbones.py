"""Env steps/s of each relay backbone (SAC, TQC, CrossQ): plain + fixed VLM reward vs FuRL, side by side.

For each algorithm, three configurations measured one after another in one process, same seeds:

- ``+vlm``: the plain algorithm on the fixed VLM reward (``VecFuzzyVLMReward``, raw cosine: wrapper only);
- ``furl relay``: its relay class (RelayPolicy / RelayTQC / RelayCrossQ) + alignment while relaying (two agents
  train);
- ``furl after``: the same after the threshold (relay off: one agent trains).

The target is FuRL after relay >= 0.8x the algorithm + fixed VLM reward. random-clip at ViT-B/32 size (costs what
CLIP ViT-B/32 costs; not pretrained) and at a tiny size (the toolkit's own overhead apart from the encoder).

    OMP_NUM_THREADS=1 python benchmarks/backbones.py [--steps 300] [--warmup 200] [--sizes b32 tiny]
"""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

import numpy as np
import torch
from sb3_contrib import TQC, CrossQ
from stable_baselines3 import SAC
from timing import steps_per_s  # benchmarks/timing.py, beside this script

import furl_wrappers
from furl_wrappers.backbones import RelayCrossQ, RelayTQC
from furl_wrappers.relay import RelayPolicy

ALGOS = {"sac": (SAC, RelayPolicy), "tqc": (TQC, RelayTQC), "crossq": (CrossQ, RelayCrossQ)}
CONFIGS = ("+vlm", "furl relay", "furl after")


def build(algo: str, config: str, size: str, seed: int = 0) -> Any:
    plain, relay = ALGOS[algo]
    vlm = "random-clip" if size == "b32" else "random-clip:tiny"
    venv = furl_wrappers.make_vlm_vec_env("drawer-open", seed=seed, vlm=vlm, device="cpu",
                                          mode="raw" if config == "+vlm" else "learned",
                                          env_kwargs={"max_episode_steps": 100})
    common = dict(batch_size=256, gamma=0.99, target_entropy=-2.0, seed=seed, device="cpu", buffer_size=100_000)
    if algo == "crossq":
        common.update(learning_rate=1e-3, policy_delay=3)
    else:
        common.update(learning_rate=1e-4, tau=0.01)
    if config == "+vlm":
        return plain("MlpPolicy", venv, **common)
    return relay("MlpPolicy", venv, relay_threshold=10**9 if config == "furl relay" else 0, **common)


def measure(algo: str, config: str, size: str, steps: int, warmup: int) -> float:
    return steps_per_s(build(algo, config, size), steps, warmup)  # (+ one episode for stage-1 alignment data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="measured env steps per configuration")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sizes", nargs="+", default=["b32", "tiny"])
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    print(f"furl_wrappers {furl_wrappers.__version__} | {platform.node()} | {os.cpu_count()} CPUs | torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads | device=cpu | n_envs 1 | random-clip is NOT "
          "pretrained")
    for size in args.sizes:
        print(f"\n=== encoder random-clip:{size} ===")
        print(f"{'algorithm':<8} " + " ".join(f"{c:>12}" for c in CONFIGS) + "   after/+vlm  relay/+vlm")
        for algo in ALGOS:
            rates = {c: measure(algo, c, size, args.steps, args.warmup) for c in CONFIGS}
            print(f"{algo:<8} " + " ".join(f"{rates[c]:>12.1f}" for c in CONFIGS)
                  + f"   {rates['furl after'] / rates['+vlm']:>9.2f}x {rates['furl relay'] / rates['+vlm']:>10.2f}x",
                  flush=True)
    print("\nsteps/s per configuration; target: furl after / +vlm >= 0.8x")


if __name__ == "__main__":
    main()
