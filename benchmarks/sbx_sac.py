"""sbx's (JAX) SAC vs SB3's SAC, side by side on one thread: plain, and with the fixed VLM reward.

The speed issue asks whether the JAX backbones pay before building the relay on them: this measures the two
backbones on the same env, settings and seeds, one after another in this process (alternating rounds), with
torch and XLA each held to one thread. Paper settings: lr 1e-4, batch 256, τ 0.01, γ 0.99, (256, 256) networks,
200 warm-up steps, then ``--steps`` measured steps per configuration and round.

    OMP_NUM_THREADS=1 python benchmarks/sbx_sac.py [--steps 1000] [--rounds 2] [--vlm furl-mw-vlm]

Needs ``pip install sbx-rl`` (JAX on CPU).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402 - XLA's flags must be set before JAX is imported
import platform  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import steps_per_s  # noqa: E402 - benchmarks/timing.py, beside this script

import furl_wrappers  # noqa: E402


def main() -> None:
    import sbx
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--vlm", default="furl-mw-vlm")
    args = parser.parse_args()
    torch.set_num_threads(1)
    common = dict(learning_rate=1e-4, batch_size=256, tau=0.01, gamma=0.99, seed=0, buffer_size=100_000,
                  policy_kwargs={"net_arch": [256, 256]})
    env_kwargs = {"max_episode_steps": 100}

    def plain(cls: type) -> Callable[[], Any]:
        return lambda: cls("MlpPolicy", make_vec_env("furl/drawer-open-v3", seed=0, env_kwargs=env_kwargs),
                           **common, **({"device": "cpu"} if cls is SAC else {}))

    def with_vlm(cls: type) -> Callable[[], Any]:
        def build() -> Any:
            venv = furl_wrappers.make_vlm_vec_env("drawer-open", vlm=args.vlm, device="cpu", mode="raw",
                                                  env_kwargs=env_kwargs)
            return cls("MlpPolicy", venv, **common, **({"device": "cpu"} if cls is SAC else {}))
        return build

    configs = {"SB3 SAC": plain(SAC), "sbx SAC": plain(sbx.SAC),
               "SB3 SAC + fixed VLM reward": with_vlm(SAC), "sbx SAC + fixed VLM reward": with_vlm(sbx.SAC)}
    results: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, build in configs.items():
            results[name].append(steps_per_s(build(), args.steps, warmup=200))  # JAX compiles in the warm-up
            print(f"{name}: {results[name][-1]:.1f} steps/s", flush=True)
    print(f"\n{platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__} (1 thread), sbx {sbx.__version__}, "
          f"XLA one thread; {args.steps} steps x {args.rounds} rounds; VLM {args.vlm}")
    print("| configuration | steps/s (rounds) | mean |")
    print("|---|---|---|")
    for name, rates in results.items():
        print(f"| {name} | {' / '.join(f'{r:.1f}' for r in rates)} | {np.mean(rates):.1f} |")
    print(f"sbx SAC / SB3 SAC: {np.mean(results['sbx SAC']) / np.mean(results['SB3 SAC']):.2f}x (target >= 1.4x)")
    fixed = np.mean(results["sbx SAC + fixed VLM reward"]) / np.mean(results["SB3 SAC + fixed VLM reward"])
    print(f"with the fixed VLM reward, sbx / SB3: {fixed:.2f}x")


if __name__ == "__main__":
    main()
