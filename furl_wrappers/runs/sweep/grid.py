"""A sweep grid: methods × tasks × seeds with shared settings, validated before anything runs.

A grid comes from command-line values, a YAML file, or both (command-line values win). YAML keys::

    methods: [sac, relay, furl]          # zoo_configs names or YAML paths
    tasks: [drawer-open, drawer-close]
    seeds: [0, 1]
    goal: fixed                          # or random
    vlm: furl-mw-vlm                     # encoder for the VLM methods (default: the YAML's, LIV)
    image_preset: fast                   # or reference (default: the YAML's)
    steps: 20000                         # default: each YAML's n_timesteps
    n_envs: 1
    eval_freq: 2000
    eval_episodes: null
    checkpoint_freq: 5000                # how much work a killed cell can lose at most
    hyperparams: {learning_starts: 1000} # overrides for every cell
    env_kwargs: {image_size: 224}
    resources: {cpus: 1, gpus: 0}        # per run (gpus may be a fraction)
    max_retries: 2

The shared settings (``goal`` … ``env_kwargs``) are :class:`~furl_wrappers.runs.training.RunSettings`' fields. Each
cell's run directory is ``<out>/<method>/<task>[-random-goal]/seed<seed>`` (:class:`~.run_dir.RunDir`).

Example:
    >>> grid = SweepGrid(methods=["sac", "furl"], tasks=["drawer-open"], seeds=[0, 1], steps=500)
    >>> [c.name for c in grid.cells("runs/sweep")][:2]
    ['sac/drawer-open/seed0', 'sac/drawer-open/seed1']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from furl_wrappers.envs import check_goal
from furl_wrappers.registration import env_id
from furl_wrappers.runs.run_dir import RunDir
from furl_wrappers.runs.training import RunSettings
from furl_wrappers.runs.zoo_config import ConfigError, load_config
from furl_wrappers.tasks import canonical_task, short_task
from furl_wrappers.validation import check_int

__all__ = ["SweepGrid", "Cell", "GridError", "load_grid"]


class GridError(ValueError):
    """A grid that cannot run (unknown method or task, empty, or resources that do not fit)."""


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    method: str
    task: str
    seed: int
    run_dir: str

    @property
    def name(self) -> str:
        """``method/task/seedN`` (unique within a sweep)."""
        method = Path(self.method).stem if self.method.endswith((".yml", ".yaml")) else self.method
        return f"{method}/{Path(self.run_dir).parent.name}/seed{self.seed}"


@dataclass
class SweepGrid(RunSettings):
    """Methods × tasks × seeds plus the :class:`~furl_wrappers.runs.training.RunSettings` every cell shares (see the
    module docstring)."""

    methods: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    resources: dict[str, float] = field(default_factory=lambda: {"cpus": 1, "gpus": 0})
    max_retries: int = 2

    def __post_init__(self) -> None:
        self.methods = [str(m) for m in (self.methods or [])]
        self.tasks = [canonical_task(t) for t in (self.tasks or [])]  # unknown task: ValueError naming it
        self.seeds = [int(s) for s in (self.seeds or [])]
        self.resources = {"cpus": 1, "gpus": 0, **(self.resources or {})}
        self.validate()

    def validate(self) -> None:
        """Check everything that can be checked without running (each method's YAML against each task)."""
        empty = [name for name in ("methods", "tasks", "seeds") if not getattr(self, name)]
        if empty:
            raise GridError(f"the grid is empty: give at least one value for {', '.join(empty)} "
                            "(e.g. --methods sac furl --tasks drawer-open --seeds 0 1)")
        for name in ("methods", "tasks", "seeds"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise GridError(f"{name} lists a value twice: {values}")
        check_goal(self.goal, error=GridError)
        for key in ("steps", "n_envs", "eval_freq", "checkpoint_freq", "eval_episodes"):
            if getattr(self, key) is not None:
                check_int(key, getattr(self, key), error=GridError)
        check_int("max_retries", self.max_retries, 0, error=GridError)
        unknown = set(self.resources) - {"cpus", "gpus"}
        if unknown:
            raise GridError(f"resources takes 'cpus' and 'gpus', got {sorted(unknown)}")
        cpus, gpus = self.resources["cpus"], self.resources["gpus"]
        if not (isinstance(cpus, (int, float)) and cpus > 0) or not (isinstance(gpus, (int, float)) and gpus >= 0):
            raise GridError(f"resources need cpus > 0 and gpus >= 0, got {self.resources}")
        for method in self.methods:
            for task in self.tasks:
                try:
                    load_config(method, env_id(task, self.goal), self.hyperparams)
                except ConfigError as err:
                    raise GridError(f"method {method!r} on {short_task(task)}: {err}") from err

    def cells(self, out: str | Path) -> list[Cell]:
        """All cells, methods outermost, seeds innermost."""
        return [Cell(method, task, seed, str(RunDir.default(out, method, task, self.goal, seed).path))
                for method in self.methods for task in self.tasks for seed in self.seeds]

    def run_settings(self) -> dict[str, Any]:
        """The :class:`~furl_wrappers.runs.training.RunSettings` every cell shares, as a dict (a cell's payload)."""
        return self.settings()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_grid(path: str | Path | None = None, **overrides: Any) -> SweepGrid:
    """A grid from a YAML file (optional) with ``overrides`` (``None`` values ignored) on top.

    Raises:
        GridError: unknown keys, unreadable file, or an invalid grid.
    """
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise GridError(f"grid file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise GridError(f"grid file {path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise GridError(f"grid file {path} must be a mapping of keys like methods/tasks/seeds")
    valid = {f.name for f in fields(SweepGrid)}
    unknown = sorted(set(data) - valid)
    if unknown:
        raise GridError(f"unknown grid keys {unknown}; valid keys: {sorted(valid)}")
    for key, value in overrides.items():
        if key not in valid:
            raise GridError(f"unknown grid key {key!r}; valid keys: {sorted(valid)}")
        if value is None or (isinstance(value, (list, dict)) and not value):
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            value = {**data[key], **value}
        data[key] = value
    return SweepGrid(**data)
