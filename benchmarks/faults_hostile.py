"""Hostile files and folders for ``benchmarks/faults.py``: planted keys, links, bombs, foreign folders, bad numbers.

Each attack is built here, on copies of a real interrupted and a real finished ``furl train`` run, and run through
the CLI (``furl train --resume``, ``furl evaluate``, ``furl train --out``). It ended consistent when the command
exits 2 with one line on stderr (no traceback), nothing planted ran (no marker file), and every file the attack
aimed at is as it was (a link's target, a user's files, the run directory).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

Row = tuple[str, int, int, str, int, int]


def _rewrite_zip(data: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        entries = {name: src.read(name) for name in src.namelist()}
    change(entries)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name, blob in entries.items():
            dst.writestr(name, blob)
    return out.getvalue()


def _edit_data(zip_path: Path, edit: Callable[[dict], None], nested: str | None = None) -> None:
    def change(entries: dict[str, bytes]) -> None:
        doc = json.loads(entries["data"])
        edit(doc)
        entries["data"] = json.dumps(doc).encode()

    data = zip_path.read_bytes()
    if nested is None:
        data = _rewrite_zip(data, change)
    else:
        data = _rewrite_zip(data, lambda e: e.update({nested: _rewrite_zip(e[nested], change)}))
    zip_path.write_bytes(data)


def _snapshot(folder: Path) -> list[tuple[str, int]]:
    """Every file under ``folder`` with its size, links as links (the lock's holder info aside)."""
    return sorted((str(p.relative_to(folder)), p.lstat().st_size) for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name != ".furl_lock")


def _one_line(result: subprocess.CompletedProcess) -> bool:
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr


def hostile_rows(root: Path, interrupted: Path, finished: Path, run: Callable[..., subprocess.CompletedProcess],
                 env: dict[str, str]) -> list[Row]:
    """The rows of the hostile-file attacks (see the module docstring)."""
    from furl_wrappers.runs.run_dir import RunDir

    rows: list[Row] = []
    root = root / "hostile"
    root.mkdir()
    marker = root / "IMPORTED"
    (root / "planted_env_mod.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    env = {**env, "PYTHONPATH": f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"}

    def evaluate(folder: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "furl_wrappers.cli", "evaluate", str(folder), "--device", "cpu"],
                              env=env, capture_output=True, text=True, cwd=root)

    def resume(folder: Path, *extra: str) -> subprocess.CompletedProcess:
        return run(folder, "--resume", *extra, env=env, cwd=root)

    def attack(label: str, edit: Callable[[Path], None], command: Callable[[Path], subprocess.CompletedProcess],
               source: Path = interrupted, watched: Callable[[Path], Path] = lambda f: f) -> None:
        folder = root / label.replace(" ", "_").replace("/", "_")[:60]
        shutil.copytree(source, folder, symlinks=True)
        edit(folder)
        before = _snapshot(watched(folder))
        result = command(folder)
        ok = _one_line(result) and not marker.exists() and _snapshot(watched(folder)) == before
        print(f"{label}: exit {result.returncode}: {result.stderr.strip()[:160]}")
        rows.append((label, 1, int(ok), "-", 0, 0))
        marker.unlink(missing_ok=True)

    # a model zip that imports a module through SB3's gym.make of a planted "env" key
    plant_env = (lambda key: lambda doc: doc.update({key: "planted_env_mod:X-v0"}))("env")
    attack("planted env key in model.zip data, furl evaluate",
           lambda f: _edit_data(f / "model.zip", plant_env), evaluate, source=finished)
    attack("planted env key in task_agent.zip data, furl evaluate",
           lambda f: _edit_data(f / "model.zip", plant_env, "task_agent.zip"), evaluate, source=finished)
    attack("planted env key in the checkpoint, --resume",
           lambda f: _edit_data(RunDir(f).checkpoint_model, plant_env), resume)
    attack("planted device key in model.zip data, furl evaluate",
           lambda f: _edit_data(f / "model.zip", lambda d: d.update(device="cuda:7")), evaluate, source=finished)

    def pickle_in_pth(folder: Path) -> None:
        import torch

        class Touch:
            def __reduce__(self):  # noqa: ANN204 - what a hostile file would hold
                return (os.system, (f"touch {marker}",))

        blob = io.BytesIO()
        torch.save({"x": Touch()}, blob)
        path = RunDir(folder).checkpoint_model
        path.write_bytes(_rewrite_zip(path.read_bytes(), lambda e: e.update({"policy.pth": blob.getvalue()})))

    attack("pickle in the checkpoint's policy.pth, --resume", pickle_in_pth, resume)

    # bombs
    deep = "[" * 100_000 + "]" * 100_000
    attack("deeply nested JSON in model.zip data, --resume",
           lambda f: _edit_data(RunDir(f).checkpoint_model, lambda d: d.update(deep=json.loads("[" * 900 + "]" * 900))),
           resume)
    attack("deeply nested JSON in meta.json, --resume",
           lambda f: RunDir(f).checkpoint_meta.write_text('{"num_timesteps": 80, "x": ' + deep + "}"), resume)

    def huge_box(folder: Path) -> None:
        path = RunDir(folder).checkpoint_model

        def change(entries: dict[str, bytes]) -> None:
            safe = json.loads(entries["furl_safe_data.json"])
            box = safe["data"]["observation_space"]
            box["shape"] = {"__type__": "tuple", "items": [8000, 8000]}
            box["low"] = box["high"] = 0.0
            entries["furl_safe_data.json"] = json.dumps(safe).encode()

        path.write_bytes(_rewrite_zip(path.read_bytes(), change))

    attack("Box of shape (8000, 8000) in the safe data, --resume", huge_box, resume)

    def extra_member(folder: Path) -> None:
        path = RunDir(folder).checkpoint_buffer
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["buffer/planted"] = np.zeros(1_500_000, np.uint8)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    attack("npz with an extra 1.5 MB member, --resume", extra_member, resume)

    def bad_rng(folder: Path) -> None:
        meta = json.loads(RunDir(folder).checkpoint_meta.read_text())
        meta["rng"]["numpy"] = ["MT19937", [1, 2, 3], 0, 0, 0.0]
        RunDir(folder).checkpoint_meta.write_text(json.dumps(meta))

    attack("malformed RNG state in meta.json, --resume", bad_rng, resume)

    # links: the target must stay as it was
    victim = root / "victim.txt"

    def link(name: str) -> Callable[[Path], None]:
        def edit(folder: Path) -> None:
            victim.write_text("precious\n")
            target = folder / name
            if target.exists():
                target.unlink()
            target.symlink_to(victim)
        return edit

    for name in (".furl_lock", "progress.csv", "evaluations.csv"):
        attack(f"{name} a symlink, --resume", link(name), resume, watched=lambda f: root)
        assert victim.read_text() == "precious\n"

    # folders that merely carry furl's names: never "started over"
    def foreign(files: dict[str, str]) -> Callable[[Path], None]:
        def edit(folder: Path) -> None:
            shutil.rmtree(folder)
            for name, text in files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text(text)
        return edit

    for label, files in (("checkpoint/epoch=99.ckpt", {"checkpoint/epoch=99.ckpt": "weights"}),
                         ("config.json = {}", {"config.json": "{}"}), ("model.zip", {"model.zip": "mine"}),
                         ("TensorBoard events", {"events.out.tfevents.1.host.1.0": "events"})):
        attack(f"--out holding only {label}", foreign(files), lambda f: run(f, env=env, cwd=root))

    # the rl-zoo launcher's enjoy on a planted logs folder (rl-zoo itself would run each of these)
    def enjoy(logs: Path, algo: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "furl_wrappers.zoo", "enjoy", "--algo", algo, "--env",
                               "furl/reach-v3", "--gym-packages", "furl_wrappers", "-f", str(logs), "-n", "10",
                               "--no-render", "--env-kwargs", "image_size:32", "max_episode_steps:50"],
                              env=env, capture_output=True, text=True, cwd=root)

    def logs_folder(label: str, algo: str, files: dict[str, bytes]) -> None:
        logs = root / label.replace(" ", "_").replace("/", "_")[:60]
        run_dir = logs / algo / "furl-reach-v3_1"
        (run_dir / "furl-reach-v3").mkdir(parents=True)
        (run_dir / "furl-reach-v3.zip").write_bytes(b"not a zip: the run files are read first")
        for name, blob in files.items():
            (run_dir / name).write_bytes(blob)
        result = enjoy(logs, algo)
        print(f"{label}: exit {result.returncode}: {result.stderr.strip()[:160]}")
        rows.append((label, 1, int(_one_line(result) and not marker.exists()), "-", 0, 0))
        marker.unlink(missing_ok=True)

    touch = f'!!python/object/apply:os.system ["touch {marker}"]'
    logs_folder("zoo enjoy: config.yml with !!python/object/apply", "relay",
                {"furl-reach-v3/config.yml": f"!!python/object/apply:collections.OrderedDict\n- - - policy\n"
                                             f"    - {touch}\n".encode()})
    logs_folder("zoo enjoy: config.yml env_wrapper pydoc.pipepager", "relay",
                {"furl-reach-v3/config.yml": f"env_wrapper:\n- pydoc.pipepager: {{cmd: 'touch {marker}'}}\n"
                 .encode()})

    def planted_sac_zip() -> bytes:
        import base64

        import cloudpickle
        import gymnasium as gym
        from stable_baselines3 import SAC

        from furl_wrappers.serialization import save_model

        class Touch:
            def __reduce__(self):  # noqa: ANN204 - what a hostile file would hold
                return (os.system, (f"touch {marker}",))

        blob = io.BytesIO()
        save_model(SAC("MlpPolicy", gym.make("furl/reach-v3", image_size=32, max_episode_steps=50), buffer_size=10,
                       device="cpu"), blob)

        def change(entries: dict[str, bytes]) -> None:
            doc = json.loads(entries["data"])
            doc["evil"] = {":type:": "<class 'object'>",
                           ":serialized:": base64.b64encode(cloudpickle.dumps(Touch())).decode()}
            entries["data"] = json.dumps(doc).encode()

        return _rewrite_zip(blob.getvalue(), change)

    logs_folder("zoo enjoy: SAC zip with a pickled key", "sac", {"furl-reach-v3.zip": planted_sac_zip()})

    def vecnormalize() -> bytes:
        import cloudpickle

        class Touch:
            def __reduce__(self):  # noqa: ANN204
                return (os.system, (f"touch {marker}",))

        return cloudpickle.dumps(Touch())

    logs_folder("zoo enjoy: planted vecnormalize.pkl", "sac",
                {"furl-reach-v3/config.yml": b"normalize: true\n", "furl-reach-v3/vecnormalize.pkl": vecnormalize()})

    # non-finite hyperparameters
    out = root / "nan"
    result = run(out, "--hyperparams", "gamma=nan", env=env, cwd=root)
    rows.append(("--hyperparams gamma=nan", 1, int(_one_line(result) and not out.exists()), "-", 0, 0))
    return rows
