"""Add FuRL to an existing SB3 script: the batched VLM reward, the relabelling buffer, alignment, RelayPolicy.

Starting point — a plain SB3 script::

    env = make_vec_env("furl/drawer-open-v3", n_envs=2)
    model = SAC("MlpPolicy", env)
    model.learn(100_000, callback=EvalCallback(eval_env))

FuRL changes four things (marked below): frames in info, the VLM reward over the vector env, RelayPolicy instead
of SAC (it brings VLMReplayBuffer and RewardAlignmentCallback), and nothing else — EvalCallback,
CheckpointCallback, save/load keep working.

    python examples/sb3_project.py [--steps 30000] [--vlm random-clip]
"""

import argparse

from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env

import furl_wrappers  # registers furl/<task>-v3
from furl_wrappers.relay import RelayPolicy
from furl_wrappers.wrappers import FrameInInfo, VecFuzzyVLMReward


def main(steps: int = 30_000, vlm: str = "openai/clip-vit-base-patch32", image_size: int = 224,
         out: str = "runs/sb3_project") -> RelayPolicy:
    env_kwargs = {"image_size": image_size}
    env = make_vec_env("furl/drawer-open-v3", n_envs=2, seed=0, env_kwargs=env_kwargs,
                       wrapper_class=FrameInInfo)                                   # (1) frames in info
    env = VecFuzzyVLMReward(env, vlm=vlm, rho=0.05, goal_image="auto")             # (2) one batched VLM forward
    eval_env = furl_wrappers.make_metaworld_env("drawer-open", seed=0, **env_kwargs)  # the training instance

    model = RelayPolicy("MlpPolicy", env, vlm_reward=env.vlm_reward,                # (3) FuRL: relay + alignment
                        learning_starts=min(10_000, steps // 2), seed=0)
    model.learn(steps, callback=[EvalCallback(eval_env, eval_freq=max(steps // 4, 1), n_eval_episodes=1),
                                 CheckpointCallback(save_freq=max(steps // 2, 1), save_path=out)])
    model.save(f"{out}/final")
    model.save_replay_buffer(f"{out}/buffer")
    print(f"relay on: {model.relay_active}, positives: {model.replay_buffer.positive_count}, "
          f"alignment stage: {model.alignment_callback.stage}")
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--vlm", default="openai/clip-vit-base-patch32")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", default="runs/sb3_project")
    args = parser.parse_args()
    main(args.steps, args.vlm, args.image_size, args.out)
