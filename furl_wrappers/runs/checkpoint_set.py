"""CheckpointSet: the model, its replay buffer and the step, written together and read back only together.

A run directory's ``checkpoint/`` holds one consistent set::

    model.zip            the model (SB3's zip plus the entries that rebuild it without pickle)
    replay_buffer.npz    the replay buffer: arrays + JSON, no pickle; records the step it was saved at
    meta.json            the step, the RNG states (python, numpy, torch, the action space's) and, per env, how
                         its current episode was started (see below); written last

A new set is written whole into ``checkpoint.new/`` and then swapped in by renames (``checkpoint`` →
``checkpoint.old``, ``checkpoint.new`` → ``checkpoint``, ``checkpoint.old`` removed), so a kill at any moment
leaves one complete set that :meth:`CheckpointSet.recover` puts back in place; :meth:`CheckpointSet.load` refuses
a set whose model, buffer and meta disagree on the step.

Exact resume: sets are taken when every env has just started an episode (all ``dones`` at the last step), after
SB3 stored the step's transition and trained on it. Meta-World envs built by :func:`~furl_wrappers.envs.
make_metaworld_env` report how that episode was started (:meth:`~furl_wrappers.envs.MetaWorldGoal.episode_start`);
on resume each env replays it, so the resumed run continues with the same episodes, batches and weights as an
uninterrupted one (``meta.json``'s ``exact`` says whether that held; envs of other kinds resume inexactly).

Example:
    >>> import tempfile
    >>> ckpt = CheckpointSet(tempfile.mkdtemp() + "/checkpoint")
    >>> ckpt.model.name, ckpt.buffer.name, ckpt.step() is None
    ('model.zip', 'replay_buffer.npz', True)
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from furl_wrappers import rng_state
from furl_wrappers._atomic import atomic_write_text
from furl_wrappers._safe_files import MAX_JSON_BYTES, loads_json, open_regular
from furl_wrappers.runs.buffer_file import load_buffer, save_buffer
from furl_wrappers.serialization import load_model, safe_entry, save_model

__all__ = ["CheckpointSet", "CheckpointError", "capture_rng", "restore_rng"]


class CheckpointError(ValueError):
    """A checkpoint set that cannot be resumed from (incomplete, inconsistent, corrupt, or pickled)."""


def capture_rng(model: Any) -> dict[str, Any]:
    """The global generators' and the model's action-space generator's states, as JSON (see rng_state)."""
    return rng_state.capture(getattr(model, "action_space", None))


