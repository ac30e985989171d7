"""How the relay's two agents train: each runs its algorithm's own ``train(n)``, both on one batch per gradient step.

SB3's ``train(n)`` updates the target networks every ``target_update_interval`` steps *of that call* and logs the
means of its n steps: n calls of ``train(1)`` would update them every step and log the last step only. So the VLM
agent runs ``train(n)`` while the shared buffer notes each batch it draws, then the second agent runs ``train(n)``
and its task-reward view is handed the same batches, in order (:func:`shared_batches`). The second agent logs
through :class:`PrefixLogger` (``task_agent/...``).

Example:
    >>> from stable_baselines3.common.logger import Logger
    >>> parent = Logger(folder=None, output_formats=[])
    >>> PrefixLogger(parent, "task_agent/").record("train/actor_loss", 0.5)
    >>> parent.name_to_value["task_agent/actor_loss"]
    0.5
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import ReplayBufferSamples

__all__ = ["PrefixLogger", "shared_batches"]


class PrefixLogger(Logger):
    """Forwards ``record`` to another logger under a prefix (the relay's task agent logs as ``task_agent/...``)."""

    def __init__(self, parent: Logger, prefix: str) -> None:
        super().__init__(folder=None, output_formats=[])
        self.parent, self.prefix = parent, prefix

    def record(self, key: str, value: Any, exclude: Any = None) -> None:
        self.parent.record(self.prefix + key.split("/", 1)[-1], value, exclude)

    def record_mean(self, key: str, value: Any, exclude: Any = None) -> None:
        self.parent.record_mean(self.prefix + key.split("/", 1)[-1], value, exclude)

    def dump(self, step: int = 0) -> None:
        pass


class _Recording:
    """The shared buffer, noting after each ``sample`` its sampling state: the batch drawn and the batch count."""

    def __init__(self, buffer: Any, states: list[tuple[Any, int]]) -> None:
        self.buffer, self.states = buffer, states

    def __getattr__(self, name: str) -> Any:
        return getattr(self.buffer, name)

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        samples = self.buffer.sample(batch_size, env)
        self.states.append((self.buffer.last_batch, self.buffer.batches_sampled))
        return samples


class _Replaying:
    """The second agent's task-reward view, handed the noted batches in order: before each ``sample`` the shared
    buffer's sampling state is put back as it was right after the VLM agent drew that batch, so the view takes it
    as the buffer's latest batch (once), as when the agents alternated step by step."""

    def __init__(self, view: Any, states: list[tuple[Any, int]]) -> None:
        self.view, self.states = view, states

    def __getattr__(self, name: str) -> Any:
        return getattr(self.view, name)

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        if self.states:
            self.view.buffer.last_batch, self.view.buffer.batches_sampled = self.states.pop(0)
        return self.view.sample(batch_size, env)


@contextmanager
def shared_batches(model: Any, second: Any | None) -> Iterator[None]:
    """Within the block, the batches ``model`` draws from its shared buffer are the ones ``second`` (the relay's
    second agent, reading the buffer's task-reward view; ``None``: no second agent) then trains on, in order."""
    if second is None:
        yield
        return
    states: list[tuple[Any, int]] = []
    buffer, view = model.replay_buffer, second.replay_buffer
    model.replay_buffer, second.replay_buffer = _Recording(buffer, states), _Replaying(view, states)
    try:
        yield
    finally:
        model.replay_buffer, second.replay_buffer = buffer, view
