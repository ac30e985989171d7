"""Reading files an attacker may have planted, and opening run files without following links.

Every loader of the package parses JSON through :func:`loads_json` (a size and nesting bound, one-line errors) and
every run file that is appended to or locked in place is opened through :func:`open_regular` (no symlinks, no FIFOs
or devices: only a regular file, or a new one). Atomic writes (:mod:`furl_wrappers._atomic`) replace a link
instead of writing through it, so they need no check.

Example:
    >>> loads_json(b'{"a": [1, 2]}', "meta.json")
    {'a': [1, 2]}
    >>> loads_json("[" * 100 + "]" * 100, "meta.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    furl_wrappers._safe_files.CorruptFileError: 'meta.json' is not valid: JSON nested deeper than 64 levels
"""

from __future__ import annotations

import cmath
import json
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

__all__ = ["CorruptFileError", "UnsafeFileError", "CheckpointMismatchError", "MAX_JSON_BYTES", "MAX_JSON_DEPTH",
           "MAX_ZIP_UNPACKED", "TRUNCATED_ERRORS", "loads_json", "json_depth", "check_zip", "open_regular",
           "check_not_link", "tensor_file_problem", "MAX_TENSOR_FILE_OBJECTS"]

#: deepest nesting a JSON file of the package may have (its own files nest < 10 levels)
MAX_JSON_DEPTH = 64
#: largest JSON document read (a model zip's ``data`` of a big policy is well under 1 MiB)
MAX_JSON_BYTES = 64 * 2**20
#: most objects (tensors, numbers, containers) a torch file of weights is walked through (SAC's policy and
#: optimisers: a few hundred)
MAX_TENSOR_FILE_OBJECTS = 10**6
#: most bytes all entries of a zip read may unpack to together (a zip bomb repeats entries, each under its own cap)
MAX_ZIP_UNPACKED = 2**32


class UnsafeFileError(ValueError):
    """A file that loading would act on unsafely (code, links, absurd sizes); load it with ``trusted=True`` only
    where the message says so."""


class CorruptFileError(ValueError):
    """A model zip, buffer file or run file that is truncated, corrupt or malformed."""


class CheckpointMismatchError(ValueError):
    """A checkpoint (model, relay state or replay buffer) made for another task, encoder, space or buffer."""


#: what reading a cut or damaged zip raises (ValueError: JSON, UTF-8, numpy headers)
TRUNCATED_ERRORS = (zipfile.BadZipFile, EOFError, zlib.error, KeyError, ValueError)


def _layout_problem(infos: list[zipfile.ZipInfo]) -> str | None:
    """Why a zip's directory is not one a writer makes (a name twice, two records of one stored entry, more than
    :data:`MAX_ZIP_UNPACKED` in all), or ``None``."""
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        return f"entry {next(n for n in names if names.count(n) > 1)!r} is listed twice"
    if len({info.header_offset for info in infos}) != len(infos):
        return "two directory records point at one stored entry"
    total = sum(info.file_size for info in infos)
    if total > MAX_ZIP_UNPACKED:
        return f"its entries unpack to {total} bytes, more than the {MAX_ZIP_UNPACKED} read"
    return None


