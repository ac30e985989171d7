"""FuRLProgressCallback and status_line: what a run prints about itself."""

from __future__ import annotations

import re
from types import SimpleNamespace

from stable_baselines3 import SAC

from furl_wrappers.runs.progress import FuRLProgressCallback, status_line
from tests._scripted_env import ScriptedSuccessEnv


def test_status_line() -> None:
    model = SimpleNamespace(relay_active=True, replay_buffer=SimpleNamespace(positive_count=12),
                            alignment_callback=SimpleNamespace(stage=1))
    evaluation = SimpleNamespace(last_success=0.5)
    assert status_line(model, evaluation) == "eval success 0.50 | relay on | positives 12 | alignment stage 1"
    assert status_line(SimpleNamespace(replay_buffer=None)) == ""


def test_quiet_lines_every_tenth(capsys) -> None:
    model = SAC("MlpPolicy", ScriptedSuccessEnv(), learning_starts=100, buffer_size=100, device="cpu", seed=0)
    model.learn(20, callback=FuRLProgressCallback(20, quiet=True))
    out = capsys.readouterr().out.splitlines()
    steps = [int(m.group(1)) for line in out if (m := re.match(r"\[furl\] step (\d+)/20 \|", line))]
    assert steps == [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert out[-1].startswith("[furl] done: 20 steps")
