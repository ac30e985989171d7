"""furl train: a short run end to end, resume, no clobbering, the offline fallback, evaluate."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from furl_wrappers._safe_files import CorruptFileError, UnsafeFileError
from furl_wrappers.runs.encoder_choice import NOT_PRETRAINED_NOTICE, OFFLINE_VLM_NOTICE
from furl_wrappers.runs.evaluation import evaluate_run
from furl_wrappers.runs.run_dir import RunDir
from furl_wrappers.runs.training import (
    RunExistsError,
    RunSpec,
    train_run,
)
from furl_wrappers.runs.zoo_config import ConfigError

TINY = {"image_size": 32, "max_episode_steps": 40}
FAST = {"learning_starts": 60, "batch_size": 32, "alignment_kwargs": {"batch_size": 32}}


def _spec(out: Path, **kwargs) -> RunSpec:
    base = dict(method="furl", task="drawer-open", seed=0, steps=200, vlm="random-clip:tiny", out=str(out),
                device="cpu", eval_freq=100, env_kwargs=TINY, hyperparams=dict(FAST), quiet=True,
                checkpoint_freq=100, image_preset="fast")
    base.update(kwargs)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(_spec(tmp_path_factory.mktemp("runs") / "furl"))


def test_run_directory_contents(finished_run: Path) -> None:
    names = {p.name for p in finished_run.iterdir()}
    assert {"config.json", "summary.json", "evaluations.csv", "progress.csv", "model.zip", "checkpoint",
            "reward_model_initial.pt", "reward_model_final.pt"} <= names
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["method"] == "furl" and summary["task"] == "drawer-open-v3" and summary["seed"] == 0
    assert summary["timesteps_done"] == 200 and summary["steps"] == 200
    assert summary["encoder"] == "random-clip:tiny:seed0" and summary["encoder_pretrained"] is False
    assert summary["wall_time_s"] > 0
    rows = list(csv.DictReader(open(finished_run / "evaluations.csv")))
    assert [int(r["step"]) for r in rows] == [100, 200]  # eval at the set frequency, one episode each (fixed goal)
    assert float(rows[-1]["success"]) == summary["final_success"] and summary["success_criterion"] == "final_step"
    assert float(rows[-1]["success_any_step"]) == summary["final_success_any_step"]
    progress = (finished_run / "progress.csv").read_text().splitlines()[0]
    assert "eval/success_rate" in progress and "furl/relay_on" in progress
    assert (finished_run / "checkpoint" / "model.zip").exists()


def test_existing_run_directory_is_not_clobbered(finished_run: Path) -> None:
    before = (finished_run / "summary.json").read_text()
    with pytest.raises(RunExistsError, match="never written again"):
        train_run(_spec(finished_run))
    assert (finished_run / "summary.json").read_text() == before


def _cli(out: Path, *extra: str, steps: int = 240) -> list[str]:
    """``furl train`` of a small FuRL run as a subprocess command (its own process: same threads every time)."""
    return [sys.executable, "-m", "furl_wrappers.cli", "train", "--method", "furl", "--task", "drawer-open",
            "--seed", "1", "--steps", str(steps), "--vlm", "random-clip:tiny", "--out", str(out), "--device", "cpu",
            "--eval-freq", "80", "--checkpoint-freq", "80", "--image-preset", "fast", "--quiet",
            "--env-kwargs", "image_size=32", "max_episode_steps=40",
            "--hyperparams", "learning_starts=60", "batch_size=32", "alignment_kwargs={batch_size: 32}", *extra]


def _weights(run: Path) -> dict:
    from furl_wrappers.relay import RelayPolicy
    from furl_wrappers.serialization import load_model

    model = load_model(RelayPolicy, run / "model.zip", device="cpu", buffer_size=1)
    tensors = {f"vlm.{k}": v for k, v in model.policy.state_dict().items()}
    tensors.update({f"sac.{k}": v for k, v in model.task_agent.policy.state_dict().items()})
    import torch

    tensors.update({f"heads.{k}": v for k, v in torch.load(run / "reward_model_final.pt").items()})
    return tensors


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not (wa[k] == wb[k]).all()]
    assert not different, f"weights differ: {different[:5]}"
    rows = [[r[:4] for r in csv.reader(open(run / "evaluations.csv"))] for run in (a, b)]
    assert rows[0] == rows[1]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_at_a_random_step_then_resume_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(tmp_path / "whole"), check=True, env=env, capture_output=True)
    subprocess.run(_cli(tmp_path / "again"), check=True, env=env, capture_output=True)
    _assert_same_run(tmp_path / "whole", tmp_path / "again")  # same seed: bit-identical run on CPU
    killed = tmp_path / "killed"
    rng = random.Random(0)
    for attempt in range(5):  # kill somewhere after the first checkpoint and before the run finishes
        proc = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not (killed / "checkpoint" / "meta.json").is_file():
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5) / (attempt + 1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (killed / "summary.json").exists():
            break
        shutil.rmtree(killed)
    else:
        pytest.fail("the run always finished before it could be killed")
    step = RunDir(killed).checkpoint_step()
    assert step is not None and 0 < step < 240
    pre_kill = [r for r in csv.reader(open(killed / "evaluations.csv"))][1:] if (killed / "evaluations.csv").exists() \
        else []
    result = subprocess.run(_cli(killed, "--resume"), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"at step {step} of 240" in " ".join(result.stdout.split())  # (rich wraps long lines)
    _assert_same_run(tmp_path / "whole", killed)
    # logs: each step once, the pre-kill rows kept as they were
    rows = list(csv.reader(open(killed / "evaluations.csv")))[1:]
    assert [int(r[0]) for r in rows] == [80, 160, 240]
    assert all(row in rows for row in pre_kill if int(row[0]) <= step)
    steps = [int(float(r["time/total_timesteps"])) for r in csv.DictReader(open(killed / "progress.csv"))]
    assert steps == sorted(set(steps)) and steps[-1] == 240
    whole = [int(float(r["time/total_timesteps"])) for r in csv.DictReader(open(tmp_path / "whole" / "progress.csv"))]
    assert steps == whole
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["best_success"] == json.loads((tmp_path / "whole" / "summary.json").read_text())["best_success"]


def test_resume_checks_and_finished_runs_are_never_written(finished_run: Path, tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in finished_run.iterdir()}
    with pytest.raises(RunExistsError, match="finished run, which is never written again"):
        train_run(_spec(finished_run, resume=True))
    assert {p.name: p.stat().st_mtime_ns for p in finished_run.iterdir()} == before
    with pytest.raises(FileNotFoundError, match="holds no run to resume"):
        train_run(_spec(tmp_path / "never", resume=True))
    # an interrupted run: every resume is checked against what it was made with
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "summary.json").unlink()
    config = (out / "config.json").read_text()
    for change, match in ((dict(goal="random"), "goal='fixed'"), (dict(task="reach"), "task='drawer-open-v3'"),
                          (dict(seed=3), "seed=0"),
                          (dict(method="vlm", hyperparams={"learning_starts": 60}), "method='furl'"),
                          (dict(vlm="random-clip"), "--vlm random-clip:tiny"),
                          (dict(hyperparams={**FAST, "learning_rate": 0.01}), "learning_rate"),
                          (dict(env_kwargs={**TINY, "max_episode_steps": 20}), "max_episode_steps=40"),
                          (dict(steps=100), "--steps 100 is below the step of .* checkpoint \\(120\\)")):
        with pytest.raises(ConfigError, match=match):
            train_run(_spec(out, resume=True, **change))
    assert (out / "config.json").read_text() == config and not (out / "summary.json").exists()


def _interrupted_copy(finished_run: Path, out: Path, **meta_changes) -> Path:
    """A copy of the finished run as if stopped after its checkpoint (step 120), its meta.json edited."""
    shutil.copytree(finished_run, out)
    (out / "summary.json").unlink()
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    meta.update(meta_changes)
    meta = {key: value for key, value in meta.items() if value is not None}
    (out / "checkpoint" / "meta.json").write_text(json.dumps(meta))
    return out


def test_a_resumed_run_counts_the_wall_time_before_its_checkpoint(finished_run: Path, tmp_path: Path) -> None:
    """The run's clock continues from the checkpoint's reading: rows and summary after the resume count the time
    trained before it; rows before the checkpoint stay as written."""
    meta = json.loads((finished_run / "checkpoint" / "meta.json").read_text())
    first = list(csv.DictReader(open(finished_run / "evaluations.csv")))[0]
    assert 0 < meta["wall_time_s"] and float(first["wall_time_s"]) <= meta["wall_time_s"]  # step 100 < 120
    out = train_run(_spec(_interrupted_copy(finished_run, tmp_path / "run", wall_time_s=5000.0), resume=True))
    rows = list(csv.DictReader(open(out / "evaluations.csv")))
    assert [int(r["step"]) for r in rows] == [100, 200] and rows[0] == first
    summary = json.loads((out / "summary.json").read_text())
    assert 5000 < float(rows[1]["wall_time_s"]) <= summary["wall_time_s"] < 5000 + 600
    assert json.loads((out / "config.json").read_text())["wall_time_s"] == summary["wall_time_s"]


@pytest.mark.parametrize("value", [float("nan"), -1.0, "12", True])
def test_a_bad_checkpoint_wall_time_is_one_line_and_changes_nothing(finished_run: Path, tmp_path: Path,
                                                                     value) -> None:
    out = _interrupted_copy(finished_run, tmp_path / "run", wall_time_s=value)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(CorruptFileError, match=r"meta.json': wall_time_s must be a finite number >= 0 \(seconds "
                                               r"trained\), got") as info:
        train_run(_spec(out, resume=True))
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_checkpoint_without_wall_time_resumes_with_a_note(finished_run: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = train_run(_spec(_interrupted_copy(finished_run, tmp_path / "run", wall_time_s=None), resume=True))
    assert "does not record how long the run had trained" in " ".join(capsys.readouterr().out.split())
    assert 0 < json.loads((out / "summary.json").read_text())["wall_time_s"] < 600


@pytest.mark.parametrize("name", ["progress.csv", "evaluations.csv"])
def test_resume_never_writes_through_a_symlinked_log(finished_run: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "summary.json").unlink()
    victim = tmp_path / "victim.csv"
    victim.write_text("time/total_timesteps,step\n999999,999999\n")
    (out / name).unlink()
    (out / name).symlink_to(victim)
    with pytest.raises(UnsafeFileError, match=rf"{name}' is a symlink: furl reads and writes run files only as "
                                              "regular files"):
        train_run(_spec(out, resume=True))
    assert victim.read_text() == "time/total_timesteps,step\n999999,999999\n" and (out / name).is_symlink()


def test_a_folder_that_is_not_a_run_is_never_written_or_cleared(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "progress.csv").write_text("time/total_timesteps\n10\n")  # looks like a failed run, beside mine
    with pytest.raises(RunExistsError, match=r"holds files that are not a furl run's \(notes.txt, progress.csv, "
                                             r"and no .furl_run.json says furl wrote any of them\)"):
        train_run(_spec(tmp_path, method="sac", steps=40, hyperparams={"learning_starts": 20}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "progress.csv"]


@pytest.mark.parametrize("planted", ["checkpoint", "config", "model", "tensorboard"])
def test_files_that_merely_carry_furl_names_are_never_deleted(tmp_path: Path, planted: str) -> None:
    """A folder holding only files named like a run's (a user's checkpoint/epoch=99.ckpt, a config.json, a
    model.zip, TensorBoard event files) but no run marker is not "a failed run started over": it is refused."""
    files = {"checkpoint": "checkpoint/epoch=99.ckpt", "config": "config.json", "model": "model.zip",
             "tensorboard": "events.out.tfevents.1700000000.host.1.0"}
    path = tmp_path / files[planted]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}" if planted == "config" else "user data")
    with pytest.raises(RunExistsError, match="and no .furl_run.json says furl wrote any of them"):
        train_run(_spec(tmp_path, method="sac", steps=40, hyperparams={"learning_starts": 20}))
    assert path.read_text() == ("{}" if planted == "config" else "user data")


def test_a_marked_runs_checkpoint_folder_with_a_foreign_file_is_not_deleted(tmp_path: Path) -> None:
    RunDir(tmp_path).mark()
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "epoch=99.ckpt").write_text("user data")
    with pytest.raises(UnsafeFileError, match="holds files furl did not write \\(epoch=99.ckpt\\)"):
        train_run(_spec(tmp_path, method="sac", steps=40, hyperparams={"learning_starts": 20}))
    assert (tmp_path / "checkpoint" / "epoch=99.ckpt").read_text() == "user data"


def test_a_run_that_failed_before_its_first_checkpoint_is_started_over(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    RunDir(out).mark()  # what an earlier furl run wrote first
    (out / "config.json").write_text("{}")
    (out / "progress.csv").write_text("time/total_timesteps\n10\n")
    (out / ".model.zip.123.tmp").write_bytes(b"x" * 100)
    run = train_run(_spec(out, method="sac", steps=40, eval_freq=40, hyperparams={"learning_starts": 20}))
    assert "stopped before its first checkpoint: starting it over" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["timesteps_done"] == 40
    assert not list(run.glob(".*.tmp"))
    steps = [int(float(r["time/total_timesteps"])) for r in csv.DictReader(open(run / "progress.csv"))]
    assert 10 not in steps


def test_offline_fallback_to_the_shipped_vlm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = train_run(_spec(tmp_path / "fallback", vlm=None, method="vlm", steps=40, eval_freq=40,
                          hyperparams={"learning_starts": 20, "batch_size": 16}))
    out = capsys.readouterr().out
    assert "Falling back to furl-mw-vlm" in out and OFFLINE_VLM_NOTICE in out
    assert "Falling back to random-clip" not in out and NOT_PRETRAINED_NOTICE not in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["encoder_fallback"] is True and summary["encoder_spec"] == "furl-mw-vlm"
    assert summary["encoder"] == "furl-mw-vlm" and summary["encoder_pretrained"] is True
    # every artefact names the encoder actually used, not the YAML's request
    config = json.loads((run / "config.json").read_text())
    (wrapper,) = config["hyperparams"]["vec_env_wrapper"]
    assert next(iter(wrapper.values()))["vlm"] == "furl-mw-vlm"
    from furl_wrappers.runs.report import report

    written = report([run], tmp_path / "report", plots=False)
    assert "vlm: furl-mw-vlm (pretrained), image preset fast" in written["markdown"]
    # an encoder asked for by name is never swapped
    from furl_wrappers.encoders import ModelUnavailableError

    with pytest.raises(ModelUnavailableError):
        train_run(_spec(tmp_path / "explicit", vlm="openai/clip-vit-base-patch32", method="vlm",
                        hyperparams={"learning_starts": 20}))


def test_offline_fallback_takes_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = train_run(_spec(tmp_path / "fallback", vlm=None, method="vlm", steps=20, eval_freq=20, image_preset=None,
                          hyperparams={"learning_starts": 10, "batch_size": 8}))
    assert "image preset fast instead of 'reference'" in capsys.readouterr().out  # the YAML's preset is reference
    config = json.loads((run / "config.json").read_text())
    assert config["image_preset"] == "fast" and config["instruction"] == "Open a drawer."
    with pytest.raises(ConfigError, match="furl-mw-vlm runs on the fast image path"):
        train_run(_spec(tmp_path / "mw", vlm="furl-mw-vlm", method="vlm", image_preset="reference",
                        hyperparams={"learning_starts": 10}))
    assert not (tmp_path / "mw").exists()


def test_fallback_to_random_clip_when_the_shipped_vlm_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys) -> None:
    import furl_wrappers.encoders.offline as offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(offline, "SHIPPED_WEIGHTS", tmp_path / "gone.pt")
    run = train_run(_spec(tmp_path / "fallback", vlm=None, method="vlm", steps=40, eval_freq=40,
                          hyperparams={"learning_starts": 20, "batch_size": 16}))
    out = capsys.readouterr().out
    assert "cannot be loaded either" in out and "gone.pt" in out
    assert "Falling back to random-clip" in out and NOT_PRETRAINED_NOTICE.split(":")[0] in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["encoder_fallback"] is True and summary["encoder"].startswith("random-clip:b32")


def test_sac_method_has_no_encoder(tmp_path: Path) -> None:
    run = train_run(_spec(tmp_path / "sac", method="sac", steps=60, eval_freq=60,
                          hyperparams={"learning_starts": 30, "batch_size": 16}))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == "sac" and summary["encoder"] is None


def test_bad_specs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown method"):
        train_run(_spec(tmp_path / "a", method="ppo"))
    with pytest.raises(ValueError, match="drawer-open"):
        train_run(_spec(tmp_path / "b", task="drawer-opn"))
    with pytest.raises(ConfigError, match="goal"):
        train_run(_spec(tmp_path / "c", goal="sometimes"))
    with pytest.raises(ConfigError, match="unknown key 'learning_rat'"):
        train_run(_spec(tmp_path / "d", hyperparams={"learning_rat": 0.1}))
    with pytest.raises(ConfigError, match="steps"):
        train_run(_spec(tmp_path / "e", steps=0))
    assert not any((tmp_path / x).exists() for x in "abcde")  # nothing written for bad input


def test_evaluate_run(finished_run: Path, tmp_path: Path) -> None:
    result = evaluate_run(finished_run, video=str(tmp_path / "ep.gif"), device="cpu")
    assert result["episodes"] == 1 and result["seed"] == 0  # fixed goal: the training instance
    # the final model on the same instance with the mean action: the training run's last evaluation, exactly
    last = list(csv.DictReader(open(finished_run / "evaluations.csv")))[-1]
    assert (result["success_rate"], result["mean_task_return"]) == (float(last["success"]),
                                                                    float(last["mean_task_return"]))
    from PIL import Image

    gif = Image.open(tmp_path / "ep.gif")
    assert gif.n_frames > 10
    with pytest.raises(FileNotFoundError, match="not a finished furl run"):
        evaluate_run(tmp_path)


def _goal_hidden_goal(task: str, seed: int) -> list:
    import gymnasium as gym

    env = gym.make("Meta-World/goal_hidden", env_name=task, seed=seed)
    env.reset()
    return [float(v) for v in env.unwrapped._target_pos]


def test_each_seed_trains_and_is_evaluated_on_its_own_instance(tmp_path: Path) -> None:
    run = train_run(_spec(tmp_path / "s3", method="sac", task="reach", seed=3, steps=20, eval_freq=20, n_envs=2,
                          hyperparams={"learning_starts": 10}))
    config = json.loads((run / "config.json").read_text())
    ours = _goal_hidden_goal("reach-v3", 3)
    assert config["train_instance_seed"] == config["eval_instance_seed"] == 3 and config["eval_episodes"] == 1
    np.testing.assert_allclose(config["train_goal"], ours, atol=1e-9)
    np.testing.assert_allclose(config["eval_goal"], ours, atol=1e-9)
    assert np.abs(np.subtract(ours, _goal_hidden_goal("reach-v3", 0))).max() > 0.01  # instance 0 is elsewhere
    with pytest.raises(ConfigError, match="the task instance is the run's seed"):
        train_run(_spec(tmp_path / "bad", method="sac", env_kwargs={**TINY, "seed": 5},
                        hyperparams={"learning_starts": 10}))
    assert not (tmp_path / "bad").exists()


def test_random_goal_is_evaluated_on_seed_plus_100_ten_episodes(tmp_path: Path) -> None:
    run = train_run(_spec(tmp_path / "r", method="sac", task="reach", goal="random", seed=2, steps=20, eval_freq=20,
                          env_kwargs={"image_size": 32, "max_episode_steps": 5}, hyperparams={"learning_starts": 10}))
    config = json.loads((run / "config.json").read_text())
    assert (config["train_instance_seed"], config["eval_instance_seed"], config["eval_episodes"]) == (2, 102, 10)


def test_vec_check_nan_guards_the_vlm_methods_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN that the VLM reward wrapper lets through (here: planted in its observation) stops the run at once."""
    from furl_wrappers.wrappers import VecFuzzyVLMReward

    step_wait = VecFuzzyVLMReward.step_wait

    def poisoned(self):
        obs, rewards, dones, infos = step_wait(self)
        obs[:, 0] = np.nan
        return obs, rewards, dones, infos

    monkeypatch.setattr(VecFuzzyVLMReward, "step_wait", poisoned)
    with pytest.raises(ValueError, match=r"found nan in observations"):
        train_run(_spec(tmp_path / "run", steps=40, eval_freq=40))
