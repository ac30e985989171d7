"""SB3 callbacks of furl_wrappers: reward alignment, the paper's evaluation, resumable checkpoints, progress.

Kept under ``furl_wrappers.callbacks`` so it never collides with the ``callbacks.py`` many SB3 projects keep at
their root.
"""

from furl_wrappers.callbacks.alignment import RewardAlignmentCallback
from furl_wrappers.callbacks.checkpoint import ResumeCheckpointCallback
from furl_wrappers.callbacks.evaluation import PaperEvalCallback, evaluate_policy_success
from furl_wrappers.callbacks.progress import FuRLProgressCallback

__all__ = [
    "RewardAlignmentCallback",
    "PaperEvalCallback",
    "ResumeCheckpointCallback",
    "evaluate_policy_success",
    "FuRLProgressCallback",
]
