"""SB3 callbacks of furl_wrappers that a user adds to their own SB3 script: FuRL's reward alignment.

(The paper's evaluation, resumable checkpoints and the progress display are ``furl train``'s own: see
:mod:`furl_wrappers.runs`.)

Kept under ``furl_wrappers.callbacks`` so it never collides with the ``callbacks.py`` many SB3 projects keep at
their root.
"""
from __future__ import annotations

from furl_wrappers.callbacks.alignment import RewardAlignmentCallback

__all__ = ["RewardAlignmentCallback"]
