"""Bring your own frozen encoder: any object with encode_images, encode_text, dim and device.

Here: a colour-histogram "VLM" (a stand-in for any model you have locally) plugged into the wrapper, the buffer
and FuRL's alignment, unchanged. Subclassing VLMEncoder adds input checks and text caching for free.

    python examples/custom_encoder.py [--steps 2000]
"""

import argparse

import torch

import furl_wrappers
from furl_wrappers.encoders import VLMEncoder
from furl_wrappers.relay import RelayPolicy


class ColourHistogramEncoder(VLMEncoder):
    """8 bins per RGB channel → 24-d image features; texts map to a fixed vector (no language model here)."""

    name = "colour-histogram"
    pretrained = False
    dim = 24

    def _encode_images(self, frames: torch.Tensor) -> torch.Tensor:  # uint8 (N, H, W, 3) on self.device
        bins = (frames.long() // 32).clamp(max=7)  # (N, H, W, 3) in 0..7
        hist = torch.stack([torch.nn.functional.one_hot(bins[..., c], 8).float().mean(dim=(1, 2)) for c in range(3)], 1)
        return hist.reshape(len(frames), 24)

    def _encode_text(self, texts: list[str]) -> torch.Tensor:
        return torch.full((len(texts), 24), 1.0 / 8)


def main(steps: int = 2_000, image_size: int = 64) -> RelayPolicy:
    encoder = ColourHistogramEncoder(device="auto")
    venv = furl_wrappers.make_vlm_vec_env("drawer-open", n_envs=1, vlm=encoder, env_kwargs={"image_size": image_size})
    model = RelayPolicy("MlpPolicy", venv, learning_starts=min(10_000, steps // 2), seed=0)
    model.learn(steps)
    print(f"{encoder.description}: trained {model.num_timesteps} steps, positives {model.replay_buffer.positive_count}")
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    main(args.steps, args.image_size)
