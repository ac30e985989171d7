"""furl sweep: a local grid runs and reports, reruns skip, failures retry then record, killed workers resume."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from furl_wrappers.runs.run_dir import RunDir
from furl_wrappers.runs.sweep import GridError, SweepGrid, load_grid, read_status, run_sweep

TINY_ENV = {"image_size": 32, "max_episode_steps": 40}


def _grid(**kwargs) -> SweepGrid:
    base = dict(methods=["sac", "vlm"], tasks=["reach"], seeds=[0, 1], steps=60, vlm="random-clip:tiny",
                eval_freq=60, checkpoint_freq=30, env_kwargs=TINY_ENV, max_retries=1,
                hyperparams={"learning_starts": 30, "batch_size": 16})
    base.update(kwargs)
    return SweepGrid(**base)


def test_local_grid_completes_reports_and_reruns_skip(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep"
    events: list[tuple[str, str]] = []
    result = run_sweep(_grid(), out, workers=2, quiet=True, plots=False, poll_s=0.2,
                       on_event=lambda name, state: events.append((name, state)))
    names = ["sac/reach/seed0", "sac/reach/seed1", "vlm/reach/seed0", "vlm/reach/seed1"]
    assert sorted(result["done"]) == names and result["failed"] == [] and result["skipped"] == []
    for name in names:
        method, task, seed = name.split("/")
        run = out / method / task / seed  # the layout `furl train` writes
        summary = json.loads((run / "summary.json").read_text())
        assert summary["method"] == method and summary["seed"] == int(seed[4:]) and summary["timesteps_done"] == 60
        assert read_status(run)["state"] == "done" and (run / "sweep_log.txt").is_file()
        assert (name, "running") in events and (name, "done") in events
    table = (out / "report" / "results.md").read_text()
    assert "sac" in table and "vlm" in table
    assert json.loads((out / "sweep.json").read_text())["cells"] == names
    # rerunning the same command starts nothing
    capsys.readouterr()
    again = run_sweep(_grid(), out, workers=2, quiet=True, plots=False, poll_s=0.2)
    assert sorted(again["skipped"]) == names and sorted(again["done"]) == names
    assert "running" not in capsys.readouterr().out


def test_a_cell_running_in_a_live_process_is_left_alone(tmp_path: Path) -> None:
    from furl_wrappers.runs.run_lock import RunLock

    out = tmp_path / "sweep"
    # as if another sweep (or an orphaned worker of a killed one) were training this cell: it holds the lock
    with RunLock(out / "sac" / "reach" / "seed0"):
        result = run_sweep(_grid(methods=["sac"], seeds=[0, 1]), out, workers=2, quiet=True, plots=False, poll_s=0.2)
    assert result["busy"] == ["sac/reach/seed0"] and result["done"] == ["sac/reach/seed1"]
    assert not (out / "sac" / "reach" / "seed0" / "summary.json").exists()


def test_a_cell_taken_by_another_writer_after_the_sweep_started_is_refused_not_retried(tmp_path: Path) -> None:
    from furl_wrappers.runs.run_lock import RunLock
    from furl_wrappers.runs.sweep.cell import run_cell

    cell = tmp_path / "sac" / "reach" / "seed0"
    payload = {"method": "sac", "task": "reach", "seed": 0, "run_dir": str(cell), "attempt": 1,
               "spec": _grid(methods=["sac"], seeds=[0]).run_settings(), "device": "cpu"}
    with RunLock(cell):  # the other writer appeared between the sweep's check and the cell's start
        result = run_cell(payload)
    assert result == {"ok": False, "busy": result["busy"]} and "being written by pid" in result["busy"]
    assert not list(cell.glob("sweep_failure_*")) and RunDir(cell).run_files() == []


def test_failing_cell_is_retried_then_failed_with_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"  # valid YAML that only fails once the worker builds the env
    bad.write_text("furl/reach-v3:\n  n_timesteps: 60\n  policy: MlpPolicy\n  learning_starts: 30\n"
                   "  batch_size: 16\n  env_kwargs: {camera: no-such-camera}\n")
    out = tmp_path / "sweep"
    result = run_sweep(_grid(methods=["sac", str(bad)], seeds=[0]), out, workers=2, quiet=True, plots=False,
                       poll_s=0.2)
    assert result["done"] == ["sac/reach/seed0"] and result["failed"] == ["bad/reach/seed0"]
    cell = out / "bad" / "reach" / "seed0"
    failures = sorted(p.name for p in cell.glob("sweep_failure_*.txt"))
    assert failures == ["sweep_failure_1.txt", "sweep_failure_2.txt"]  # first try + max_retries=1
    assert "camera must be one of" in (cell / "sweep_failure_2.txt").read_text()
    assert "Traceback" in (cell / "sweep_failure_1.txt").read_text()
    assert read_status(cell)["state"] == "failed"
    # a rerun retries it again without overwriting the earlier tracebacks
    run_sweep(_grid(methods=[str(bad)], seeds=[0], max_retries=0), out, quiet=True, plots=False, poll_s=0.2)
    assert (cell / "sweep_failure_3.txt").is_file()


def _kill_after_checkpoint(cell: Path, killed: dict, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = read_status(cell)
        if (cell / "checkpoint" / "meta.json").is_file() and status.get("state") == "running":
            os.kill(int(status["pid"]), signal.SIGKILL)
            killed["step"] = json.loads((cell / "checkpoint" / "meta.json").read_text())["num_timesteps"]
            return
        time.sleep(0.05)


def _check_resumed(cell: Path, killed: dict, steps: int) -> None:
    assert killed.get("step", 0) > 0, "the worker was never killed"
    assert "died" in (cell / "sweep_failure_1.txt").read_text() or "Ray" in (cell / "sweep_failure_1.txt").read_text()
    status = read_status(cell)
    assert status["state"] == "done" and status["attempt"] == 2 and status["resumed"] is True
    assert status["resumed_from"] >= killed["step"]
    assert json.loads((cell / "summary.json").read_text())["timesteps_done"] == steps
    assert "(resume)" in (cell / "sweep_log.txt").read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_killed_local_worker_resumes_from_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    grid = _grid(methods=["sac"], seeds=[0], steps=400, checkpoint_freq=100, eval_freq=400)
    cell = out / "sac" / "reach" / "seed0"
    killed: dict = {}
    killer = threading.Thread(target=_kill_after_checkpoint, args=(cell, killed), daemon=True)
    killer.start()
    result = run_sweep(grid, out, workers=1, quiet=True, plots=False, poll_s=0.1)
    killer.join()
    assert result["done"] == ["sac/reach/seed0"]
    _check_resumed(cell, killed, 400)


def test_ray_grid_with_a_killed_worker(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(GridError, match="GPUs"):
            run_sweep(_grid(resources={"cpus": 1, "gpus": 1}), tmp_path / "nope", ray_address="auto", quiet=True)
        assert not (tmp_path / "nope").exists()
        out = tmp_path / "sweep"
        grid = _grid(methods=["sac"], seeds=[0, 1], steps=300, checkpoint_freq=100, eval_freq=300)
        cell = out / "sac" / "reach" / "seed0"
        killed: dict = {}
        killer = threading.Thread(target=_kill_after_checkpoint, args=(cell, killed), daemon=True)
        killer.start()
        result = run_sweep(grid, out, ray_address="auto", quiet=True, plots=False, poll_s=0.1)
        killer.join()
        assert sorted(result["done"]) == ["sac/reach/seed0", "sac/reach/seed1"]
        _check_resumed(cell, killed, 300)
        assert (out / "report" / "results.md").is_file()
    finally:
        ray.shutdown()


def test_bad_grids_fail_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GridError, match="unknown method|ppo"):
        _grid(methods=["ppo"])
    with pytest.raises(ValueError, match="drawer-opn"):
        _grid(tasks=["drawer-opn"])
    with pytest.raises(GridError, match="empty.*seeds"):
        _grid(seeds=[])
    with pytest.raises(GridError, match="twice"):
        _grid(seeds=[0, 0])
    with pytest.raises(GridError, match="CPUs"):
        run_sweep(_grid(resources={"cpus": 10_000}), tmp_path / "a", quiet=True)
    with pytest.raises(GridError, match="gpus|GPUs"):
        if __import__("torch").cuda.is_available():
            pytest.skip("has a GPU")
        run_sweep(_grid(resources={"cpus": 1, "gpus": 0.5}), tmp_path / "a", quiet=True)
    assert not (tmp_path / "a").exists()
    if __import__("importlib").util.find_spec("ray") is not None:
        import ray

        if not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):  # no cluster: clear error, nothing started
            with pytest.raises(GridError, match="ray start --head"):
                run_sweep(_grid(), tmp_path / "c", ray_address="auto", quiet=True)
            assert not (tmp_path / "c").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(GridError, match=r"pip install 'furl_wrappers\[ray\]'"):
        run_sweep(_grid(), tmp_path / "b", ray_address="auto", quiet=True)
    # YAML grids: unknown keys and command-line overrides
    path = tmp_path / "grid.yml"
    path.write_text("methods: [sac]\ntasks: [reach]\nseeds: [0, 1]\nsteps: 100\nhyperparams: {batch_size: 8}\n")
    grid = load_grid(path, seeds=[3], hyperparams={"learning_starts": 5})
    assert grid.seeds == [3] and grid.steps == 100 and grid.hyperparams == {"batch_size": 8, "learning_starts": 5}
    example = load_grid(Path(__file__).resolve().parents[2] / "examples" / "sweep_grid.yml", seeds=[0])
    assert example.methods == ["sac", "relay", "furl"] and len(example.cells(tmp_path)) == 6
    assert example.resources == {"cpus": 1, "gpus": 0} and example.checkpoint_freq == 10_000
    path.write_text("methods: [sac]\ntasks: [reach]\nsteeps: 100\n")
    with pytest.raises(GridError, match="steeps"):
        load_grid(path)
    with pytest.raises(GridError, match="does not exist"):
        load_grid(tmp_path / "missing.yml")


def test_cli_sweep(tmp_path: Path, capsys) -> None:
    from furl_wrappers.cli import main

    out = tmp_path / "cli"
    args = ["sweep", "--out", str(out), "--methods", "sac", "--tasks", "reach", "--seeds", "0", "--steps", "40",
            "--eval-freq", "40", "--hyperparams", "learning_starts=20", "batch_size=8", "--env-kwargs",
            "image_size=32", "max_episode_steps=20", "--quiet", "--no-plots"]
    assert main(args) == 0
    assert RunDir(out / "sac" / "reach" / "seed0").state() == "finished"
    assert "1 done" in capsys.readouterr().out
    assert main(["sweep", "--out", str(tmp_path / "x"), "--methods", "sac", "--tasks", "reach", "--seeds", "0",
                 "--cpus-per-run", "100000", "--quiet"]) == 2
    assert "CPUs" in capsys.readouterr().err


def test_a_symlinked_sweep_log_is_never_appended_to(tmp_path: Path) -> None:
    from furl_wrappers.runs.sweep.cell import run_cell

    cell = tmp_path / "sac" / "reach" / "seed0"
    cell.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (cell / "sweep_log.txt").symlink_to(victim)
    result = run_cell({"method": "sac", "task": "reach", "seed": 0, "run_dir": str(cell), "attempt": 1,
                       "spec": {"steps": 60, "vlm": "random-clip:tiny", "env_kwargs": TINY_ENV}})
    assert result["ok"] is False and "sweep_log.txt' is a symlink" in result["error"]
    assert victim.read_text() == "precious\n" and not (cell / "summary.json").exists()
