"""Live training progress with rich: steps, steps/s, ETA, last eval success, relay, positives, alignment stage.

``quiet=True`` — or output that is not a terminal — prints one plain line every 10 % instead (logs and CI).

Example:
    >>> model.learn(100_000, callback=FuRLProgressCallback(total_timesteps=100_000))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

__all__ = ["FuRLProgressCallback", "status_line"]


def status_line(model: Any, eval_callback: Any = None) -> str:
    """``eval 0.00 | relay on | positives 12 | stage 1`` for a model (fields it lacks are left out)."""
    parts = []
    if eval_callback is not None and eval_callback.last_success is not None:
        parts.append(f"eval success {eval_callback.last_success:.2f}")
    if hasattr(model, "relay_active"):
        parts.append(f"relay {'on' if model.relay_active else 'off'}")
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None and hasattr(buffer, "positive_count"):
        parts.append(f"positives {buffer.positive_count}")
    align = getattr(model, "alignment_callback", None)
    if align is not None:
        parts.append(f"alignment stage {align.stage}")
    return " | ".join(parts)


class FuRLProgressCallback(BaseCallback):
    """A rich progress bar with FuRL's status, refreshed every ``refresh_steps`` env steps.

    Args:
        total_timesteps: the run's target ``num_timesteps`` (for ETA).
        eval_callback: a :class:`~furl_wrappers.runs.evaluation.PaperEvalCallback` to read success from.
        quiet: plain lines every 10 % instead of a live bar.
        refresh_steps: env steps between refreshes.
    """

    def __init__(self, total_timesteps: int, eval_callback: Any = None, quiet: bool = False,
                 refresh_steps: int = 50, description: str = "training") -> None:
        super().__init__()
        self.total, self.eval_callback, self.quiet = int(total_timesteps), eval_callback, quiet
        self.refresh_steps, self.description = refresh_steps, description
        self._progress: Any = None
        self._task: Any = None
        self._next_print = 0
        self._start_time = 0.0
        self._start_steps = 0

    def _on_training_start(self) -> None:
        import sys

        self.quiet = self.quiet or not sys.stdout.isatty()  # a live display only makes sense on a terminal
        self._start_time, self._start_steps = time.time(), self.num_timesteps
        self._next_print = self.num_timesteps
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} steps/s"), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"), transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total, completed=self.num_timesteps,
                                                 rate="-", status="")

    def _rate(self) -> float:
        elapsed = max(time.time() - self._start_time, 1e-9)
        return (self.num_timesteps - self._start_steps) / elapsed

    def _on_step(self) -> bool:
        if self.quiet:
            if self.num_timesteps >= self._next_print:
                print(f"[furl] step {self.num_timesteps}/{self.total} | {self._rate():.1f} steps/s | "
                      f"{status_line(self.model, self.eval_callback)}", flush=True)
                self._next_print += max(self.total // 10, 1)
        elif self.n_calls % max(self.refresh_steps // max(self.training_env.num_envs, 1), 1) == 0:
            self._progress.update(self._task, completed=self.num_timesteps, rate=f"{self._rate():.1f}",
                                  status=status_line(self.model, self.eval_callback))
        return True

    def _on_training_end(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.num_timesteps, rate=f"{self._rate():.1f}",
                                  status=status_line(self.model, self.eval_callback))
            self._progress.stop()
            self._progress = None
        elif self.quiet:
            print(f"[furl] done: {self.num_timesteps} steps | {status_line(self.model, self.eval_callback)}",
                  flush=True)
