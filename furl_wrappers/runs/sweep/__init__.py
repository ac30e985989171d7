"""``furl sweep``: methods × tasks × seeds on a local process pool or a Ray cluster, resumable, with a live table.

- :mod:`~furl_wrappers.runs.sweep.grid`: the grid (CLI values and/or YAML), validated before anything starts;
- :mod:`~furl_wrappers.runs.sweep.cell`: one cell on a worker — fresh, resumed from its checkpoint, or skipped;
- :mod:`~furl_wrappers.runs.sweep.runner`: scheduling, retries, progress, the final report.

Example:
    >>> from furl_wrappers.runs.sweep import SweepGrid, run_sweep
    >>> grid = SweepGrid(methods=["sac", "furl"], tasks=["drawer-open"], seeds=[0, 1], steps=20_000)
    >>> run_sweep(grid, "runs/sweep")  # doctest: +SKIP
"""
from __future__ import annotations

from furl_wrappers.runs.sweep.cell import cell_progress, read_status
from furl_wrappers.runs.sweep.grid import Cell, GridError, SweepGrid, load_grid
from furl_wrappers.runs.sweep.runner import RAY_INSTALL_HINT, run_sweep

__all__ = ["SweepGrid", "Cell", "GridError", "load_grid", "run_sweep", "cell_progress", "read_status",
           "RAY_INSTALL_HINT"]
