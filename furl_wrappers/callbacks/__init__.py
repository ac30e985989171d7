"""SB3 callbacks of furl_wrappers.

Kept under ``furl_wrappers.callbacks`` so it never collides with the ``callbacks.py`` many SB3 projects keep at
their root.
"""

from furl_wrappers.callbacks.alignment import RewardAlignmentCallback, find_vlm_reward

__all__ = ["RewardAlignmentCallback", "find_vlm_reward"]
