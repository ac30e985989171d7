"""furl_wrappers._safe_files: bounded JSON and run files opened without following links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from furl_wrappers import _safe_files
from furl_wrappers._safe_files import CorruptFileError, UnsafeFileError, json_depth, loads_json, open_regular


def test_loads_json_bounds_depth_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    assert loads_json(b'{"a": [1, {"b": null}]}', "f.json") == {"a": [1, {"b": None}]}
    assert json_depth({"a": [1, {"b": None}]}) == 3 and json_depth(5) == 0
    assert loads_json("[" * 64 + "]" * 64, "f.json") is not None  # the limit itself is fine
    for text in ("[" * 65 + "]" * 65, "[" * 200_000 + "]" * 200_000):  # too deep for the package / for Python
        with pytest.raises(CorruptFileError, match=r"'f.json' is not valid: JSON nested deeper than 64 levels"):
            loads_json(text, "f.json")
    with pytest.raises(CorruptFileError, match=r"'f.json' is not valid JSON: Expecting"):
        loads_json(b"{", "f.json")
    monkeypatch.setattr(_safe_files, "MAX_JSON_BYTES", 10)
    with pytest.raises(CorruptFileError, match=r"13 bytes of JSON, more than the 10 read"):
        loads_json(b'["123456789"]', "f.json")


def test_open_regular_reads_appends_and_creates(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    with pytest.raises(FileNotFoundError):
        open_regular(path, "r")
    with open_regular(path, "a") as handle:  # "a" creates
        handle.write("a\n")
    with open_regular(path, "a", buffering=1) as handle:
        handle.write("b\n")
    with open_regular(path, "r+", newline="") as handle:
        assert handle.read() == "a\nb\n"
    with open_regular(tmp_path / "new.bin", "rb+", create=True) as handle:
        handle.write(b"x")
    assert (tmp_path / "new.bin").read_bytes() == b"x"
    with pytest.raises(ValueError, match="does not truncate"):
        open_regular(path, "w")


@pytest.mark.parametrize("kind", ["link", "dangling", "fifo", "directory"])
@pytest.mark.parametrize("mode", ["r", "a", "r+"])
def test_open_regular_refuses_links_fifos_and_folders(tmp_path: Path, kind: str, mode: str) -> None:
    victim = tmp_path / "victim.txt"
    path = tmp_path / "progress.csv"
    if kind == "link":
        victim.write_text("precious")
        path.symlink_to(victim)
    elif kind == "dangling":
        path.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    what = {"link": "a symlink", "dangling": "a symlink", "fifo": "a FIFO", "directory": "a directory"}[kind]
    with pytest.raises(UnsafeFileError, match=rf"progress.csv' is {what}: furl reads and writes run files only as "
                                              r"regular files \(nothing was changed\)"):
        open_regular(path, mode, create=True)
    assert victim.read_text() == "precious" if kind == "link" else not victim.exists()
