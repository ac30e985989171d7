"""Fault injection on small ``furl train`` runs: does every run end consistent, and how much work is lost?

Each fault is injected into real ``furl train`` processes (a small FuRL run on drawer-open: tiny random-clip
encoder, 40-step episodes, checkpoints every 80 steps) and the outcome is checked against an uninterrupted run of
the same seed:

- ``kill -9 at a random step``: killed after its first checkpoint, then ``--resume``: consistent when the final
  weights (both agents and the reward heads) equal the uninterrupted run's bit for bit and the logs hold each
  step once;
- ``kill -9 while checkpointing``: killed while a checkpoint set is being written, then ``--resume``;
- ``second writer``: a second ``furl train --resume`` on the directory of a live run: consistent when it is
  refused (exit 2, nothing touched) and the first run still ends equal to the uninterrupted one;
- ``truncated <file>``: a checkpoint file cut in half, then ``--resume``: consistent when it is a one-line error
  (exit 2) naming the file and the directory is left as it was;
- ``hostile pickle in <file>``: a cloudpickled object that creates a marker file when unpickled, planted in the
  checkpoint's model zip (a new and a replaced entry of SB3's ``data``) and in the nested relay SAC zip, then
  ``--resume`` and ``furl evaluate``: consistent when the marker never appears;
- ``full disk``: the run's file size limit (``RLIMIT_FSIZE``) cut to 300 KB, so checkpoint writes fail as on a
  full disk: consistent when the run stops with a one-line error, no temp files stay, and ``--resume`` without
  the limit ends equal to the uninterrupted run;
- ``policy_kwargs injection``: ``--hyperparams policy_kwargs="__import__('os').system(...)"``: refused (exit 2)
  without running it;
- hostile files and folders (``benchmarks/faults_hostile.py``): planted plain keys SB3's load acts on, a pickle in
  ``policy.pth``, nested-JSON and size bombs, a malformed RNG state, run files replaced by symlinks, ``--out``
  folders holding only files named like a run's, ``--hyperparams gamma=nan``: consistent when each is one line,
  exit 2, nothing planted runs and nothing aimed at changes.

"Env steps redone" is the training between the last checkpoint and the kill (work lost to the fault; read from
the last ``progress.csv`` row before the kill, so a lower bound: rows are written at episode ends); "log bytes
lost" the bytes of log rows written before the fault (up to its checkpoint) that are missing after recovery; "temp
bytes left" the size of temp files and partial checkpoints left in the run directory after recovery.

    python benchmarks/faults.py [--kills 5] [--out /tmp/furl-faults]
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch

STEPS = 240


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "furl_wrappers.cli", "train", "--method", "furl", "--task", "drawer-open",
            "--seed", "1", "--steps", str(STEPS), "--vlm", "random-clip:tiny", "--out", str(out), "--device", "cpu",
            "--eval-freq", "80", "--checkpoint-freq", "80", "--image-preset", "fast", "--quiet",
            "--env-kwargs", "image_size=32", "max_episode_steps=40",
            "--hyperparams", "learning_starts=60", "batch_size=32", "alignment_kwargs={batch_size: 32}", *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(out: Path, *extra: str, preexec: Optional[Callable[[], None]] = None, env: Optional[dict[str, str]] = None,
        cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    return subprocess.run(command(out, *extra), env=env or ENV, capture_output=True, text=True, preexec_fn=preexec,
                          cwd=cwd)


def weights(out: Path) -> dict[str, torch.Tensor]:
    from furl_wrappers.relay import RelayPolicy
    from furl_wrappers.serialization import load_model

    model = load_model(RelayPolicy, out / "model.zip", device="cpu", buffer_size=1)
    tensors = {f"vlm.{k}": v for k, v in model.policy.state_dict().items()}
    tensors.update({f"sac.{k}": v for k, v in model.task_agent.policy.state_dict().items()})
    tensors.update({f"heads.{k}": v for k, v in torch.load(out / "reward_model_final.pt").items()})
    return tensors


def same_run(a: Path, b: Path) -> bool:
    """Final weights equal bit for bit, evaluation rows equal, progress.csv with each step once."""
    if not (a / "summary.json").is_file() or not (b / "summary.json").is_file():
        return False
    wa, wb = weights(a), weights(b)
    if wa.keys() != wb.keys() or any(not torch.equal(wa[k], wb[k]) for k in wa):
        return False
    evals = [[r[:4] for r in csv.reader(open(d / "evaluations.csv"))] for d in (a, b)]
    steps = [[r["time/total_timesteps"] for r in csv.DictReader(open(d / "progress.csv"))] for d in (a, b)]
    return evals[0] == evals[1] and steps[0] == steps[1] and len(set(steps[1])) == len(steps[1])


def kept_rows(out: Path, step: Optional[int]) -> list[str]:
    """The log lines (progress.csv, evaluations.csv) at steps up to ``step``: what a resume must keep."""
    lines = []
    for name, key in (("progress.csv", "time/total_timesteps"), ("evaluations.csv", "step")):
        try:
            rows = list(csv.reader(open(out / name)))
        except OSError:
            continue
        if not rows or key not in rows[0]:
            continue
        column = rows[0].index(key)
        for row in rows[1:]:
            try:
                if step is not None and len(row) == len(rows[0]) and float(row[column]) <= step:
                    lines.append(",".join(row[: len(rows[0])]))
            except ValueError:
                pass
    return lines


def lost_bytes(out: Path, before: list[str]) -> int:
    """Bytes of the pre-fault log lines that are no longer in the logs (column order may have grown)."""
    now = set()
    for name in ("progress.csv", "evaluations.csv"):
        try:
            now.update(",".join(r) for r in csv.reader(open(out / name)))
        except OSError:
            pass
    return sum(len(line) for line in before if not any(n.startswith(line) for n in now))


def temp_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in out.rglob("*.tmp")) + sum(
        p.stat().st_size for d in out.glob("checkpoint.*") for p in d.rglob("*") if p.is_file())


def kill_when(out: Path, ready: Callable[[Path], bool], delay: float) -> tuple[bool, Optional[int]]:
    """Start a run, kill -9 it once ``ready`` (after ``delay`` s); (killed before finishing, checkpoint step)."""
    proc = subprocess.Popen(command(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not ready(out):
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from furl_wrappers.runs.run_dir import RunDir

    return not (out / "summary.json").exists(), RunDir(out).checkpoint_step()


def progress_step(out: Path) -> int:
    try:
        rows = list(csv.DictReader(open(out / "progress.csv")))
        return int(float(rows[-1]["time/total_timesteps"])) if rows else 0
    except (OSError, ValueError, KeyError):
        return 0


class Marker:
    """An object that creates a file when unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.path}",))


