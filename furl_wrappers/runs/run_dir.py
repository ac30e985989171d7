"""The run directory: its file names, where a run lives, and what state it is in — in one place.

``furl train`` writes one run into a directory (default ``runs/<method>/<task>[-random-goal]/seed<seed>``)::

    config.json            the resolved hyperparameters, task, seed, encoder
    progress.csv           SB3's logger (train/*, rollout/*, furl/*, eval/*); events.out.tfevents.* for
                           TensorBoard when installed
    evaluations.csv        step, success rate, mean task return (paper protocol)
    checkpoint/            model.zip + replay_buffer.npz + meta.json, one consistent set refreshed
                           periodically (for --resume; see furl_wrappers.runs.checkpoint_set)
    .furl_lock             the writer's lock (see furl_wrappers.runs.run_lock)
    .furl_run.json         the run marker, written first: its run id says furl made this directory's run files
                           (only a marked directory is ever written into again, and only furl's own names in it
                           are ever deleted)
    model.zip              the final model
    reward_model_initial.pt / reward_model_final.pt   the reward heads before/after training (tensors only)
    summary.json           written last: the run is finished

``furl sweep`` adds its own bookkeeping, every name starting with ``sweep_``: ``sweep_status.json`` (state,
attempt, pid and host of the worker), ``sweep_failure_<attempt>.txt`` (one traceback per failed attempt) and
``sweep_log.txt`` (the run's output across attempts).

A run's state is decided from these files alone (so the same on any node that sees the directory):

- ``"finished"``: ``summary.json`` exists;
- ``"running"``: a live process holds the run's lock (:class:`~furl_wrappers.runs.run_lock.RunLock`);
- ``"interrupted"``: a checkpoint exists (``--resume`` continues from it);
- ``"failed"``: run files but no checkpoint (stopped before its first checkpoint: nothing to resume; running
  it again starts it over);
- ``"new"``: nothing of a run yet.

Example:
    >>> run = RunDir.default("runs", "furl", "drawer-open", "random", 3)
    >>> str(run.path), run.summary.name
    ('runs/furl/drawer-open-random-goal/seed3', 'summary.json')
    >>> run.state()
    'new'
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, cast

from furl_wrappers._atomic import atomic_write_text
from furl_wrappers._safe_files import (
    MAX_JSON_BYTES,
    CorruptFileError,
    UnsafeFileError,
    check_not_link,
    loads_json,
    open_regular,
)
from furl_wrappers.envs import GoalSetting
from furl_wrappers.registration import run_name
from furl_wrappers.runs.checkpoint_set import CheckpointSet
from furl_wrappers.runs.run_lock import LOCK_NAME, RunLock

__all__ = ["RUN_STATES", "SWEEP_PREFIX", "RunDir", "read_evaluation_rows"]

#: the states of :meth:`RunDir.state`
RUN_STATES: tuple[str, ...] = ("new", "running", "interrupted", "finished", "failed")
#: every file of the sweep's own bookkeeping starts with this
SWEEP_PREFIX = "sweep_"


def read_evaluation_rows(path: str | os.PathLike) -> list[dict[str, float]]:
    """An ``evaluations.csv`` as rows of floats: ``step``, ``success`` (final step), ``success_any_step``,
    ``mean_task_return``. Missing file: ``[]``; a torn last line (a killed write) is skipped."""
    try:
        with open_regular(path, "r", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return []
    out = []
    for row in rows:
        try:
            out.append({key: float(row[key]) for key in ("step", "success", "success_any_step", "mean_task_return")})
        except (KeyError, TypeError, ValueError):
            continue  # a torn last line of a killed run
    return out


class RunDir:
    """Paths and state of one run directory (nothing is created until something is written).

    Args:
        path: the directory.
    """

    CONFIG = "config.json"
    PROGRESS = "progress.csv"
    EVALUATIONS = "evaluations.csv"
    SUMMARY = "summary.json"
    MODEL = "model.zip"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_MODEL = CheckpointSet.MODEL
    CHECKPOINT_BUFFER = CheckpointSet.BUFFER
    CHECKPOINT_META = CheckpointSet.META
    LOCK = LOCK_NAME
    MARKER = ".furl_run.json"
    REWARD_INITIAL = "reward_model_initial.pt"
    REWARD_FINAL = "reward_model_final.pt"
    SWEEP_STATUS = SWEEP_PREFIX + "status.json"
    SWEEP_LOG = SWEEP_PREFIX + "log.txt"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def default(cls, root: str | os.PathLike, method: str, task: str, goal: GoalSetting, seed: int) -> RunDir:
        """``root/<method>/<task>[-random-goal]/seed<seed>``; ``method`` may be a YAML path (its stem is used)."""
        label = Path(method).stem if str(method).endswith((".yml", ".yaml")) else method
        return cls(Path(root) / label / run_name(task, goal) / f"seed{seed}")

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ files
    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def progress(self) -> Path:
        return self.path / self.PROGRESS

    @property
    def evaluations(self) -> Path:
        return self.path / self.EVALUATIONS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def checkpoint_set(self) -> CheckpointSet:
        return CheckpointSet(self.checkpoint)

    @property
    def checkpoint_model(self) -> Path:
        return self.checkpoint / self.CHECKPOINT_MODEL

    @property
    def checkpoint_buffer(self) -> Path:
        return self.checkpoint / self.CHECKPOINT_BUFFER

    @property
    def checkpoint_meta(self) -> Path:
        return self.checkpoint / self.CHECKPOINT_META

    @property
    def reward_initial(self) -> Path:
        return self.path / self.REWARD_INITIAL

    @property
    def reward_final(self) -> Path:
        return self.path / self.REWARD_FINAL

    @property
    def sweep_status(self) -> Path:
        return self.path / self.SWEEP_STATUS

    @property
    def sweep_log(self) -> Path:
        return self.path / self.SWEEP_LOG

    def sweep_failure(self, attempt: int) -> Path:
        """The traceback file of a failed sweep attempt."""
        return self.path / f"{SWEEP_PREFIX}failure_{int(attempt)}.txt"

    def sweep_failures(self) -> list[Path]:
        """The failure files written so far, by attempt."""
        return sorted(self.path.glob(f"{SWEEP_PREFIX}failure_*.txt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))

    def _own_names(self) -> tuple[str, ...]:
        ckpt = CheckpointSet(self.checkpoint)
        return (self.CONFIG, self.PROGRESS, self.EVALUATIONS, self.SUMMARY, self.MODEL, self.CHECKPOINT,
                ckpt.staging.name, ckpt.previous.name, self.REWARD_INITIAL, self.REWARD_FINAL)

    def _is_run_file(self, name: str) -> bool:
        return (name in self._own_names()
                or name.startswith("events.out.tfevents.")  # SB3's TensorBoard output
                or self._is_own_tmp(name))

    def _is_own_tmp(self, name: str) -> bool:
        """A killed atomic write of one of the run's files (``.<name>.<random>.tmp``)."""
        return name.endswith(".tmp") and any(name.startswith(f".{own}.") for own in (*self._own_names(),
                                                                                      self.MARKER))

    def run_files(self) -> list[Path]:
        """The files of the run in the directory (names it writes; not the sweep's bookkeeping, not the lock)."""
        if not self.path.is_dir():
            return []
        return [p for p in self.path.iterdir() if self._is_run_file(p.name)]

    def foreign_files(self) -> list[Path]:
        """Files furl cannot prove it wrote: names that are neither the run's, the sweep's, the lock nor the
        marker, and the run's names too in a directory without a run marker (``furl train`` refuses to write into
        a directory holding any, and never deletes them)."""
        if not self.path.is_dir():
            return []
        marked = self.run_id() is not None
        return [p for p in self.path.iterdir()
                if not ((marked and self._is_run_file(p.name)) or p.name in (self.LOCK, self.MARKER)
                        or p.name.startswith(SWEEP_PREFIX) or p.name.startswith(f".{SWEEP_PREFIX}"))]

    # ------------------------------------------------------------ the run marker
    def run_id(self) -> str | None:
        """The id in the run marker (``None``: no marker, or not one furl wrote)."""
        try:
            with open_regular(self.path / self.MARKER, "rb") as handle:
                marker = loads_json(handle.read(4096), str(self.path / self.MARKER))
        except (OSError, ValueError):
            return None
        run_id = marker.get("run_id") if isinstance(marker, dict) else None
        return run_id if isinstance(run_id, str) and len(run_id) == 32 else None

    def mark(self) -> str:
        """Write the run marker when there is none (call while holding the run's lock, before any run file);
        returns the run id."""
        run_id = self.run_id()
        if run_id is None:
            check_not_link(self.path / self.MARKER)
            run_id = uuid.uuid4().hex
            atomic_write_text(self.path / self.MARKER, json.dumps({"run_id": run_id, "created": time.time()}))
        return run_id

    def clear_run_files(self) -> None:
        """Remove a run that cannot be resumed: only furl's own names in a marked directory (inside its checkpoint
        folders too; anything else there is kept, and refused); keeps the sweep's bookkeeping.

        Raises:
            UnsafeFileError: the directory has no run marker, or a checkpoint folder holds files furl did not
                write (nothing was deleted).
        """
        if self.run_id() is None and self.run_files():
            raise UnsafeFileError(f"{str(self.path)!r} has no furl run marker ({self.MARKER}): its files are not "
                                  "provably furl's, so none is deleted; pass a new or empty --out")
        own = set(CheckpointSet.NAMES)
        for folder in (p for p in self.run_files() if p.is_dir() and not p.is_symlink()):
            others = [q.name for q in folder.iterdir() if not (q.name in own or q.name.startswith(".")
                                                                 and q.name.endswith(".tmp"))]
            if others:
                raise UnsafeFileError(f"{str(folder)!r} holds files furl did not write ({', '.join(others[:3])}): "
                                      "nothing was deleted; move them away or pass another --out")
        for p in self.run_files():
            if p.is_dir() and not p.is_symlink():
                for q in p.iterdir():
                    q.unlink()
                p.rmdir()
            else:
                p.unlink()

    # ------------------------------------------------------------------ reads
    def read_json(self, path: Path) -> dict[str, Any]:
        """A JSON object file of this run (``{}`` when missing, unreadable, malformed or not an object)."""
        try:
            with open_regular(path, "rb") as handle:
                value = loads_json(handle.read(MAX_JSON_BYTES + 1), str(path))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def read_summary(self) -> dict[str, Any]:
        """``summary.json`` (raises ``FileNotFoundError`` naming the directory when the run is not finished, and
        ``CorruptFileError`` when it is malformed)."""
        if not self.summary.is_file():
            raise FileNotFoundError(f"{str(self.path)!r} has no {self.SUMMARY} (not a finished furl run)")
        with open_regular(self.summary, "rb") as handle:
            summary = loads_json(handle.read(MAX_JSON_BYTES + 1), str(self.summary))
        if not isinstance(summary, dict):
            raise CorruptFileError(f"{str(self.summary)!r} is not a JSON object")
        return summary

    def evaluation_rows(self) -> list[dict[str, float]]:
        """``evaluations.csv`` as rows of floats (see :func:`read_evaluation_rows`)."""
        return read_evaluation_rows(self.evaluations)

    def checkpoint_step(self) -> int | None:
        """The env step the checkpoint holds (``None`` without a complete set)."""
        return self.checkpoint_set.step()

    def lock(self) -> RunLock:
        """The run's write lock (not yet taken)."""
        return RunLock(self.path)

    def live_writer(self) -> int | None:
        """The pid of the live process holding the run's lock (``-1`` when held but the pid is unknown), else None.
        Not for the holder itself (see :mod:`furl_wrappers.runs.run_lock`)."""
        holder = self.lock().holder()
        if holder is None:
            return None
        return holder["pid"] if isinstance(holder.get("pid"), int) else -1

    # ---------------------------------------------------- writer-side helpers (call while holding the lock)
    def tidy(self) -> int | None:
        """Recover the newest complete checkpoint set and remove temp files left by killed writes; returns the
        checkpoint's step (``None``: none)."""
        if self.path.is_dir():
            for tmp in self.path.glob(".*.tmp"):
                if self._is_own_tmp(tmp.name):
                    tmp.unlink(missing_ok=True)
        return self.checkpoint_set.recover()

    def rewind_logs(self, step: int) -> None:
        """Drop the log rows written after ``step`` (a resume continues from its checkpoint at ``step``): rows of
        ``progress.csv`` and ``evaluations.csv`` past it go, every earlier row stays."""
        for path, key in ((self.progress, "time/total_timesteps"), (self.evaluations, "step")):
            try:
                with open_regular(path, "r", newline="") as handle:
                    rows = list(csv.reader(handle))
            except FileNotFoundError:
                continue
            if not rows or key not in rows[0]:
                continue
            column = rows[0].index(key)
            kept = [rows[0]]
            for row in rows[1:]:
                try:
                    if len(row) == len(rows[0]) and float(row[column]) <= step:
                        kept.append(row)
                except ValueError:
                    pass  # a torn line of a killed write
            if len(kept) != len(rows):
                text = io.StringIO()
                csv.writer(text, lineterminator="\n").writerows(kept)
                atomic_write_text(path, text.getvalue())

    def logger(self, formats: list[str]) -> Any:
        """SB3's logger for this run: ``progress.csv`` appended to (never truncated, unlike SB3's own CSV format,
        so a resumed run keeps its history), plus the other ``formats`` (e.g. ``"tensorboard"``)."""
        from stable_baselines3.common.logger import Logger, make_output_format

        outputs = [_appending_csv(str(self.progress)) if name == "csv" else make_output_format(name, str(self.path))
                   for name in formats]
        return Logger(str(self.path), outputs)

    def state(self, holding_lock: bool = False) -> str:
        """One of :data:`RUN_STATES` (see the module docstring); ``holding_lock``: asked by the run's own writer,
        which must not probe its own lock (so never ``"running"``)."""
        if self.summary.is_file():
            return "finished"
        if not holding_lock and self.live_writer() is not None:
            return "running"
        if self.checkpoint_set.exists():
            return "interrupted"
        if self.run_files():
            return "failed"
        return "new"



def _appending_csv(filename: str) -> Any:
    """SB3's CSV format continuing an existing file: its header's columns are kept, rows go after its last one
    (SB3's own opens with ``"w+"``, which empties the file of a resumed run)."""
    from stable_baselines3.common.logger import CSVOutputFormat

    output = CSVOutputFormat.__new__(CSVOutputFormat)
    # never through a link; a text-mode open is a TextIOWrapper
    output.file = cast(io.TextIOWrapper, open_regular(filename, "r+", create=True, newline=""))
    existing = os.fstat(output.file.fileno()).st_size > 0
    output.keys, output.separator, output.quotechar = [], ",", '"'
    if existing:
        output.keys = next(csv.reader([output.file.readline()]), [])
        output.file.seek(0, os.SEEK_END)
    return output
