"""RunLock: one writer per run directory; a killed holder's lock is free at once; the refusal names the holder."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from furl_wrappers.runs.run_lock import LOCK_NAME, RunLock, RunLockedError

_HOLD = ("import sys, time; from furl_wrappers.runs.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
         "print('held', flush=True); time.sleep(600)")


def _holder(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_second_writer_refused_while_the_first_lives_then_allowed_after_kill(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=rf"pid {proc.pid} on {platform.node()}.*second writer"):
            RunLock(tmp_path).acquire()
        holder = RunLock(tmp_path).holder()
        assert holder is not None and holder["pid"] == proc.pid and holder["host"] == platform.node()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert RunLock(tmp_path).holder() is None  # the kernel released the dead holder's lock: no stale lock
    with RunLock(tmp_path) as lock:
        assert lock.held
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not lock.held and RunLock(tmp_path).holder() is None


def test_two_locks_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "run").acquire()  # creates the directory
    assert (tmp_path / "run" / LOCK_NAME).is_file()
    with pytest.raises(RunLockedError):
        RunLock(tmp_path / "run").acquire()
    assert first.acquire() is first  # re-entrant for its holder
    first.release()
    first.release()  # idempotent
    RunLock(tmp_path / "run").acquire().release()


def test_a_leftover_lock_file_of_a_dead_process_is_not_a_lock(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": platform.node(), "since": time.time()}))
    assert RunLock(tmp_path).holder() is None
    RunLock(tmp_path).acquire().release()


def test_read_only_directory_is_an_os_error_naming_the_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as err:
            RunLock(tmp_path).acquire()
        assert LOCK_NAME in str(err.value.filename)
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("kind", ["link", "dangling", "fifo"])
def test_a_planted_lock_file_is_refused_and_never_followed(tmp_path: Path, kind: str) -> None:
    from furl_wrappers._safe_files import UnsafeFileError

    target = tmp_path / "victim.txt"
    if kind == "link":
        target.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    if kind == "fifo":
        os.mkfifo(run / LOCK_NAME)
    else:
        (run / LOCK_NAME).symlink_to(target)
    what = "a FIFO" if kind == "fifo" else "a symlink"
    with pytest.raises(UnsafeFileError, match=rf"\.furl_lock' is {what}: furl reads and writes run files only as "
                                              "regular files"):
        RunLock(run).acquire()
    with pytest.raises(UnsafeFileError, match=what):
        RunLock(run).holder()
    assert target.read_text() == "precious" if kind == "link" else not target.exists()
