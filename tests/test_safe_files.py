"""furl_wrappers._safe_files: bounded JSON and run files opened without following links."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from furl_wrappers import _safe_files
from furl_wrappers._safe_files import (
    MAX_TENSOR_FILE_OBJECTS,
    CorruptFileError,
    UnsafeFileError,
    check_zip,
    json_depth,
    loads_json,
    open_regular,
    tensor_file_problem,
)


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


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # zipfile warns about a name written twice: that is the point
        for name, blob in entries.items() if isinstance(entries, dict) else entries:
            archive.writestr(name, blob)
    return out.getvalue()


def _repeat_record(raw: bytes, copies: int) -> bytes:
    """``raw`` (a one-entry zip) with its central-directory record repeated under new names of the same length: a
    zip bomb that unpacks one stored entry many times."""
    end = raw.rindex(b"PK\x05\x06")
    size, offset = struct.unpack("<II", raw[end + 12:end + 20])
    record = raw[offset:offset + size]
    name_len = struct.unpack("<H", record[28:30])[0]
    extra = [record[:46] + bytes(f"{i:0{name_len}d}", "ascii")[:name_len] + record[46 + name_len:]
             for i in range(copies)]
    directory = record + b"".join(extra)
    tail = bytearray(raw[end:])
    struct.pack_into("<HHII", tail, 8, copies + 1, copies + 1, len(directory), offset)
    return raw[:offset] + directory + bytes(tail)


def test_check_zip_refuses_bombs_before_unpacking(monkeypatch: pytest.MonkeyPatch) -> None:
    good = _zip({"data": b"{}", "a.pth": b"x" * 1000})
    check_zip(io.BytesIO(good), "m.zip", "model zip", "data")
    with pytest.raises(CorruptFileError, match=r"'m.zip' is not a complete model zip .*'data' is listed twice"):
        check_zip(io.BytesIO(_zip([("data", b"{}"), ("data", b"{}")])), "m.zip", "model zip", "data")
    bomb = _repeat_record(_zip({"data": b"0" * 10_000}), copies=8)
    assert len(zipfile.ZipFile(io.BytesIO(bomb)).namelist()) == 9  # nine names, one stored entry
    unpacked = []
    monkeypatch.setattr(zipfile.ZipFile, "testzip", lambda self: unpacked.append(1))
    with pytest.raises(CorruptFileError, match="two directory records point at one stored entry"):
        check_zip(io.BytesIO(bomb), "m.zip", "model zip", "data")
    monkeypatch.setattr(_safe_files, "MAX_ZIP_UNPACKED", 1000)
    with pytest.raises(CorruptFileError, match=r"its entries unpack to 1002 bytes, more than the 1000 read"):
        check_zip(io.BytesIO(good), "m.zip", "model zip", "data")
    assert unpacked == []  # each refused before testzip unpacked anything


def test_tensor_file_problem_names_where() -> None:
    import torch

    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.tensor([0.0, 1.0])}},
                 "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.999), "params": [0], "foreach": None}]}
    assert tensor_file_problem(optimizer) is None
    optimizer["state"][0]["exp_avg"][1] = float("inf")
    assert tensor_file_problem(optimizer) == "NaN or inf in 'state.0.exp_avg'"
    assert tensor_file_problem({"param_groups": [{"lr": 1e-3}, {"lr": float("nan")}]}) == "NaN or inf in " \
        "'param_groups[1].lr'"
    assert tensor_file_problem((torch.ones(2), torch.tensor([complex(0, float("inf"))]))) == "NaN or inf in '[1]'"
    assert tensor_file_problem(torch.tensor([-float("inf")])) == "NaN or inf in '<top level>'"
    assert tensor_file_problem({"s": {1.0, float("nan")}}) == "NaN or inf in 's{}'"  # sets and plain complex too
    assert tensor_file_problem([complex(float("nan"), 0)]) == "NaN or inf in '[0]'"
    nan8 = torch.tensor([float("nan")]).to(torch.float8_e4m3fn)  # no isfinite of its own
    assert tensor_file_problem({"w": nan8}) == "NaN or inf in 'w'"
    assert tensor_file_problem({"w": torch.ones(2, dtype=torch.bfloat16), "n": torch.tensor([7]), "flag": True,
                                "name": "nan"}) is None  # ints, bools, text: nothing to check
    assert tensor_file_problem({"w": torch.eye(2).to_sparse()}) == "a sparse tensor at 'w' (model files hold " \
        "dense tensors)"
    with warnings.catch_warnings():  # torch: quantized tensors deprecated, nested ones a prototype
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(torch.ones(2), scale=float("nan"), zero_point=0, dtype=torch.qint8)
        nested = torch.nested.nested_tensor([torch.ones(1), torch.ones(2)])
    assert tensor_file_problem([quantized]).startswith("a quantized tensor at '[0]'")
    assert tensor_file_problem({"m": torch.empty(2, device="meta")}).startswith("a meta tensor at 'm'")
    assert tensor_file_problem(nested).startswith("a nested tensor at '<top level>'")


def test_tensor_file_problem_is_bounded() -> None:
    """Deep nesting (past Python's recursion limit), shared references (2**60 paths, few objects) and cycles are
    each walked once; more objects than the cap is a problem, not a hang."""
    import torch

    deep: object = [torch.tensor(float("nan"))]
    for _ in range(100_000):
        deep = [deep]
    assert tensor_file_problem(deep) == "NaN or inf in '" + "[0]" * 100_001 + "'"
    shared: object = [torch.ones(1)]
    for _ in range(60):
        shared = [shared, shared]
    assert tensor_file_problem(shared) is None
    cycle: list = [torch.ones(1)]
    cycle.append(cycle)
    assert tensor_file_problem(cycle) is None
    many = list(range(MAX_TENSOR_FILE_OBJECTS + 1))
    assert tensor_file_problem(many) == f"more than {MAX_TENSOR_FILE_OBJECTS} objects (a file nested or repeated " \
        "to exhaust the reader)"
