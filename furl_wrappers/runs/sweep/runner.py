"""Scheduling a sweep: a local process pool (default) or a Ray cluster, retries, live table, final report.

Each cell runs in its own worker — a spawned process locally, a Ray task on a cluster — so a crash or a killed
worker costs only that cell's progress since its last checkpoint. Failed attempts are retried up to
``grid.max_retries`` times per invocation (attempt numbers continue across invocations, so no traceback is
overwritten); a retry resumes from the checkpoint. Rerunning the same command skips finished cells.

Example:
    >>> grid = SweepGrid(methods=["sac"], tasks=["reach"], seeds=[0, 1], steps=300)  # doctest: +SKIP
    >>> result = run_sweep(grid, "runs/sweep-demo")  # doctest: +SKIP
    >>> result["done"]  # doctest: +SKIP
    ['sac/reach/seed0', 'sac/reach/seed1']
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Callable

from furl_wrappers._atomic import atomic_write_text
from furl_wrappers.runs.report import report as write_report
from furl_wrappers.runs.run_dir import RunDir
from furl_wrappers.runs.sweep.cell import (
    BUSY_EXIT,
    RECORDED_FAILURE_EXIT,
    cell_main,
    cell_progress,
    record_failure,
    run_cell,
)
from furl_wrappers.runs.sweep.grid import Cell, GridError, SweepGrid

__all__ = ["run_sweep", "LocalBackend", "RayBackend", "RAY_INSTALL_HINT"]

RAY_INSTALL_HINT = "Ray is not installed: pip install 'furl_wrappers[ray]' (or pip install ray) on every node"


class LocalBackend:
    """Cells as spawned processes on this machine, at most ``workers`` at a time; GPUs shared round-robin."""

    def __init__(self, resources: dict[str, float], workers: int | None = None) -> None:
        import torch

        cpus, gpus = float(resources["cpus"]), float(resources["gpus"])
        n_cpu = os.cpu_count() or 1
        self.n_gpu = torch.cuda.device_count()
        if cpus > n_cpu:
            raise GridError(f"each run asks for {cpus:g} CPUs but this machine has {n_cpu}; lower resources.cpus")
        if gpus > 0 and self.n_gpu == 0:
            raise GridError(f"each run asks for {gpus:g} GPUs but this machine has none; set resources.gpus to 0")
        if gpus > 1 and gpus > self.n_gpu:
            raise GridError(f"each run asks for {gpus:g} GPUs but this machine has {self.n_gpu}")
        fit = max(1, int(n_cpu // cpus))
        if gpus > 0:
            fit = min(fit, max(1, int(math.floor(self.n_gpu / gpus + 1e-9))))
        if workers is not None and workers < 1:
            raise GridError(f"workers must be >= 1, got {workers}")
        self.workers = workers or fit
        self.gpus, self.threads = gpus, max(1, int(cpus))
        self._ctx = multiprocessing.get_context("spawn")
        self._slot = 0
        self.description = f"local process pool, {self.workers} worker(s)" + (
            f", {self.n_gpu} GPU(s)" if gpus > 0 else "")

    def start(self, payload: dict[str, Any]) -> Any:
        payload = dict(payload, threads=self.threads)
        if self.gpus > 0:
            payload["device"] = f"cuda:{self._slot % self.n_gpu}"
        elif self.n_gpu:
            payload["device"] = "cpu"  # a CPU-only cell must not take a GPU it did not ask for
        self._slot += 1
        proc = self._ctx.Process(target=cell_main, args=(payload,), daemon=False)
        proc.start()
        return proc

    def poll(self, handle: Any) -> dict[str, Any] | None:
        if handle.is_alive():
            return None
        handle.join()
        if handle.exitcode == 0:
            return {"ok": True}
        if handle.exitcode == RECORDED_FAILURE_EXIT:
            return {"ok": False, "recorded": True}
        if handle.exitcode == BUSY_EXIT:
            return {"ok": False, "busy": "another live process writes it"}
        return {"ok": False, "recorded": False,
                "error": f"worker process {handle.pid} died with exit code {handle.exitcode} "
                         "(negative: killed by that signal) before it could record an error; if it died at "
                         "start-up, its error is in the sweep's own stderr (a script run from stdin cannot be "
                         "re-imported by spawned workers: run it from a file)"}

    def shutdown(self, handles: list[Any]) -> None:
        for h in handles:
            if h.is_alive():
                h.terminate()
                h.join(5)


class RayBackend:
    """Cells as Ray tasks with per-run ``num_cpus`` / ``num_gpus``; uses the running Ray instance if any."""

    def __init__(self, resources: dict[str, float], address: str) -> None:
        try:
            import ray
        except ImportError as err:
            raise GridError(RAY_INSTALL_HINT) from err
        self.ray = ray
        if not ray.is_initialized():
            try:  # "local": start a Ray instance on this machine; else connect to the cluster at the address
                ray.init(address=None if address == "local" else address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise GridError(f"cannot connect to a Ray cluster at {address!r} ({err}); start one with "
                                "`ray start --head` (then --ray-address auto), pass its address, or use "
                                "--ray-address local for a one-machine Ray instance") from err
        total = ray.cluster_resources()
        cpus, gpus = float(resources["cpus"]), float(resources["gpus"])
        if cpus > total.get("CPU", 0) or gpus > total.get("GPU", 0):
            raise GridError(f"each run asks for {cpus:g} CPUs and {gpus:g} GPUs but the Ray cluster has "
                            f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs in all")
        self.options = {"num_cpus": cpus, "num_gpus": gpus, "max_retries": 0}
        self.device = "cuda" if gpus > 0 else "cpu"
        self.threads = max(1, int(cpus))
        self._remote = ray.remote(run_cell)
        self.workers = max(1, int(total.get("CPU", 1) // cpus))
        if gpus > 0:
            self.workers = min(self.workers, max(1, int(total.get("GPU", 0) / gpus + 1e-9)))
        self.description = f"Ray cluster {address} ({total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs)"

    def start(self, payload: dict[str, Any]) -> Any:
        payload = dict(payload, threads=self.threads, device=self.device)
        return self._remote.options(**self.options).remote(payload)

    def poll(self, handle: Any) -> dict[str, Any] | None:
        ready, _ = self.ray.wait([handle], timeout=0)
        if not ready:
            return None
        try:
            result = self.ray.get(handle)
        except Exception as err:  # noqa: BLE001 - a crashed worker or node: the cell is retried
            return {"ok": False, "recorded": False, "error": f"Ray task failed: {type(err).__name__}: {err}"}
        return {**result, "recorded": True}

    def shutdown(self, handles: list[Any]) -> None:
        for h in handles:
            self.ray.cancel(h, force=True)


def _table(rows: dict[str, dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in ("cell", "state", "attempt", "steps", "last success", "note"):
        table.add_column(col)
    colours = {"done": "green", "failed": "red", "running": "cyan", "queued": "white", "retrying": "yellow",
               "busy": "magenta"}
    for name, row in rows.items():
        steps = "" if row.get("steps") is None else str(row["steps"])
        success = "" if row.get("success") is None else f"{row['success']:.2f}"
        table.add_row(name, f"[{colours.get(row['state'], 'white')}]{row['state']}[/]", str(row.get("attempt", 0)),
                      steps, success, row.get("note", ""))
    return table


Rows = dict[str, dict[str, Any]]
Event = Callable[..., None]


def _plan(cells: list[Cell], on_event: Callable[[str, str], None] | None
          ) -> tuple[Rows, list[tuple[Cell, int]], list[str]]:
    """Per cell: left alone (a live writer holds it), done earlier (finished), or queued with its next attempt."""
    rows: Rows = {}
    queue: list[tuple[Cell, int]] = []
    skipped: list[str] = []
    for cell in cells:
        run = RunDir(cell.run_dir)
        previous = len(run.sweep_failures())
        owner = run.live_writer()
        if owner is not None:  # e.g. left running by a sweep whose driver was killed: never two writers
            rows[cell.name] = {"state": "busy", "attempt": previous, "note": f"already running in pid {owner}"}
            if on_event is not None:
                on_event(cell.name, "busy")
        elif run.state() == "finished":
            steps, success = cell_progress(cell.run_dir)
            rows[cell.name] = {"state": "done", "attempt": previous, "steps": steps, "success": success,
                               "note": "finished earlier"}
            skipped.append(cell.name)
        else:
            rows[cell.name] = {"state": "queued", "attempt": previous, "first_attempt": previous + 1}
            queue.append((cell, previous + 1))
    return rows, queue, skipped


def _start_ready(queue: list[tuple[Cell, int]], running: dict[str, tuple[Cell, int, Any]], backend: Any,
                 rows: Rows, shared: dict[str, Any], device: str, event: Event) -> None:
    """Start queued cells while the backend has free workers."""
    while queue and len(running) < backend.workers:
        cell, attempt = queue.pop(0)
        payload = {"method": cell.method, "task": cell.task, "seed": cell.seed, "run_dir": cell.run_dir,
                   "attempt": attempt, "spec": shared, "device": device}
        running[cell.name] = (cell, attempt, backend.start(payload))
        rows[cell.name]["attempt"] = attempt
        resume = RunDir(cell.run_dir).state() == "interrupted"
        event(cell.name, "running", "resuming from checkpoint" if resume else "")


def _settle(cell: Cell, attempt: int, result: dict[str, Any], rows: Rows, queue: list[tuple[Cell, int]],
            max_retries: int, event: Event) -> None:
    """A finished attempt: done, left alone (another writer owns the run), retried, or failed for good."""
    name = cell.name
    if result["ok"]:
        event(name, "done")
        return
    if result.get("busy"):  # a second writer is refused, not retried: the live one owns the run
        event(name, "busy", f"left alone: {result['busy']}")
        return
    if not result.get("recorded"):
        record_failure(cell.run_dir, attempt, result.get("error", "unknown failure") + "\n")
    tries = attempt - rows[name]["first_attempt"] + 1
    if tries <= max_retries:
        queue.append((cell, attempt + 1))
        event(name, "retrying", f"attempt {attempt} failed ({RunDir(cell.run_dir).sweep_failure(attempt)})")
    else:
        event(name, "failed", f"{tries} attempt(s) failed; see the failure files in {cell.run_dir}")


def _poll_running(running: dict[str, tuple[Cell, int, Any]], backend: Any, rows: Rows,
                  queue: list[tuple[Cell, int]], max_retries: int, event: Event) -> None:
    """Refresh each running cell's progress and settle the ones that ended."""
    for name, (cell, attempt, handle) in list(running.items()):
        steps, success = cell_progress(cell.run_dir)
        rows[name].update(steps=steps, success=success)
        result = backend.poll(handle)
        if result is not None:
            del running[name]
            _settle(cell, attempt, result, rows, queue, max_retries, event)


