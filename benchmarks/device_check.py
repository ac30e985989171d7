"""The device check: what only a GPU machine can show, in a few minutes, written to one folder.

Checks (each prints PASS/FAIL with its figures; the exit code is the number of failures):

- float16 encoders: a ViT-B/32-sized random-clip in float16 on CUDA against float32 (embedding cosine ≥ 0.99);
- the reference preset on CUDA (256² full-quality frames, crop, float16): frames not black, rewards finite;
- batched scoring: ``VecFuzzyVLMReward`` over 4 envs equals scoring each frame alone (within float16 tolerance);
- the relay over every backbone family on CUDA (SAC, TQC, CrossQ, DrQ): learns, stays finite, save/load gives
  the same actions.

Throughput (env steps/s, one after another in this process, ``--device`` vs CPU where it says): SB3 SAC (no VLM),
SAC + fixed VLM reward, FuRL during and after relay, each with the ViT-B/32-sized and the tiny encoder; sbx's SAC
when sbx is installed; encoder frames/s at batch 1 and 8 in float32 and float16.

    python benchmarks/device_check.py --out DIR [--device cuda] [--steps 300]

On a machine without CUDA, ``--device cpu`` runs the same code (a dry run of the script, not a GPU figure).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from timing import steps_per_s  # benchmarks/timing.py, beside this script

import furl_wrappers

RESULTS: dict[str, Any] = {"checks": {}, "throughput": {}}


def check(name: str, fn: Callable[[], str]) -> None:
    """Run one check; record PASS with its figures, or FAIL with the error's last line."""
    start = time.perf_counter()
    try:
        detail, ok = fn(), True
    except Exception as err:  # a failed check is reported, the others still run
        detail, ok = f"{type(err).__name__}: {err}"[:300], False
        traceback.print_exc()
    RESULTS["checks"][name] = {"ok": ok, "detail": detail, "seconds": round(time.perf_counter() - start, 1)}
    print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)


def float16_encoder(device: str) -> str:
    from furl_wrappers.encoders import make_encoder

    frames = np.random.default_rng(0).integers(0, 255, (8, 224, 224, 3), dtype=np.uint8)
    full = make_encoder("random-clip", device=device).encode_images(frames).float().cpu()
    half = make_encoder("random-clip", device=device, half=device == "cuda").encode_images(frames).float().cpu()
    cos = float(torch.nn.functional.cosine_similarity(full, half).min())
    assert cos >= 0.99, f"float16 embeddings drift: min cosine {cos:.4f} < 0.99"
    return f"min cosine float16 vs float32 {cos:.4f}"


def reference_preset(device: str) -> str:
    venv = furl_wrappers.make_vlm_vec_env("drawer-open", vlm="random-clip", device=device, mode="raw",
                                          env_kwargs={"image_preset": "reference", "max_episode_steps": 20})
    venv.reset()
    rewards = []
    for _ in range(10):
        _, reward, _, infos = venv.step(np.array([venv.action_space.sample()]))
        rewards.append(float(infos[0]["vlm_reward"]))
    frame = venv.env_method("render", indices=[0])[0]
    venv.close()
    assert frame.shape == (256, 256, 3) and frame.mean() > 10, f"frame {frame.shape}, mean {frame.mean():.1f}"
    assert np.isfinite(rewards).all(), f"non-finite rewards {rewards}"
    return f"256² frames (mean {frame.mean():.0f}/255), r_VLM {min(rewards):.3f}..{max(rewards):.3f}"


def batched_scoring(device: str) -> str:
    venv = furl_wrappers.make_vlm_vec_env("reach", n_envs=4, vlm="random-clip", device=device, mode="raw",
                                          env_kwargs={"max_episode_steps": 20})
    venv.reset()
    _, _, _, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(4)]))
    frames = venv.env_method("render")
    reward = venv.vlm_reward
    alone = [float(reward.score(f[None])[1][0]) for f in frames]  # one frame per forward
    batched = [float(i["vlm_reward"]) for i in infos]
    venv.close()
    gap = float(np.max(np.abs(np.array(alone) - np.array(batched))))
    assert gap < 2e-3, f"batched vs alone differ by {gap}"
    return f"4 envs, max |batched − alone| {gap:.2e}"


def backbones(device: str) -> str:
    from furl_wrappers.backbones import RelayCrossQ, RelayDrQ, RelayTQC
    from furl_wrappers.relay import RelayPolicy

    out = []
    for cls in (RelayPolicy, RelayTQC, RelayCrossQ, RelayDrQ):
        pixels = cls is RelayDrQ
        env_kwargs: dict[str, Any] = {"image_size": 64, "max_episode_steps": 50}
        if pixels:
            env_kwargs.update(observation="pixels", pixel_size=64, action_repeat=1)
        venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", device=device, env_kwargs=env_kwargs)
        model = cls("CnnPolicy" if pixels else "MlpPolicy", venv, learning_starts=100, buffer_size=2000,
                    batch_size=64, seed=0, device=device, relay_lengths=(20,), alignment_kwargs={"batch_size": 32})
        model.learn(300)
        params = [p for p in model.policy.parameters()] + [p for p in model.task_agent.policy.parameters()]
        assert all(torch.isfinite(p).all() for p in params), f"{cls.__name__}: non-finite weights"
        assert next(model.policy.parameters()).device.type == torch.device(device).type
        obs = venv.reset()
        with tempfile.TemporaryDirectory() as tmp:
            model.save(Path(tmp) / "m")
            loaded = cls.load(Path(tmp) / "m", env=venv, device=device)
        same = np.allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0],
                           atol=1e-5)
        assert same, f"{cls.__name__}: loaded model acts differently"
        venv.close()
        out.append(cls.__name__)
    return "learn 300 steps, finite, save/load same actions: " + ", ".join(out)


