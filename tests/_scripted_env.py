"""A tiny hand-scripted env for callback tests: success at chosen steps, known task rewards."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ScriptedSuccessEnv(gym.Env):
    """Episodes of ``length`` steps; ``info["is_success"]`` is true exactly at the steps in ``success_at`` (1-based);
    ``task_reward`` is ``success - 1``; the observation is the step index."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, length: int = 4, success_at: tuple[int, ...] = (2,)) -> None:
        self.observation_space = gym.spaces.Box(-10, 10, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.length, self.success_at, self.t = length, set(success_at), 0
        self.render_mode = "rgb_array"

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        success = self.t in self.success_at
        info = {"is_success": success, "task_reward": float(success) - 1.0}
        return np.full(1, self.t, np.float32), float(success) - 1.0, False, self.t >= self.length, info

    def render(self):
        return np.full((2, 2, 3), self.t, np.uint8)
