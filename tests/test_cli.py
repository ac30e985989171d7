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
    assert main(args) == 2  # the run directory exists: refused, one clear line
    assert "--resume" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--device", "cpu"]) == 0
    assert "success rate" in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    assert "| vlm_proj |" in capsys.readouterr().out
    assert main(["train", "--method", "vlm_proj", "--task", "reach", "--hyperparams", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