def throughput(device: str, steps: int) -> None:
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_util import make_vec_env

    from furl_wrappers.relay import RelayPolicy

    common = dict(learning_rate=1e-4, batch_size=256, tau=0.01, gamma=0.99, target_entropy=-2.0, seed=0,
                  buffer_size=100_000)
    env_kwargs = {"max_episode_steps": 100}
    table = RESULTS["throughput"]

    def sac(dev: str) -> Callable[[], Any]:
        return lambda: SAC("MlpPolicy", make_vec_env("furl/drawer-open-v3", seed=0, env_kwargs=env_kwargs),
                           device=dev, **common)

    def vlm(config: str, size: str) -> Callable[[], Any]:
        def build() -> Any:
            venv = furl_wrappers.make_vlm_vec_env("drawer-open", vlm="random-clip" + size, device=device,
                                                  mode="raw" if config == "sac+vlm" else "learned",
                                                  env_kwargs=env_kwargs)
            if config == "sac+vlm":
                return SAC("MlpPolicy", venv, device=device, **common)
            threshold = 10**9 if config == "furl during relay" else 0
            return RelayPolicy("MlpPolicy", venv, relay_threshold=threshold, device=device, **common)
        return build

    table[f"SB3 SAC ({device})"] = steps_per_s(sac(device)(), steps, 300)
    if device != "cpu":
        table["SB3 SAC (cpu)"] = steps_per_s(sac("cpu")(), steps, 300)
    try:
        import sbx

        def sbx_sac() -> Any:
            return sbx.SAC("MlpPolicy", make_vec_env("furl/drawer-open-v3", seed=0, env_kwargs=env_kwargs),
                           learning_rate=1e-4, batch_size=256, tau=0.01, gamma=0.99, seed=0, buffer_size=100_000)
        table["sbx SAC"] = steps_per_s(sbx_sac(), steps, 300)
    except ImportError:
        table["sbx SAC"] = "sbx not installed"
    for size, label in (("", "ViT-B/32 size"), (":tiny", "tiny")):
        for config in ("sac+vlm", "furl during relay", "furl after relay"):
            table[f"{config}, {label} ({device})"] = steps_per_s(vlm(config, size)(), steps, 300)
    for name, rate in table.items():
        if "encoder" not in name:  # (encoder_rates printed its frames/s already)
            print(f"  {name}: {rate if isinstance(rate, str) else f'{rate:.1f} steps/s'}", flush=True)


def encoder_rates(device: str) -> None:
    from furl_wrappers.encoders import make_encoder

    for half in (False, True) if device == "cuda" else (False,):
        encoder = make_encoder("random-clip", device=device, half=half)
        for batch in (1, 8):
            frames = np.random.default_rng(0).integers(0, 255, (batch, 224, 224, 3), dtype=np.uint8)
            encoder.encode_images(frames)  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            start, n = time.perf_counter(), 20
            for _ in range(n):
                encoder.encode_images(frames)
            if device == "cuda":
                torch.cuda.synchronize()
            rate = n * batch / (time.perf_counter() - start)
            dtype = "float16" if half else "float32"
            RESULTS["throughput"][f"ViT-B/32-sized encoder, {dtype}, batch {batch} (frames/s)"] = rate
            print(f"  encoder {'float16' if half else 'float32'} batch {batch}: {rate:.0f} frames/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    RESULTS["machine"] = {"device": args.device, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available()
                          else None, "torch": torch.__version__, "python": platform.python_version(),
                          "date": time.strftime("%Y-%m-%d"), "cpu_threads": torch.get_num_threads()}
    print(json.dumps(RESULTS["machine"]), flush=True)
    for name, fn in (("float16 encoder", float16_encoder), ("reference preset", reference_preset),
                     ("batched scoring", batched_scoring), ("backbones", backbones)):
        check(name, lambda fn=fn: fn(args.device))
    if not args.skip_throughput:
        check("throughput", lambda: (encoder_rates(args.device), throughput(args.device, args.steps), "see table")[2])
    (args.out / "device_check.json").write_text(json.dumps(RESULTS, indent=1))
    lines = ["| measurement | value (env steps/s unless it says frames/s) |", "|---|---|"]
    lines += [f"| {k} | {v if isinstance(v, str) else f'{v:.1f}'} |" for k, v in RESULTS["throughput"].items()]
    lines += [f"| check: {k} | {'PASS' if v['ok'] else 'FAIL'}: {v['detail']} |" for k, v in RESULTS["checks"].items()]
    (args.out / "device_check.md").write_text("\n".join(lines) + "\n")
    failures = sum(not v["ok"] for v in RESULTS["checks"].values())
    print(f"{failures} check(s) failed; results in {args.out}", flush=True)
    raise SystemExit(failures)


if __name__ == "__main__":
    main()
