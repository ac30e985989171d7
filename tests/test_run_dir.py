"""RunDir: the one home of the run directory's file names, layout and states."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from furl_wrappers.run_dir import RUN_STATES, RunDir


def test_layout() -> None:
    run = RunDir.default("out", "furl", "drawer-open-v3", "fixed", 2)
    assert run.path == Path("out/furl/drawer-open/seed2")
    assert RunDir.default("out", "my/cfg.yml", "reach", "random", 0).path == Path("out/cfg/reach-random-goal/seed0")
    assert [p.name for p in (run.config, run.progress, run.evaluations, run.summary, run.model)] == [
        "config.json", "progress.csv", "evaluations.csv", "summary.json", "model.zip"]
    assert run.checkpoint_model == run.path / "checkpoint" / "model.zip"
    assert run.checkpoint_buffer.name == "replay_buffer.pkl" and run.checkpoint_meta.name == "meta.json"
    assert run.sweep_failure(3).name == "sweep_failure_3.txt" and run.sweep_status.name == "sweep_status.json"


def test_states_in_order(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    assert run.state() == "new" and run.run_files() == []
    run.path.mkdir()
    run.sweep_log.write_text("bookkeeping only")
    assert run.state() == "new"  # the sweep's files are not a run
    run.progress.write_text("step\n")
    assert run.state() == "failed"  # stopped before its first checkpoint: nothing to resume
    run.checkpoint.mkdir()
    run.checkpoint_model.write_bytes(b"zip")
    run.checkpoint_meta.write_text(json.dumps({"num_timesteps": 500}))
    assert run.state() == "interrupted" and run.checkpoint_step() == 500
    run.summary.write_text(json.dumps({"final_success": 1.0}))
    assert run.state() == "finished" and run.read_summary() == {"final_success": 1.0}
    assert set(RUN_STATES) == {"new", "running", "interrupted", "finished", "failed"}


def test_running_means_a_live_writer_on_this_host(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.progress.write_text("x")
    status = {"state": "running", "host": platform.node(), "pid": os.getpid()}
    run.sweep_status.write_text(json.dumps(status))
    assert run.state() == "running" and run.live_writer() == os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.sweep_status.write_text(json.dumps({**status, "pid": dead.pid}))
    assert run.live_writer() is None and run.state() == "failed"
    run.sweep_status.write_text(json.dumps({**status, "host": "another-host"}))
    assert run.live_writer() is None


def test_clear_run_files_keeps_the_sweeps(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.checkpoint.mkdir(parents=True)
    run.progress.write_text("x")
    run.sweep_failure(1).write_text("traceback")
    run.sweep_failure(10).write_text("traceback")
    run.sweep_failure(2).write_text("traceback")
    run.clear_run_files()
    assert sorted(p.name for p in run.path.iterdir()) == ["sweep_failure_1.txt", "sweep_failure_10.txt",
                                                          "sweep_failure_2.txt"]
    assert [p.name for p in run.sweep_failures()] == ["sweep_failure_1.txt", "sweep_failure_2.txt",
                                                      "sweep_failure_10.txt"]


def test_unreadable_files(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a finished furl run"):
        run.read_summary()
    run.checkpoint.mkdir()
    run.checkpoint_meta.write_text("{truncated")
    assert run.checkpoint_step() is None and run.read_json(run.checkpoint_meta) == {}
