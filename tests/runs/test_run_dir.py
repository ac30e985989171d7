"""RunDir: the one home of the run directory's file names, layout and states."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from furl_wrappers.runs.run_dir import RUN_STATES, RunDir


def test_layout() -> None:
    run = RunDir.default("out", "furl", "drawer-open-v3", "fixed", 2)
    assert run.path == Path("out/furl/drawer-open/seed2")
    assert RunDir.default("out", "my/cfg.yml", "reach", "random", 0).path == Path("out/cfg/reach-random-goal/seed0")
    assert [p.name for p in (run.config, run.progress, run.evaluations, run.summary, run.model)] == [
        "config.json", "progress.csv", "evaluations.csv", "summary.json", "model.zip"]
    assert run.checkpoint_model == run.path / "checkpoint" / "model.zip"
    assert run.checkpoint_buffer.name == "replay_buffer.npz" and run.checkpoint_meta.name == "meta.json"
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


def test_running_means_a_live_lock_holder(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.path.mkdir()
    run.progress.write_text("x")
    # a sweep status naming a live pid is not a writer: only the lock is
    run.sweep_status.write_text(json.dumps({"state": "running", "host": platform.node(), "pid": os.getpid()}))
    assert run.live_writer() is None and run.state() == "failed"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; "
                               "from furl_wrappers.runs.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
                               "print('held', flush=True); time.sleep(600)",
                               str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run.state() == "running" and run.live_writer() == holder.pid
        assert run.run_files() == [run.progress]  # the lock file is not part of the run
    finally:
        holder.kill()
        holder.wait()
    assert run.live_writer() is None and run.state() == "failed"


def test_tidy_recovers_the_newest_complete_checkpoint_and_removes_temp_files(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    ckpt = run.checkpoint_set
    # killed between the two renames of a checkpoint swap: the old set moved aside, the new one complete
    ckpt.previous.mkdir(parents=True)
    (ckpt.previous / "meta.json").write_text(json.dumps({"num_timesteps": 500}))
    ckpt.staging.mkdir()
    (ckpt.staging / "meta.json").write_text(json.dumps({"num_timesteps": 1000}))
    (run.path / ".progress.csv.abc.tmp").write_text("half")
    assert run.tidy() == 1000 and run.checkpoint_step() == 1000
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint"]
    # killed while writing the next set: the complete one stays
    ckpt.staging.mkdir()
    (ckpt.staging / "model.zip").write_bytes(b"half")
    (run.checkpoint / ".model.zip.x.tmp").write_bytes(b"half")
    assert run.tidy() == 1000 and sorted(p.name for p in run.checkpoint.iterdir()) == ["meta.json"]
    assert not ckpt.staging.exists()


def test_rewind_logs_keeps_rows_up_to_the_checkpoint(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.progress.write_text("time/total_timesteps,x\n100,1\n200,2\n300,3\n40")  # a torn last line
    run.evaluations.write_text("step,success\n100,0.0\n200,1.0\n300,1.0\n")
    run.rewind_logs(200)
    assert run.progress.read_text() == "time/total_timesteps,x\n100,1\n200,2\n"
    assert run.evaluations.read_text() == "step,success\n100,0.0\n200,1.0\n"
    logger = run.logger(["csv"])  # appends under the same header, new columns added to every row
    logger.record("time/total_timesteps", 300)
    logger.record("y", 7)
    logger.dump(300)
    logger.close()
    lines = run.progress.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["time/total_timesteps", "x"] and "y" in lines[0].split(",")
    assert lines[1:3] == ["100,1,", "200,2,"] and lines[3].startswith("300,") and len(lines) == 4


def test_clear_run_files_keeps_the_sweeps(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    run.checkpoint.mkdir(parents=True)
    run.mark()
    run.progress.write_text("x")
    run.sweep_failure(1).write_text("traceback")
    run.sweep_failure(10).write_text("traceback")
    run.sweep_failure(2).write_text("traceback")
    run.clear_run_files()
    assert sorted(p.name for p in run.path.iterdir()) == [".furl_run.json", "sweep_failure_1.txt",
                                                          "sweep_failure_10.txt", "sweep_failure_2.txt"]
    assert [p.name for p in run.sweep_failures()] == ["sweep_failure_1.txt", "sweep_failure_2.txt",
                                                      "sweep_failure_10.txt"]


def test_unreadable_files(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a finished furl run"):
        run.read_summary()
    run.checkpoint.mkdir()
    run.checkpoint_meta.write_text("{truncated")
    assert run.checkpoint_step() is None and run.read_json(run.checkpoint_meta) == {}
