"""One grid cell on a worker: decide fresh / resume / done from its directory, run it, record what happened.

A cell's directory is a ``furl train`` run directory plus the sweep's own files (all named ``sweep_*``):

- ``sweep_status.json``: state (``running``/``done``/``failed``), attempt, pid and host of the worker, whether it
  resumed and from which step;
- ``sweep_failure_<attempt>.txt``: the traceback of each failed attempt (or how its worker died);
- ``sweep_log.txt``: the run's own output, appended across attempts.

The decision is made from files alone, so it is the same on any node that can see the directory: a
``summary.json`` means done (skipped), ``checkpoint/model.zip`` means resume from it (exact resume, see
:class:`~furl_wrappers.relay.RelayPolicy`), leftover files without a checkpoint are cleared (nothing in them can
be resumed), otherwise the run starts fresh.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from furl_wrappers._atomic import atomic_write_text

__all__ = ["STATUS_FILE", "LOG_FILE", "RECORDED_FAILURE_EXIT", "cell_state", "read_status", "write_status", "record_failure",
           "failure_files", "cell_progress", "run_cell", "cell_main"]

STATUS_FILE = "sweep_status.json"
LOG_FILE = "sweep_log.txt"


def cell_state(run_dir: str | Path) -> str:
    """``"done"``, ``"resumable"``, ``"partial"`` (files but no checkpoint) or ``"new"``."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        return "done"
    if (run_dir / "checkpoint" / "model.zip").is_file():
        return "resumable"
    if run_dir.is_dir() and any(not p.name.startswith("sweep_") for p in run_dir.iterdir()):
        return "partial"
    return "new"


def read_status(run_dir: str | Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write_status(run_dir: str | Path, **status: Any) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / STATUS_FILE, json.dumps({**read_status(run_dir), **status, "updated": time.time()}))


def failure_files(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).glob("sweep_failure_*.txt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def record_failure(run_dir: str | Path, attempt: int, text: str) -> Path:
    """Write ``sweep_failure_<attempt>.txt`` and mark the cell failed (for now)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"sweep_failure_{attempt}.txt"
    atomic_write_text(path, text)
    write_status(run_dir, state="failed", attempt=attempt)
    return path


def cell_progress(run_dir: str | Path) -> tuple[Optional[int], Optional[float]]:
    """(env steps logged so far, last evaluated success rate) read from the run's CSVs."""
    run_dir = Path(run_dir)
    steps: Optional[int] = None
    success: Optional[float] = None
    try:
        with open(run_dir / "evaluations.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        if rows:
            steps, success = int(float(rows[-1]["step"])), float(rows[-1]["success_rate"])
    except (OSError, KeyError, ValueError):
        pass
    try:
        with open(run_dir / "progress.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        values = [r.get("time/total_timesteps") for r in rows if r.get("time/total_timesteps")]
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
        ``{"ok": True, "summary": ..., "resumed_from": step or None}`` or ``{"ok": False, "error": traceback}``.
    """
    run_dir = Path(payload["run_dir"])
    attempt = int(payload.get("attempt", 1))
    state = cell_state(run_dir)
    if state == "done":
        return {"ok": True, "summary": json.loads((run_dir / "summary.json").read_text()), "resumed_from": None}
    run_dir.mkdir(parents=True, exist_ok=True)
    if state == "partial":  # nothing resumable: clear the leftovers, keep the sweep's own files
        for p in run_dir.iterdir():
            if not p.name.startswith("sweep_"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    resumed_from = None
    if state == "resumable":
        try:
            resumed_from = int(json.loads((run_dir / "checkpoint" / "meta.json").read_text())["num_timesteps"])
        except (OSError, ValueError, KeyError):
            resumed_from = -1  # resuming, step unknown
    write_status(run_dir, state="running", attempt=attempt, pid=os.getpid(), host=platform.node(),
                 resumed=state == "resumable", resumed_from=resumed_from, started=time.time())
    threads = payload.get("threads")
    if threads:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    from furl_wrappers.training import RunSpec, train_run

    spec = RunSpec(method=payload["method"], task=payload["task"], seed=int(payload["seed"]), out=str(run_dir),
                   device=payload.get("device", "auto"), resume=state == "resumable", quiet=True,
                   **payload["spec"])
    with open(run_dir / LOG_FILE, "a", buffering=1) as log:
        log.write(f"\n=== attempt {attempt} on {platform.node()} pid {os.getpid()} "
                  f"({'resume' if spec.resume else 'fresh'}) ===\n")
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                train_run(spec)
        except BaseException:  # noqa: BLE001 - every failure is recorded, then reported to the scheduler
            text = traceback.format_exc()
            log.write(text)
            record_failure(run_dir, attempt, text)
            return {"ok": False, "error": text}
    summary = json.loads((run_dir / "summary.json").read_text())
    write_status(run_dir, state="done", attempt=attempt)
    return {"ok": True, "summary": summary, "resumed_from": resumed_from}


#: exit code of a local worker whose cell failed with the failure recorded in the cell's directory
RECORDED_FAILURE_EXIT = 3


def cell_main(payload: dict[str, Any]) -> None:
    """Entry point of a local worker process: exit code 0 when the cell finished, :data:`RECORDED_FAILURE_EXIT`
    when it failed and said why in ``sweep_failure_<attempt>.txt``; any other code means the worker died first."""
    result = run_cell(payload)
    sys.exit(0 if result["ok"] else RECORDED_FAILURE_EXIT)
