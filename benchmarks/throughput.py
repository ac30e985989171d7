"""Env steps/s of plain SB3 SAC vs the FuRL configurations, side by side, with a per-part time breakdown.

Configurations (same machine, same seeds, one process, measured one after another in alternating order):

- ``sac``: SB3 SAC on the sparse task reward (no rendering, no VLM);
- ``sac+vlm``: SAC with the fixed VLM reward (``VecFuzzyVLMReward``, raw cosine; wrapper only);
- ``furl relay``: RelayPolicy + alignment while relaying (two agents train);
- ``furl after``: RelayPolicy + alignment after the threshold (relay off: one agent trains).

Each with random-clip at ViT-B/32 size and at a tiny size (so the toolkit's own overhead shows apart from the
encoder), or the shipped offline VLM, for n_envs 1 and 4; and on SB3's SAC (``RelayPolicy``) or sbx's JAX SAC
(``--backbones sbx``: ``SbxSAC``, ``RelaySbxSAC``; the jax extra), XLA held to one thread. Warm-up steps are
excluded; episodes are 100 steps so that alignment (stage 1, goal image) runs. The breakdown attributes wall time
per env step to: env physics, render, preprocess, encoder forward, reward model, buffer add, relabel (r_VLM at
sampling), alignment step, SAC updates.

    python benchmarks/throughput.py [--steps 300] [--warmup 200] [--sizes b32 tiny offline] [--n-envs 1 4]
                                    [--backbones sb3 sbx]
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402 - XLA's flags must be set before JAX is imported
import platform  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import furl_wrappers  # noqa: E402

#: --sizes: random-clip at ViT-B/32 size and tiny; the shipped offline VLM (the study's, on the fast path)
VLMS = {"b32": "random-clip", "tiny": "random-clip:tiny", "offline": "furl-mw-vlm"}
PARTS = ["env physics", "render", "preprocess", "encoder forward", "reward model", "buffer add", "relabel",
         "alignment step", "SAC updates"]


class Timers:
    """Patches methods to accumulate their wall time under labels (nested calls subtract where asked)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self._patches: list[tuple[Any, str, Any]] = []

    def patch(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        timers = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timers.total[label] += time.perf_counter() - start

        setattr(owner, name, timed)
        self._patches.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches.clear()

    def reset(self) -> None:
        self.total.clear()


def instrument(timers: Timers, backbones: list[str]) -> None:
    from stable_baselines3 import SAC

    from furl_wrappers.callbacks import RewardAlignmentCallback
    from furl_wrappers.encoders.clip import CLIPEncoder
    from furl_wrappers.encoders.offline import OfflineVLMEncoder
    from furl_wrappers.encoders.preprocessing import ImagePreprocessor
    from furl_wrappers.envs import MetaWorldGoal
    from furl_wrappers.rendering import FrameRenderer
    from furl_wrappers.reward_model import RewardModel
    from furl_wrappers.vlm_buffer import VLMReplayBuffer
    from furl_wrappers.vlm_reward import VLMReward

    timers.patch(MetaWorldGoal, "step", "env physics")
    timers.patch(FrameRenderer, "render", "render")
    timers.patch(ImagePreprocessor, "__call__", "preprocess")
    timers.patch(CLIPEncoder, "_encode_images", "encode (incl. preprocess)")
    timers.patch(OfflineVLMEncoder, "_encode_images", "encode (incl. preprocess)")  # its resize counts as forward
    timers.patch(RewardModel, "reward", "reward model (all)")
    timers.patch(VLMReplayBuffer, "add", "buffer add")
    timers.patch(VLMReward, "relabel", "relabel")
    timers.patch(RewardAlignmentCallback, "align_once", "alignment step")
    timers.patch(SAC, "train", "SAC updates (incl. relabel)")
    if "sbx" in backbones:
        import sbx

        timers.patch(sbx.SAC, "train", "SAC updates (incl. relabel)")


def breakdown(timers: Timers, steps: int) -> dict[str, float]:
    t = timers.total
    out = {
        "env physics": t["env physics"], "render": t["render"], "preprocess": t["preprocess"],
        "encoder forward": t["encode (incl. preprocess)"] - t["preprocess"],
        # reward-model calls inside relabel are counted as relabel
        "reward model": max(t["reward model (all)"] - t["relabel"], 0.0),
        "buffer add": t["buffer add"], "relabel": t["relabel"], "alignment step": t["alignment step"],
        "SAC updates": t["SAC updates (incl. relabel)"] - t["relabel"],
    }
    return {k: 1e3 * v / steps for k, v in out.items()}  # ms per env step


def build(config: str, size: str, n_envs: int, backbone: str = "sb3", seed: int = 0) -> Any:
    from stable_baselines3.common.env_util import make_vec_env

    if backbone == "sbx":
        from furl_wrappers.jax_backbones import RelaySbxSAC as RelayPolicy
        from furl_wrappers.jax_backbones import SbxSAC as SAC
    else:
        from stable_baselines3 import SAC

        from furl_wrappers.relay import RelayPolicy

    env_kwargs = {"max_episode_steps": 100}
    common = dict(learning_rate=1e-4, batch_size=256, tau=0.01, gamma=0.99, target_entropy=-2.0, seed=seed,
                  device="cpu", buffer_size=100_000, policy_kwargs={"net_arch": [256, 256]})
    if config == "sac":
        venv = make_vec_env("furl/drawer-open-v3", n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
        return SAC("MlpPolicy", venv, **common)
    vlm = VLMS[size]
    mode = "raw" if config == "sac+vlm" else "learned"
    venv = furl_wrappers.make_vlm_vec_env("drawer-open", n_envs=n_envs, seed=seed, vlm=vlm, device="cpu", mode=mode,
                                          env_kwargs=env_kwargs)
    if config == "sac+vlm":
        return SAC("MlpPolicy", venv, **common)
    threshold = 10**9 if config == "furl relay" else 0
    return RelayPolicy("MlpPolicy", venv, relay_threshold=threshold, **common)


def measure(config: str, size: str, n_envs: int, steps: int, warmup: int, timers: Timers, backbone: str = "sb3"
            ) -> dict[str, Any]:
    model = build(config, size, n_envs, backbone)
    model.learning_starts = warmup
    model.learn(warmup + 100 * n_envs)  # warm-up, and enough episodes for stage-1 alignment data
    timers.reset()
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    env_steps = steps  # num_timesteps counts env steps over all envs
    model.env.close()
    parts = breakdown(timers, env_steps)
    return {"steps_per_s": env_steps / wall, "ms_per_step": 1e3 * wall / env_steps, "parts": parts,
            "relay_active": getattr(model, "relay_active", None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="measured env steps per configuration")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sizes", nargs="+", default=["b32", "tiny"])
    parser.add_argument("--n-envs", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--backbones", nargs="+", default=["sb3"], choices=["sb3", "sbx"],
                        help="SB3's SAC (RelayPolicy) and/or sbx's JAX SAC (RelaySbxSAC; the jax extra)")
    args = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    timers = Timers()
    instrument(timers, args.backbones)
    print(f"furl_wrappers {furl_wrappers.__version__} | {platform.node()} | {os.cpu_count()} CPUs | torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads | no GPU used (device=cpu) | random-clip is NOT "
          "a pretrained VLM (it costs what CLIP ViT-B/32 costs)")
    results: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    configs = ["sac", "sac+vlm", "furl relay", "furl after"]
    for n_envs in args.n_envs:
        for size in args.sizes:
            for backbone in args.backbones:
                for config in configs:
                    key = (backbone, config, size, n_envs)
                    if config == "sac" and size != args.sizes[0]:  # no frames: the same for every encoder
                        results[key] = results[(backbone, config, args.sizes[0], n_envs)]
                        continue
                    results[key] = measure(config, size, n_envs, args.steps, args.warmup, timers, backbone)
    timers.restore()
    for n_envs in args.n_envs:
        for size in args.sizes:
            sac_sb3 = results.get(("sb3", "sac", args.sizes[0], n_envs), {}).get("steps_per_s")
            for backbone in args.backbones:
                print(f"\n=== {backbone}, n_envs {n_envs}, encoder {VLMS[size]} ({size}) ===")
                print(f"{'config':<12} {'steps/s':>8} {'ms/step':>8} | " + " ".join(f"{p[:10]:>10}" for p in PARTS))
                for config in configs:
                    r = results[(backbone, config, size, n_envs)]
                    print(f"{config:<12} {r['steps_per_s']:>8.1f} {r['ms_per_step']:>8.1f} | "
                          + " ".join(f"{r['parts'].get(p, 0.0):>10.2f}" for p in PARTS))
                fixed = results[(backbone, "sac+vlm", size, n_envs)]["steps_per_s"]
                after = results[(backbone, "furl after", size, n_envs)]
                during = results[(backbone, "furl relay", size, n_envs)]
                print(f"FuRL after relay / SAC+fixed VLM reward: {after['steps_per_s'] / fixed:.2f}x (target >= 0.8x)")
                print(f"FuRL during relay / SAC+fixed VLM reward: {during['steps_per_s'] / fixed:.2f}x "
                      "(target >= 0.45x)")
                if size in ("tiny", "offline"):
                    own = sum(after["parts"][p] for p in ("relabel", "alignment step", "buffer add", "reward model"))
                    print(f"relabel + alignment + buffer bookkeeping + reward, FuRL after relay, {size} encoder: "
                          f"{own:.2f} ms of {after['ms_per_step']:.2f} ms per step = "
                          f"{100 * own / after['ms_per_step']:.1f} % (target <= 10 %)")
                sac = results[(backbone, "sac", args.sizes[0], n_envs)]["steps_per_s"]
                print(f"{backbone} SAC (sparse, no rendering): {sac:.1f} steps/s; FuRL after relay / {backbone} SAC: "
                      f"{after['steps_per_s'] / sac:.2f}x")
                if sac_sb3:
                    print(f"FuRL ({backbone}) after relay / plain SB3 SAC: {after['steps_per_s'] / sac_sb3:.2f}x "
                          "(target >= 1.0x on the fastest path)")


if __name__ == "__main__":
    main()
