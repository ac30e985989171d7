from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from furl_wrappers import __version__
from furl_wrappers.cli import main


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "goal-image" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    from pathlib import Path

    furl = Path(sys.executable).parent / "furl"  # the console script next to this interpreter
    out = subprocess.run([str(furl), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "tasks" in out.stdout
    out = subprocess.run([sys.executable, "-m", "furl_wrappers", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_tasks_lists_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "Open a drawer." in out and "sweep-into-v3" in out


def test_goal_image_saves_png(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "goal.png"
    assert main(["goal-image", "drawer-open", "--image-size", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "first success at step" in text
    image = np.asarray(Image.open(out))
    assert image.shape == (64, 64, 3)


def test_bad_task_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["goal-image", "drawer-opn"]) == 2
    err = capsys.readouterr().err
    assert "furl: error:" in err and "drawer-open" in err


def test_train_evaluate_report_commands(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", "--method", "vlm_proj", "--task", "reach", "--steps", "60", "--vlm", "random-clip:tiny",
            "--out", str(out), "--eval-freq", "60", "--quiet", "--device", "cpu",
            "--hyperparams", "learning_starts=30", "batch_size=16", "--env-kwargs", "image_size=32",
            "max_episode_steps=30"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "done" in text and "NOT pretrained" in text
    config = json.loads((out / "config.json").read_text())  # the YAML's reference pipeline, at 32 px here
    assert config["image_preset"] == "reference" and config["instruction"] == "reach a goal position"
    assert main(args) == 2  # a finished run: refused, one clear line
    assert "never written again" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "never written again" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--device", "cpu"]) == 0
    assert "success rate" in capsys.readouterr().out
    # a model.zip saved by SB3 itself (pickled attributes, no safe description): refused unless --trusted
    import shutil

    from stable_baselines3 import SAC

    old = tmp_path / "old"
    shutil.copytree(out, old)
    SAC.load(old / "model.zip", device="cpu", custom_objects=None).save(old / "model.zip")
    assert main(["evaluate", str(old), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stored only as a pickle" in err and "--trusted" in err
    assert main(["evaluate", str(old), "--device", "cpu", "--trusted"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    assert "| vlm_proj |" in capsys.readouterr().out
    assert main(["train", "--method", "vlm_proj", "--task", "reach", "--hyperparams", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("vlm", ["/nonexistent/path", "nosuch-model"])
def test_a_bad_vlm_is_one_line_and_leaves_nothing(vlm: str, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    assert main(["train", "--method", "vlm", "--task", "reach", "--vlm", vlm, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("furl: error:") and vlm in err[0]
    assert "furl-mw-vlm" in err[0] and "liv:DIR" in err[0]  # the valid choices, the offline one included
    if vlm.startswith("/"):
        assert "hub repo" not in err[0]  # a path is not called a hub repo
    assert not out.exists()


def test_hyperparams_are_not_eval(tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--method", "sac", "--task", "reach", "--out", str(out), "--quiet",
                 "--hyperparams", "policy_kwargs=__import__('os').system('touch X')"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("furl: error: policy_kwargs: '__import__' is not allowed")
    assert not (tmp_path / "X").exists() and not out.exists()  # refused before any run starts


def test_numbers_in_any_notation() -> None:
    from furl_wrappers.cli import _key_values

    assert _key_values(["learning_rate=1e-4", "buffer_size=1e6", "batch_size=256", "net=[64, 64]", "name=tiny"],
                       "--hyperparams") == {"learning_rate": 1e-4, "buffer_size": 1_000_000, "batch_size": 256,
                                            "net": [64, 64], "name": "tiny"}


def test_every_option_says_what_it_does() -> None:
    import argparse

    from furl_wrappers.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.option_strings or a.dest}" for name, parser in sub.choices.items()
               for a in parser._actions if not a.help]
    assert missing == []
    text = sub.choices["train"].format_help()
    assert "furl-mw-vlm" in text and "falls back" in text and "(default 0)" in text


@pytest.mark.parametrize("param, match", [("gamma=nan", "gamma must be a finite number > 0 and <= 1"),
                                          ("learning_rate=1e999", "learning_rate must be a finite number > 0"),
                                          ("policy_kwargs=dict(net_arch=[1e999])", "'1e999' is not allowed")])
def test_non_finite_hyperparams_exit_2_before_anything_is_written(tmp_path, capsys: pytest.CaptureFixture[str],
                                                                  param: str, match: str) -> None:
    out = tmp_path / "run"
    assert main(["train", "--method", "sac", "--task", "reach", "--steps", "50", "--out", str(out),
                 "--hyperparams", param]) == 2
    err = capsys.readouterr().err
    assert err.startswith("furl: error: ") and match in err and err.count("\n") == 1
    assert not out.exists()
