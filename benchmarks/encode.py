"""Cost of the VLM reward per frame: the whole wrapper step against its parts, and batching, side by side.

For n_envs in {1, 8} (SB3 DummyVecEnv of drawer-open, 224² frames, random-clip at ViT-B/32 size):

- ``wrapper``: one step of the vector env with the batched VLM reward (physics + render + preprocess +
  encode + reward + bookkeeping), per frame;
- ``physics``: the same envs stepping without rendering or reward;
- ``render``: rendering the frames; ``forward``: the bare image-tower forward on preprocessed pixels;
- ``overhead`` = (wrapper − physics − render − forward) / (render + forward): preprocessing, reward model,
  stacking and info bookkeeping. Target ≤ 15 %.
- batched per-frame encode cost (n_envs 8) / unbatched (n_envs 1). Target ≤ 0.75×.

    python benchmarks/encode.py [--steps 20] [--vlm random-clip] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

import furl_wrappers
from furl_wrappers import make_metaworld_env
from furl_wrappers.encoders import describe, make_encoder
from furl_wrappers.wrappers import make_vlm_vec_env


def _timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def measure(n_envs: int, steps: int, encoder) -> dict[str, float]:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, n_envs, 4)).astype(np.float32)
    venv = make_vlm_vec_env("drawer-open", n_envs=n_envs, vlm=encoder, monitor=False)
    plain = DummyVecEnv([lambda: make_metaworld_env("drawer-open") for _ in range(n_envs)])
    venv.reset()
    plain.reset()
    venv.step(actions[0])  # warm-up
    out = {}
    it = iter(range(steps))
    out["wrapper"] = _timed(lambda: venv.step(actions[next(it)]), steps)
    it = iter(range(steps))
    out["physics"] = _timed(lambda: plain.step(actions[next(it)]), steps)
    envs = plain.envs
    frames = np.stack([e.render() for e in envs])
    out["render"] = _timed(lambda: [e.render() for e in envs], steps)
    pixels = encoder.preprocess(torch.from_numpy(frames).to(encoder.device))
    model = encoder.model

    def forward() -> None:
        with torch.inference_mode():
            model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()

    forward()
    out["forward"] = _timed(forward, steps)
    out["encode"] = _timed(lambda: encoder.encode_images(frames), steps)
    venv.close()
    plain.close()
    return {k: v / n_envs for k, v in out.items()}  # per frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--vlm", default="random-clip")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    encoder = make_encoder(args.vlm, device=args.device)
    print(f"furl_wrappers {furl_wrappers.__version__} | {platform.node()} | {os.cpu_count()} CPUs | "
          f"torch {torch.__version__} threads {torch.get_num_threads()} | device {encoder.device}"
          + (f" ({torch.cuda.get_device_name()})" if encoder.device.type == "cuda" else ""))
    print(f"encoder: {describe(encoder)}")
    results = {n: measure(n, args.steps, encoder) for n in (1, 8)}
    print(f"{'n_envs':>6} | {'wrapper':>8} {'physics':>8} {'render':>8} {'forward':>8} {'encode':>8} | overhead")
    for n, r in results.items():
        overhead = (r["wrapper"] - r["physics"] - r["render"] - r["forward"]) / (r["render"] + r["forward"])
        r["overhead"] = overhead
        print(f"{n:>6} | " + " ".join(f"{r[k] * 1e3:7.1f}ms" for k in ("wrapper", "physics", "render", "forward",
                                                                        "encode"))
              + f" | {overhead * 100:5.1f} % (target <= 15 %)")
    ratio = results[8]["encode"] / results[1]["encode"]
    print(f"batched per-frame encode (8 envs) / unbatched (1 env): {ratio:.2f}x (target <= 0.75x)")


if __name__ == "__main__":
    main()
