"""One grid cell on a worker: decide fresh / resume / done from its run directory, run it, record what happened.

A cell's directory is a ``furl train`` run directory plus the sweep's bookkeeping (status, failure tracebacks,
log; file names and states in :mod:`furl_wrappers.runs.run_dir`). The decision is made from files alone, so it is the
same on any node that can see the directory: a finished run is skipped, an interrupted one resumes from its
checkpoint (exact resume, see :mod:`furl_wrappers.runs.checkpoint_set`), a failed one (files but no checkpoint:
nothing in them can be resumed) starts over, and a new one starts fresh. ``furl train`` makes these moves while
holding the run's lock, so a cell whose directory another live process writes (a second sweep on the same
``--out``) is refused, reported as busy, and left alone.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from furl_wrappers._atomic import atomic_write_text
from furl_wrappers._safe_files import UnsafeFileError, open_regular
from furl_wrappers.runs.run_dir import RunDir
from furl_wrappers.runs.run_lock import RunLockedError
from furl_wrappers.runs.training import RunSpec, train_run

__all__ = ["RECORDED_FAILURE_EXIT", "BUSY_EXIT", "read_status", "write_status", "record_failure", "cell_progress",
           "run_cell", "cell_main"]


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """The cell's sweep status (``{}`` when there is none)."""
    run = RunDir(run_dir)
    return run.read_json(run.sweep_status)


def write_status(run_dir: str | Path, **status: Any) -> None:
    """Update the cell's sweep status with ``status`` (atomically)."""
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.sweep_status, json.dumps({**read_status(run_dir), **status, "updated": time.time()}))


def record_failure(run_dir: str | Path, attempt: int, text: str) -> Path:
    """Write the attempt's failure file and mark the cell failed (for now)."""
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    path = run.sweep_failure(attempt)
    atomic_write_text(path, text)
    write_status(run_dir, state="failed", attempt=attempt)
    return path


def cell_progress(run_dir: str | Path) -> tuple[int | None, float | None]:
    """(env steps logged so far, last evaluated success rate) read from the run's CSVs."""
    run = RunDir(run_dir)
    steps: int | None = None
    success: float | None = None
    rows = run.evaluation_rows()
    if rows:
        last = rows[-1]
        steps = int(last["step"])
        success = last["success"]
    try:
        with open(run.progress, newline="") as f:
            values = [r["time/total_timesteps"] for r in csv.DictReader(f) if r.get("time/total_timesteps")]
        if values:
            steps = max(steps or 0, int(float(values[-1])))
    except (OSError, ValueError):
        pass
    return steps, success


def run_cell(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one cell to completion (or record its failure). Never raises.

    Args:
        payload: ``method``, ``task``, ``seed``, ``run_dir``, ``attempt``, ``spec`` (shared RunSpec fields),
            ``device``, ``threads``.

    Returns:
        ``{"ok": True, "summary": ..., "resumed_from": step or None}``, ``{"ok": False, "error": traceback}``, or
        ``{"ok": False, "busy": message}`` when another live process writes the run (nothing was touched).
    """
    run = RunDir(payload["run_dir"])
    attempt = int(payload.get("attempt", 1))
    state = run.state()
    if state == "finished":
        return {"ok": True, "summary": run.read_summary(), "resumed_from": None}
    if state == "running":
        return {"ok": False, "busy": f"being written by pid {run.live_writer()}"}
    lock = run.lock()
    try:  # before the cell writes anything into the directory: a live writer's files are never touched
        lock.acquire()
    except RunLockedError as exc:
        return {"ok": False, "busy": str(exc)}
    try:
        return _run_locked(payload, run, attempt, lock)
    finally:
        lock.release()


def _run_locked(payload: dict[str, Any], run: RunDir, attempt: int, lock: Any) -> dict[str, Any]:
    state = run.state(holding_lock=True)
    if state == "finished":
        return {"ok": True, "summary": run.read_summary(), "resumed_from": None}
    resume = state == "interrupted"
    resumed_from = (run.checkpoint_step() or -1) if resume else None  # -1: resuming, step unknown
    write_status(run.path, state="running", attempt=attempt, pid=os.getpid(), host=platform.node(),
                 resumed=resume, resumed_from=resumed_from, started=time.time())
    threads = payload.get("threads")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        if int(threads) <= 1 and "jax" not in sys.modules:  # XLA reads its threads once, when JAX is imported
            os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

    spec = RunSpec(method=payload["method"], task=payload["task"], seed=int(payload["seed"]), out=str(run.path),
                   device=payload.get("device", "auto"), resume=resume, quiet=True, **payload["spec"])
    try:
        log = open_regular(run.sweep_log, "a", buffering=1)  # never appended through a link
    except UnsafeFileError as exc:
        return {"ok": False, "error": str(exc)}
    with log:
        log.write(f"\n=== attempt {attempt} on {platform.node()} pid {os.getpid()} "
                  f"({'resume' if spec.resume else 'fresh'}) ===\n")
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                train_run(spec, lock=lock)
        except BaseException:  # noqa: BLE001 - every failure is recorded, then reported to the scheduler
            text = traceback.format_exc()
            log.write(text)
            record_failure(run.path, attempt, text)
            return {"ok": False, "error": text}
    summary = run.read_summary()
    write_status(run.path, state="done", attempt=attempt)
    return {"ok": True, "summary": summary, "resumed_from": resumed_from}


#: exit code of a local worker whose cell failed with the failure recorded in the cell's directory
RECORDED_FAILURE_EXIT = 3
#: exit code of a local worker whose cell another live process writes (nothing touched)
BUSY_EXIT = 4


def cell_main(payload: dict[str, Any]) -> None:
    """Entry point of a local worker process: exit code 0 when the cell finished, :data:`RECORDED_FAILURE_EXIT`
    when it failed and said why in its failure file; any other code means the worker died first."""
    result = run_cell(payload)
    sys.exit(0 if result["ok"] else BUSY_EXIT if result.get("busy") else RECORDED_FAILURE_EXIT)
