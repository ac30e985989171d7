"""RunLock: one writer per run directory, held by the live process, released by the kernel when it dies.

The lock is ``flock`` on ``<run dir>/.furl_lock`` (held for the life of the writing process). A holder that dies,
even by ``kill -9``, loses the lock at once, so a stale lock never blocks anyone: the file stays behind with the
last holder's pid, host and start time, which only the error message of a refused writer reads. On NFS, Linux
maps ``flock`` to POSIX locks that the server arbitrates, so writers on different nodes (a Ray sweep) exclude each
other too; a dead node's lock is released when its lease expires. Where the filesystem has no locks at all, the
holder file alone decides: a live pid on this host holds it, anything else is stale.

A process must not open the lock file again while it holds the lock (on NFS, closing any descriptor of a
POSIX-locked file releases the lock): :meth:`RunLock.holder` is for other processes.

Example:
    >>> import tempfile
    >>> directory = tempfile.mkdtemp()
    >>> with RunLock(directory) as lock:
    ...     try:
    ...         RunLock(directory).acquire()
    ...     except RunLockedError as err:
    ...         print("refused")
    refused
"""

from __future__ import annotations

import errno
import json
import os
import platform
import stat
import time
from pathlib import Path
from typing import Any

from furl_wrappers._safe_files import UnsafeFileError, check_not_link, loads_json, open_regular

try:
    import fcntl
except ImportError:  # Windows: the holder file alone decides
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError"]

#: the lock file's name inside a run directory
LOCK_NAME = ".furl_lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class RunLockedError(RuntimeError):
    """Another live process writes this run directory."""


def _open_lock_file(path: Path, flags: int) -> int:
    """``os.open`` of the lock file that never follows a symlink and refuses anything but a regular file (a FIFO
    would block, a link's target would be truncated), naming it."""
    check_not_link(path)
    fd = os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFileError(f"{str(path)!r} is not a regular file: furl's run lock must be one (nothing was "
                                  "changed); remove it or choose another --out")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


class RunLock:
    """The write lock of one run directory (creates the directory and the lock file on :meth:`acquire`).

    Args:
        directory: the run directory.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"RunLock({str(self.directory)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def holder(self) -> dict[str, Any] | None:
        """``{"pid", "host", "since"}`` of the live writer, or ``None`` when nobody holds the lock (for other
        processes: see the module docstring)."""
        if not os.path.lexists(self.path):
            return None
        check_not_link(self.path)  # a planted link or FIFO: one line naming it, never followed
        info = self._read_info()
        if fcntl is not None:
            try:
                fd = _open_lock_file(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    return info or {"pid": None, "host": None, "since": None}
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            finally:
                os.close(fd)
        return info if self._info_is_live(info) else None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming the live writer.

        Raises:
            RunLockedError: another live process holds it.
            OSError: the directory cannot be written (read-only, full disk), as the OS says.
        """
        if self._fd is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = _open_lock_file(self.path, os.O_RDWR | os.O_CREAT)  # never through a link: it truncates below
        try:
            if fcntl is not None:
                try:
                    self._flock_briefly(fd)
                except OSError as exc:
                    if exc.errno not in _NO_LOCKS:
                        self._refuse(self._read_info())
                    self._check_info_only()
            else:
                self._check_info_only()
            info = json.dumps({"pid": os.getpid(), "host": platform.node(), "since": time.time()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Let go of the lock (the holder file stays; it is not a lock by itself)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # where the filesystem has no locks, the holder file alone decides: clear it
        except OSError:
            pass
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:
                pass
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _flock_briefly(fd: int, patience: float = 1.0) -> None:
        """``LOCK_EX`` within ``patience`` seconds (another process's :meth:`holder` probe holds a shared lock
        for an instant), else the last ``OSError``."""
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno in _NO_LOCKS or time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    def _read_info(self) -> dict[str, Any]:
        try:
            with open_regular(self.path, "rb") as handle:
                info = loads_json(handle.read(4096) or b"{}", str(self.path))
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    @staticmethod
    def _info_is_live(info: dict[str, Any]) -> bool:
        pid = info.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return False
        if info.get("host") != platform.node():
            return True  # another node: without locks there is no telling, so it counts as live
        return _pid_alive(pid)

    def _check_info_only(self) -> None:
        info = self._read_info()
        if self._info_is_live(info):
            self._refuse(info)

    def _refuse(self, info: dict[str, Any]) -> None:
        since = info.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
        raise RunLockedError(
            f"{str(self.directory)!r} is being written by pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"(since {when}): a second writer would corrupt it; wait for that run to end or stop it first")
