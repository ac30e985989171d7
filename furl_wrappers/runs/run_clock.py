"""RunClock: a run's training wall time, continued across resumes.

One clock per run: the evaluation log (``evaluations.csv``'s ``wall_time_s``), each checkpoint's ``meta.json`` and
``summary.json`` read it, so a run stopped and resumed reports every segment it trained, not only the last. A
checkpoint stores the clock's reading; the resumed process starts its clock from there (the time between the
checkpoint and the stop is redone, so it is not counted twice).

Example:
    >>> clock = RunClock(before=120.0)  # resumed from a checkpoint taken after 120 s of training
    >>> 120.0 <= clock.elapsed() < 180.0
    True
    >>> RunClock(before=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: before must be a finite number >= 0 (seconds already trained), got nan
"""

from __future__ import annotations

import time

from furl_wrappers.validation import check_number

__all__ = ["RunClock"]


class RunClock:
    """Seconds a run has trained: ``before`` (earlier processes) plus the time since this one was made.

    Args:
        before: seconds trained before this process (a checkpoint's ``wall_time_s``; 0 for a new run).
        error: the exception class a bad ``before`` raises (a ``ValueError`` subclass such as
            ``CorruptFileError`` when it comes from a file).
    """

    def __init__(self, before: float = 0.0, *, error: type = ValueError) -> None:
        self.before = check_number("before", before, low=0.0, hint="seconds already trained", error=error)
        self._start = time.monotonic()  # monotonic: a clock change mid-run does not bend the log

    def elapsed(self) -> float:
        """Seconds trained so far, this process included."""
        return self.before + (time.monotonic() - self._start)
