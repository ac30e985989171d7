"""furl train: a short run end to end, resume, no clobbering, the offline fallback, evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from furl_wrappers.training import (
    NOT_PRETRAINED_NOTICE,
    OFFLINE_VLM_NOTICE,
    RunExistsError,
    RunSpec,
    evaluate_run,
    train_run,
)
from furl_wrappers.zoo import ConfigError

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
    with pytest.raises(RunExistsError, match="--resume"):
        train_run(_spec(finished_run))
    assert (finished_run / "summary.json").read_text() == before


def test_resume_continues_from_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_run(_spec(out, steps=100, checkpoint_freq=50))
    first = json.loads((out / "summary.json").read_text())
    assert first["timesteps_done"] == 100
    run = train_run(_spec(out, steps=200, resume=True))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["timesteps_done"] == 200
    rows = list(csv.DictReader(open(out / "evaluations.csv")))
    assert [int(r["step"]) for r in rows] == [100, 200]  # the schedule continued, nothing repeated
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_run(_spec(tmp_path / "never", resume=True))


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
    from furl_wrappers.report import report

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