def _rewrite(data: bytes, change: Callable[[str, bytes], bytes]) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change(name, src.read(name)))
    return out.getvalue()


def plant(zip_path: Path, key: str, marker: Path, nested: Optional[str] = None) -> None:
    """Put a hostile cloudpickled object under ``key`` of the zip's (or its nested zip's) ``data``."""
    import cloudpickle

    def poison(name: str, content: bytes) -> bytes:
        if name != "data":
            return content
        doc = json.loads(content)
        doc[key] = {":type:": "<class 'object'>",
                    ":serialized:": base64.b64encode(cloudpickle.dumps(Marker(marker))).decode()}
        return json.dumps(doc).encode()

    data = zip_path.read_bytes()
    if nested is None:
        data = _rewrite(data, poison)
    else:
        data = _rewrite(data, lambda name, content: _rewrite(content, poison) if name == nested else content)
    zip_path.write_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=5, help="runs killed at random steps (default 5)")
    parser.add_argument("--out", default="/tmp/furl-faults")
    args = parser.parse_args()
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = random.Random(0)
    rows: list[tuple[str, int, int, str, int, int]] = []
    started = time.time()

    reference = root / "reference"
    assert run(reference).returncode == 0
    again = root / "again"
    assert run(again).returncode == 0
    rows.append(("same seed twice (no fault)", 1, int(same_run(reference, again)), "0", 0, 0))

    # kill -9 at a random step after the first checkpoint, then --resume
    ok, redone, left, lost = 0, [], 0, 0
    for i in range(args.kills):
        out = root / f"kill{i}"
        delay = rng.uniform(0, 8.0)
        killed, step = kill_when(out, lambda o: (o / "checkpoint" / "meta.json").is_file(), delay)
        while not killed:  # finished first: kill earlier
            shutil.rmtree(out)
            delay /= 3
            killed, step = kill_when(out, lambda o: (o / "checkpoint" / "meta.json").is_file(), delay)
        redone.append(max(progress_step(out) - (step or 0), 0))
        before = kept_rows(out, step)
        result = run(out, "--resume")
        left += temp_bytes(out)
        lost += lost_bytes(out, before)
        ok += int(result.returncode == 0 and same_run(reference, out))
    rows.append(("kill -9 at a random step, --resume", args.kills, ok, f"{min(redone)}-{max(redone)}", lost, left))

    # kill -9 while a checkpoint set is being written
    ok, redone, left, tried, lost = 0, [], 0, 0, 0
    for i in range(3):  # the first checkpoint's write, then a later one's (a complete set already in place)
        out = root / f"killckpt{i}"
        ready = ((lambda o: (o / "checkpoint.new").exists()) if i == 0 else
                 (lambda o: (o / "checkpoint.new").exists() and (o / "checkpoint" / "meta.json").is_file()))
        killed, step = kill_when(out, ready, rng.uniform(0, 0.01))
        if not killed:
            continue
        tried += 1
        redone.append(max(progress_step(out) - (step or 0), 0))
        before = kept_rows(out, step)
        left_after_kill = temp_bytes(out)
        result = run(out, "--resume") if step is not None else run(out)
        left += temp_bytes(out)
        lost += lost_bytes(out, before)
        ok += int(result.returncode == 0 and same_run(reference, out))
        print(f"killed while checkpointing at step {step}: {left_after_kill} bytes of partial checkpoint cleaned")
    rows.append(("kill -9 while checkpointing, rerun", tried, ok,
                 f"{min(redone)}-{max(redone)}" if redone else "-", lost, left))

    # a second writer on a live run
    out = root / "second"
    proc = subprocess.Popen(command(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "checkpoint" / "meta.json").is_file() and proc.poll() is None:
        time.sleep(0.01)
    second = run(out, "--resume")
    proc.wait()
    refused = second.returncode == 2 and "second writer" in second.stderr
    rows.append(("second writer on a live run", 1, int(refused and same_run(reference, out)), "0", 0,
                 temp_bytes(out)))

    # truncated checkpoint files
    base = root / "interrupted"
    kill_when(base, lambda o: (o / "checkpoint" / "meta.json").is_file(), 0.0)
    from furl_wrappers.runs.run_dir import RunDir
    from furl_wrappers.runs.run_lock import LOCK_NAME  # its holder info changes hands: not the run's data

    for name in ("model.zip", "replay_buffer.npz", "meta.json"):
        out = root / f"trunc-{name}"
        shutil.copytree(base, out)
        target = RunDir(out).checkpoint / name
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        before = sorted((p.name, p.stat().st_size) for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME)
        result = run(out, "--resume")
        lines = result.stderr.strip().splitlines()
        clean = (result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr
                 and (name in lines[0] or "checkpoint" in lines[0]))
        after = sorted((p.name, p.stat().st_size) for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME)
        rows.append((f"truncated {name}, --resume", 1, int(clean and before == after), "-", 0, temp_bytes(out)))

    # hostile pickles
    marker = root / "PWNED"
    for label, key, nested in (("model.zip data (new key)", "evil", None),
                               ("model.zip data (_last_obs)", "_last_obs", None),
                               ("task_agent.zip data", "_last_obs", "task_agent.zip")):
        out = root / f"hostile-{key}-{nested}"
        shutil.copytree(base, out)
        plant(RunDir(out).checkpoint_model, key, marker, nested)
        result = run(out, "--resume")
        final = root / f"hostile-final-{key}-{nested}"
        shutil.copytree(reference, final)
        plant(final / "model.zip", key, marker, nested)
        evaluate = subprocess.run([sys.executable, "-m", "furl_wrappers.cli", "evaluate", str(final), "--device",
                                   "cpu"], env=ENV, capture_output=True, text=True)
        rows.append((f"hostile pickle in {label}", 2, 2 * int(not marker.exists()) if evaluate.returncode in (0, 2)
                     and result.returncode in (0, 2) else 0, "-", 0, 0))
        marker.unlink(missing_ok=True)

    # full disk: writes beyond 300 KB fail (EFBIG) as they would on a full disk
    import resource

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    out = root / "fulldisk"
    failed = run(out, preexec=small_disk)
    lines = failed.stderr.strip().splitlines()
    one_line = failed.returncode != 0 and len(lines) == 1 and "Traceback" not in failed.stderr
    left = temp_bytes(out)
    again = run(out, "--resume") if RunDir(out).checkpoint_step() is not None else run(out)
    rows.append(("full disk (300 KB file limit), rerun", 1, int(one_line and left == 0 and again.returncode == 0
                                                               and same_run(reference, out)), "-", 0, left))

    # policy_kwargs injection
    out = root / "inject"
    marker2 = root / "INJECTED"
    result = run(out, "--hyperparams", f"policy_kwargs=__import__('os').system('touch {marker2}')")
    rows.append(("policy_kwargs injection", 1, int(result.returncode == 2 and not marker2.exists()
                                                   and not out.exists()), "-", 0, 0))

    # hostile files and folders: planted keys, pickles in tensors, bombs, links, foreign folders, NaN settings
    from faults_hostile import hostile_rows

    rows.extend(hostile_rows(root, base, reference, run, ENV))

    print(f"\nfault injection, {platform.node()} ({os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}, "
          f"{time.time() - started:.0f} s\n")
    print("| fault | runs tried | ended consistent | env steps redone | log bytes lost | temp bytes left |")
    print("|---|---|---|---|---|---|")
    for fault, tried, consistent, redone, lost, left in rows:
        print(f"| {fault} | {tried} | {consistent} | {redone} | {lost} | {left} |")


if __name__ == "__main__":
    main()
