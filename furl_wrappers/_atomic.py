"""Atomic file writes: a temp file in the target's directory, then a rename, so a reader or a crash never sees
half a file and nothing already written is lost.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = atomic_write_text(path, "hello")
    >>> path.read_text()
    'hello'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_write", "atomic_write_text", "write_to", "find_with_suffix"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(binary_handle)`` on a temp file beside ``path``, make it readable by all (0644; mkstemp's
    0600 would hide shipped or shared files), then rename it onto ``path``. The temp file never outlives a failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename: a crash of the machine keeps old or new, whole
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # a full disk names the file it hit
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 string."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def write_to(path: str | os.PathLike[str] | IO[bytes], suffix: str, write: Callable[[IO[bytes]], object]
             ) -> Path | None:
    """``write(handle)`` to a binary handle directly, or atomically to a path (``suffix`` added when the path has
    another, as SB3 adds ``.zip``).

    Returns:
        The path written (``None`` for a handle).
    """
    if not isinstance(path, (str, os.PathLike)):
        write(path)
        return None
    path = Path(path)
    return atomic_write(path if path.suffix == suffix else path.with_name(path.name + suffix), write)


def find_with_suffix(path: str | os.PathLike[str], suffix: str) -> Path:
    """``path``, or ``path`` + ``suffix`` when only that exists (as SB3 finds ``.zip`` files)."""
    found: Any = Path(path)
    alt = Path(f"{os.fspath(path)}{suffix}")
    return alt if not found.exists() and alt.exists() else found
