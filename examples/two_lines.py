"""Wrap a Meta-World env with the fuzzy VLM reward (two lines) and train SB3 SAC on it.

    python examples/two_lines.py [--steps 20000] [--vlm openai/clip-vit-base-patch32]
"""

import argparse

from stable_baselines3 import SAC

import furl_wrappers


def main(steps: int = 20_000, vlm: str = "openai/clip-vit-base-patch32", image_size: int = 224) -> SAC:
    # the two lines:
    env = furl_wrappers.make_metaworld_env("drawer-open", image_size=image_size)
    env = furl_wrappers.FuzzyVLMRewardWrapper(env, vlm=vlm, mode="raw")  # task reward + 0.05 * cos(text, frame)

    model = SAC("MlpPolicy", env, learning_rate=1e-4, batch_size=256, tau=0.01, learning_starts=min(10_000, steps // 2),
                verbose=0)
    model.learn(steps)
    print(f"trained {model.num_timesteps} steps with {env.describe()}")
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--vlm", default="openai/clip-vit-base-patch32")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    main(args.steps, args.vlm, args.image_size)
