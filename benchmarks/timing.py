"""The one timing rule the throughput benchmarks share: warm up, then time ``steps`` env steps of ``learn``.

    >>> steps_per_s(model, steps=300, warmup=200)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any


def steps_per_s(model: Any, steps: int, warmup: int, prime: int = 100) -> float:
    """Env steps/s of ``model.learn(steps)`` after ``warmup`` random steps and ``prime`` steps of updates (so that
    lazy set-up, JAX compilation and the first episode's alignment data fall outside the timing); closes the env."""
    model.learning_starts = warmup
    model.learn(warmup + prime)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    model.env.close()
    return steps / wall