def restore_rng(model: Any, state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng` (SB3's load re-seeds every generator with the run's seed)."""
    try:
        rng_state.restore(state, getattr(model, "action_space", None))
    except ValueError as err:
        raise CheckpointError(f"{CheckpointSet.META}: {err}; the checkpoint cannot be resumed") from None


class CheckpointSet:
    """One checkpoint directory and its write/recover/load protocol (see the module docstring).

    Args:
        path: the checkpoint directory (a run directory's ``checkpoint/``).
    """

    MODEL = "model.zip"
    BUFFER = "replay_buffer.npz"
    META = "meta.json"
    #: every name a set writes (nothing else in its folder is furl's)
    NAMES = (MODEL, BUFFER, META)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.staging = self.path.with_name(self.path.name + ".new")
        self.previous = self.path.with_name(self.path.name + ".old")

    def __repr__(self) -> str:
        return f"CheckpointSet({str(self.path)!r})"

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def buffer(self) -> Path:
        return self.path / self.BUFFER

    @property
    def meta(self) -> Path:
        return self.path / self.META

    @staticmethod
    def _read_meta(directory: Path) -> dict[str, Any] | None:
        try:
            with open_regular(directory / CheckpointSet.META, "rb") as handle:  # no link, no FIFO that would hang
                meta = loads_json(handle.read(MAX_JSON_BYTES + 1), str(directory / CheckpointSet.META))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and isinstance(meta.get("num_timesteps"), int) else None

    def read_meta(self) -> dict[str, Any]:
        """``meta.json`` (``{}`` when missing or unreadable)."""
        return self._read_meta(self.path) or {}

    def step(self) -> int | None:
        """The env step the set holds (``None`` without a complete set)."""
        meta = self._read_meta(self.path)
        return None if meta is None else int(meta["num_timesteps"])

    def exists(self) -> bool:
        """A set is in place or can be put back by :meth:`recover`: a complete one (its ``meta.json``, written
        last, is readable), or a damaged ``checkpoint/`` that :meth:`load` refuses, naming it (never dropped)."""
        return (any(self._read_meta(d) is not None for d in (self.path, self.staging, self.previous))
                or (self.path.is_dir() and any(p.suffix in (".zip", ".npz", ".json")
                                               for p in self.path.iterdir())))

    # ------------------------------------------------------------------ write
    def write(self, model: Any, *, episode_starts: list[dict[str, Any]] | None = None,
              wall_time_s: float | None = None) -> Path:
        """Write the model, its replay buffer and ``meta.json`` as one set; returns the directory.

        Args:
            model: an SB3 off-policy model.
            episode_starts: per env, how its current (just started) episode was started; ``None``: the resume
                from this set will not be exact.
            wall_time_s: seconds the run has trained (its :class:`~furl_wrappers.runs.run_clock.RunClock`), where
                a resumed run's clock starts again; ``None``: not recorded.
        """
        skipped = safe_entry(model)["skipped"]
        if skipped:  # found now, not at resume: such a set could only be loaded by unpickling it
            raise CheckpointError(f"cannot checkpoint {type(model).__name__}: {', '.join(sorted(skipped))} cannot be "
                                  "stored without pickle (e.g. a lambda schedule: use a number or an SB3 schedule)")
        step = int(model.num_timesteps)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        try:
            save_buffer(model.replay_buffer, self.staging / self.BUFFER, step=step)
            save_model(model, self.staging / self.MODEL)
            meta = {"num_timesteps": step, "time": time.time(), "rng": capture_rng(model),
                    "episode_starts": episode_starts, "exact": episode_starts is not None}
            if wall_time_s is not None:
                meta["wall_time_s"] = round(float(wall_time_s), 2)
            atomic_write_text(self.staging / self.META, json.dumps(meta))
        except BaseException:
            shutil.rmtree(self.staging, ignore_errors=True)  # a full disk: the last complete set stays as it was
            raise
        self._swap_in()
        return self.path

    def _swap_in(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.previous, ignore_errors=True)
            os.replace(self.path, self.previous)
        os.replace(self.staging, self.path)
        shutil.rmtree(self.previous, ignore_errors=True)

    def recover(self) -> int | None:
        """After a kill: put the newest complete set in place and remove the rest; returns its step (or None).

        Call only while holding the run's lock (:class:`~furl_wrappers.runs.run_lock.RunLock`).
        """
        if not self._read_meta(self.path) and not self.path.exists():
            for candidate in (self.staging, self.previous):  # killed between the two renames of _swap_in
                if self._read_meta(candidate):
                    shutil.rmtree(self.path, ignore_errors=True)
                    os.replace(candidate, self.path)
                    break
        for leftover in (self.staging, self.previous):
            shutil.rmtree(leftover, ignore_errors=True)
        if self.path.is_dir():
            for tmp in self.path.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        return self.step()

    # ------------------------------------------------------------------- load
    def load(self, cls: type, env: Any, *, device: str = "auto", trusted: bool = False, **kwargs: Any) -> Any:
        """The model with its replay buffer and RNG states, checked to be one set; arms each env to replay the
        start of the episode it was in (see the module docstring).

        Raises:
            CheckpointError: no complete set, or parts that disagree.
        """
        meta = self._read_meta(self.path)
        if meta is None:
            raise CheckpointError(f"{str(self.path)!r} holds no complete checkpoint ({self.META} is missing or "
                                  "unreadable): restore it, or delete that folder to start the run over")
        step = int(meta["num_timesteps"])
        open_regular(self.model, "rb").close()  # a symlink or a FIFO is refused here, not followed or waited on
        model = load_model(cls, self.model, env=env, device=device, trusted=trusted, **kwargs)
        buffer_step = load_buffer(self.buffer, model.replay_buffer)  # into the model's own buffer, in place
        if not step == int(model.num_timesteps) == buffer_step:
            raise CheckpointError(f"{str(self.path)!r} is inconsistent: meta.json at step {step}, model at "
                                  f"{model.num_timesteps}, replay buffer at {buffer_step}; it cannot be resumed")
        if "rng" in meta:
            restore_rng(model, meta["rng"])
        starts = meta.get("episode_starts")
        if env is not None and starts is not None:
            if len(starts) != env.num_envs:
                raise CheckpointError(f"{str(self.path)!r} was made with {len(starts)} envs, the env has "
                                      f"{env.num_envs}")
            for i, record in enumerate(starts):
                env.env_method("replay_episode_start", record, indices=[i])
        return model