def _finish(rows: Rows, skipped: list[str], cells: list[Cell], out: Path, report: bool, plots: bool,
            console: Any) -> dict[str, Any]:
    """The sweep's result, with the report of the finished cells written and the summary line printed."""
    done = [n for n, r in rows.items() if r["state"] == "done"]
    failed = [n for n, r in rows.items() if r["state"] == "failed"]
    busy = [n for n, r in rows.items() if r["state"] == "busy"]
    written = None
    if report and done:
        by_name = {c.name: c for c in cells}
        written = write_report([by_name[n].run_dir for n in done], out / "report", plots=plots)
        console.print(written["markdown"], markup=False, highlight=False)
        console.print(f"report: {written['table']}", markup=False, highlight=False)
    console.print(f"[furl sweep] {len(done)} done ({len(skipped)} finished earlier), {len(failed)} failed"
                  + (f": {', '.join(failed)}" if failed else "")
                  + (f"; {len(busy)} left alone, already running elsewhere: {', '.join(busy)}" if busy else ""),
                  markup=False, highlight=False)
    return {"done": done, "failed": failed, "skipped": skipped, "busy": busy, "report": None if written is None else
            written["table"], "cells": rows}


def run_sweep(grid: SweepGrid, out: str | Path, *, workers: int | None = None,
              ray_address: str | None = None, device: str = "auto", quiet: bool = False, console: Any = None,
              report: bool = True, plots: bool = True, poll_s: float = 1.0,
              on_event: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Run every cell of ``grid`` into ``out``; see the module docstring.

    Args:
        grid: the validated grid.
        out: results directory (every worker must see it: a shared path on a cluster).
        workers: local pool size (default: as many runs as fit the CPUs/GPUs).
        ray_address: run on Ray (``"auto"``, ``"ray://host:10001"``, ...); ``None``: local processes.
        device: device for local CPU-only cells (``"auto"``).
        quiet: plain lines on state changes instead of a live table.
        report: write ``out/report`` (``furl report`` of the finished cells) at the end.
        on_event: ``on_event(cell_name, state)`` on every state change (used by tests and tools).

    Returns:
        ``{"done", "failed", "skipped", "busy" (cells another live process on this host runs): names; "report":
        path or None; "cells": per-cell rows}``.

    Raises:
        GridError: for resources that do not fit, or Ray requested but not installed — before any cell starts.
    """
    from rich.console import Console

    console = console or Console()
    out = Path(out).resolve()
    cells = grid.cells(out)
    backend: Any = RayBackend(grid.resources, ray_address) if ray_address else LocalBackend(grid.resources, workers)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.json", json.dumps({"grid": grid.to_dict(), "cells": [c.name for c in cells]},
                                                     indent=1))
    rows, queue, skipped = _plan(cells, on_event)

    def event(name: str, state: str, note: str = "") -> None:
        rows[name]["state"] = state
        if note:
            rows[name]["note"] = note
        if quiet:
            console.print(f"[furl sweep] {name}: {state}{' — ' + note if note else ''}", markup=False,
                          highlight=False)
        if on_event is not None:
            on_event(name, state)

    running: dict[str, tuple[Cell, int, Any]] = {}
    shared = grid.run_settings()
    title = f"furl sweep → {out} ({backend.description})"
    live = None
    if not quiet and console.is_terminal:
        from rich.live import Live

        live = Live(_table(rows, title), console=console, refresh_per_second=2)
        live.start()
    elif not quiet:
        quiet = True
    try:
        while queue or running:
            _start_ready(queue, running, backend, rows, shared, device, event)
            time.sleep(poll_s)
            _poll_running(running, backend, rows, queue, grid.max_retries, event)
            if live is not None:
                live.update(_table(rows, title))
    except BaseException:
        backend.shutdown([h for _, _, h in running.values()])
        raise
    finally:
        if live is not None:
            live.update(_table(rows, title))
            live.stop()
    return _finish(rows, skipped, cells, out, report, plots, console)