def check_zip(handle: IO[bytes], label: str, what: str, required: str) -> None:
    """A cut zip can still open, as a zip stored inside it (SB3's ``.pth`` entries are zips): so the end record must
    end the file, every entry's CRC must match and ``required`` must be there. A directory no writer makes (a name
    twice, records sharing an entry, more than :data:`MAX_ZIP_UNPACKED` unpacked: a zip bomb) is refused before
    anything is unpacked.

    Raises:
        CorruptFileError: naming ``label`` as a ``what`` and why it is not complete.
    """
    size = handle.seek(0, 2)
    handle.seek(max(0, size - 22 - 65535))
    tail = handle.read()
    end, why = tail.rfind(b"PK\x05\x06"), None
    if end < 0 or end + 22 + int.from_bytes(tail[end + 20:end + 22], "little") != len(tail):
        why = "its end-of-archive record is missing"
    else:
        try:
            with zipfile.ZipFile(handle) as archive:
                why = _layout_problem(archive.infolist())  # before testzip, which unpacks every entry
                if why is None:
                    bad, names = archive.testzip(), archive.namelist()
                    why = (f"entry {bad!r} is damaged" if bad else None if required in names
                           else f"no {required!r} entry")
        except TRUNCATED_ERRORS as err:
            why = f"{type(err).__name__}: {err}"
    if why:
        raise CorruptFileError(f"{label!r} is not a complete {what} (truncated or corrupt): {why}")


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar: 0, ``[]``: 1, ``[[]]``: 2), computed without recursion
    (counting stops past :data:`MAX_JSON_DEPTH`)."""
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= MAX_JSON_DEPTH:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def loads_json(data: bytes | str, label: str, error: type = CorruptFileError) -> Any:
    """``json.loads(data)`` bounded in size (:data:`MAX_JSON_BYTES`) and depth (:data:`MAX_JSON_DEPTH`).

    Args:
        data: the document.
        label: how the message names the file (``'model.zip:data'``).
        error: the exception class raised (a ``ValueError`` subclass).

    Raises:
        error: one line naming ``label`` and what is wrong; never ``RecursionError`` or ``MemoryError``.
    """
    if len(data) > MAX_JSON_BYTES:
        raise error(f"{label!r} is not valid: {len(data)} bytes of JSON, more than the {MAX_JSON_BYTES} read")
    try:
        value = json.loads(data)
    except RecursionError:
        raise error(f"{label!r} is not valid: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise error(f"{label!r} is not valid JSON: {err}") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise error(f"{label!r} is not valid: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def tensor_file_problem(value: Any) -> str | None:
    """What makes a loaded torch file (a state dict, an optimiser's: dicts, lists, tuples, sets of tensors and
    numbers) unfit to train on, or ``None``: NaN or inf anywhere (``"NaN or inf in 'actor.mu.weight'"``), a
    tensor that is not dense (sparse, quantized, nested, on the meta device), or more than
    :data:`MAX_TENSOR_FILE_OBJECTS` objects.

    Walked without recursion, each object once (a planted file may nest deeply, share or cycle references).

    Example:
        >>> import torch
        >>> tensor_file_problem({"mu": {"weight": torch.ones(2)}, "lr": 3e-4}) is None
        True
        >>> tensor_file_problem({"mu": {"weight": torch.tensor([1.0, float("nan")])}})
        "NaN or inf in 'mu.weight'"
    """
    import torch  # this module stays importable without torch (the CLI's JSON checks)

    stack: list[tuple[str, Any]] = [("", value)]
    seen: set[int] = set()
    while stack:
        where, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))  # every object popped is alive in ``value``: ids are not reused during the walk
        if len(seen) > MAX_TENSOR_FILE_OBJECTS:
            return f"more than {MAX_TENSOR_FILE_OBJECTS} objects (a file nested or repeated to exhaust the reader)"
        at = where or "<top level>"
        if isinstance(node, torch.Tensor):
            kind = ("a sparse" if node.layout != torch.strided else "a quantized" if node.is_quantized else
                    "a nested" if node.is_nested else "a meta" if node.device.type == "meta" else None)
            if kind is not None:
                return f"{kind} tensor at {at!r} (model files hold dense tensors)"
            if node.is_floating_point() or node.is_complex():
                # float8 has no isfinite: widened first (a float8 NaN stays NaN)
                wide = node if node.dtype.itemsize > 1 else node.to(torch.float32)
                if not bool(torch.isfinite(wide).all()):
                    return f"NaN or inf in {at!r}"
        elif isinstance(node, (float, complex)):
            if not cmath.isfinite(node):
                return f"NaN or inf in {at!r}"
        elif isinstance(node, dict):
            stack.extend((f"{where}.{key}" if where else str(key), child) for key, child in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(node))
        elif isinstance(node, (set, frozenset)):
            stack.extend((f"{where}{{}}", child) for child in node)
    return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def check_not_link(path: str | os.PathLike) -> None:
    """Raise :class:`UnsafeFileError` when ``path`` exists and is not a regular file or directory (a symlink
    included, even a dangling one): the package never writes through one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UnsafeFileError(f"{os.fspath(path)!r} is {_kind(mode)}: furl reads and writes run files only as "
                              "regular files (nothing was changed); remove it or choose another --out")


def open_regular(path: str | os.PathLike, mode: str = "r", *, create: bool = False,
                 newline: str | None = None, buffering: int = -1) -> IO[Any]:
    """Open ``path`` as a regular file without following a symlink (``create``: make it when missing).

    Args:
        path: the file.
        mode: ``open``'s text or binary mode (``"r"``, ``"rb"``, ``"a"``, ``"r+"``, ``"rb+"``...); ``"w"`` is refused
            (it would truncate: write whole files with :func:`furl_wrappers._atomic.atomic_write`).
        create: create the file when missing (``"a"`` implies it).
        newline: as for ``open`` (text modes).
        buffering: as for ``open`` (1: line-buffered text).

    Raises:
        UnsafeFileError: ``path`` is a symlink (dangling too), FIFO, socket, device or directory.
        FileNotFoundError: it is missing and ``create`` is false.
    """
    if "w" in mode:
        raise ValueError(f"open_regular does not truncate (mode {mode!r}): write whole files atomically")
    flags = (os.O_RDWR if "+" in mode else os.O_WRONLY if "a" in mode else os.O_RDONLY) | os.O_NONBLOCK
    flags |= getattr(os, "O_NOFOLLOW", 0) | (os.O_APPEND if "a" in mode else 0)
    if create or "a" in mode:
        flags |= os.O_CREAT
    check_not_link(path)  # a clear message first; O_NOFOLLOW closes the race that remains
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as err:
        if Path(path).is_symlink():  # made between the check and the open
            check_not_link(path)
        if Path(path).is_dir():
            raise UnsafeFileError(f"{os.fspath(path)!r} is a directory: furl reads and writes run files only as "
                                  "regular files (nothing was changed); remove it or choose another --out") from None
        raise err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{os.fspath(path)!r} is {_kind(info.st_mode)}: furl reads and writes run files "
                                  "only as regular files (nothing was changed); remove it or choose another --out")
        os.set_blocking(fd, True)
        if "b" in mode:
            return os.fdopen(fd, mode, buffering)
        return os.fdopen(fd, mode, buffering, encoding="utf-8", newline=newline)
    except BaseException:
        os.close(fd)
        raise
