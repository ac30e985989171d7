"""FuRL's relay over other SB3 off-policy algorithms: sb3-contrib's TQC and CrossQ, and DrQ from pixels.

The relay (:mod:`furl_wrappers.relay`, the mixin ``_Relay``) is the same for each: its schedule, threshold, shared
batch (VLM agent on the relabelled reward, second agent on the task reward), alignment and checkpoint format. Only
the algorithm changes, for *both* relay agents: ``RelayTQC`` is a TQC VLM agent with a plain TQC second agent,
``RelayCrossQ`` the same with CrossQ, ``RelayDrQ`` with :class:`~furl_wrappers.drq.DrQ` on pixel observations
(paper §5.4; its shared buffer stores each frame once: :class:`~furl_wrappers.pixel_buffer.VLMPixelReplayBuffer`).
:class:`~furl_wrappers.relay.RelayPolicy` is the paper's (SAC).

Arguments: the relay's (``vlm_reward``, ``relay``, ``relay_threshold``, ``relay_lengths``, ``relay_noise``,
``align``, ``alignment_kwargs``: see :class:`~furl_wrappers.relay.RelayPolicy`), then the algorithm's own, with the
algorithm's own defaults (``target_entropy="paper"`` = −|A|/2 is accepted too). The second agent gets the VLM
agent's settings its algorithm takes (e.g. TQC's ``top_quantiles_to_drop_per_net``, CrossQ's ``policy_delay``).

Example:
    >>> import furl_wrappers
    >>> from furl_wrappers.backbones import RelayCrossQ
    >>> venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", env_kwargs={"image_size": 32})
    >>> model = RelayCrossQ("MlpPolicy", venv, learning_starts=20, buffer_size=1000, batch_size=16,
    ...                     alignment_kwargs={"batch_size": 16})
    >>> type(model.task_agent).__name__
    'CrossQ'
"""

from __future__ import annotations

from sb3_contrib import TQC, CrossQ

from furl_wrappers.drq import DrQ
from furl_wrappers.pixel_buffer import VLMPixelReplayBuffer
from furl_wrappers.relay import _Relay

__all__ = ["RelayTQC", "RelayCrossQ", "RelayDrQ"]


class RelayTQC(_Relay, TQC):
    """FuRL's relay over sb3-contrib's TQC (both agents TQC). Arguments: the relay's, then TQC's (its defaults)."""

    backbone = TQC


class RelayCrossQ(_Relay, CrossQ):
    """FuRL's relay over sb3-contrib's CrossQ (both agents CrossQ: no target network, BatchRenorm critics).
    Arguments: the relay's, then CrossQ's (its defaults)."""

    backbone = CrossQ


class RelayDrQ(_Relay, DrQ):
    """FuRL from pixels (paper §5.4): the relay over :class:`~furl_wrappers.drq.DrQ` (both agents DrQ, one shared
    :class:`~furl_wrappers.pixel_buffer.VLMPixelReplayBuffer`). Arguments: the relay's, then DrQ's (the paper's
    pixel settings)."""

    backbone = DrQ
    default_buffer_class = VLMPixelReplayBuffer
