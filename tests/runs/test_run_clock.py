"""RunClock: a run's wall time continues from what earlier processes trained."""

from __future__ import annotations

import time

import pytest

from furl_wrappers._safe_files import CorruptFileError
from furl_wrappers.runs.run_clock import RunClock


def test_elapsed_adds_this_process_to_before(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    clock, fresh = RunClock(before=250.5), RunClock()
    now[0] += 10.25
    assert (clock.elapsed(), fresh.elapsed(), clock.before) == (260.75, 10.25, 250.5)
    assert RunClock(before=7).before == 7.0 and isinstance(RunClock(before=7).before, float)


@pytest.mark.parametrize("before", [float("nan"), float("inf"), -0.5, "12", True, None])
def test_bad_before_is_one_line(before) -> None:
    with pytest.raises(ValueError, match=r"^before must be a finite number >= 0 \(seconds already trained\), got "):
        RunClock(before=before)
    with pytest.raises(CorruptFileError):  # the class a file's reader asks for
        RunClock(before=before, error=CorruptFileError)
