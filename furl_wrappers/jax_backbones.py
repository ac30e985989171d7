"""JAX backbones from sbx (Stable Baselines Jax): SAC, CrossQ and TQC, plain and with FuRL's relay.

sbx runs SB3's algorithms with flax networks under ``jax.jit``: the same API, buffers, callbacks and ``learn`` loop,
with a much cheaper update step (BENCHMARKS.md). Each class here is sbx's algorithm with pickle-free save/load
(:class:`~furl_wrappers.jax_state.JaxParameters`: the networks, optimiser states and random keys are saved as
tensors, loaded without unpickling, and a loaded model continues exactly). The relay classes are the same relay as
:class:`~furl_wrappers.relay.RelayPolicy` (schedule, 2,500-frame switch, shared relabelling buffer, alignment,
checkpoint format) with both agents of that algorithm; the VLM, its reward heads and their alignment stay in torch.

Needs the ``jax`` extra: ``pip install "furl_wrappers[jax]"`` (GPU: ``pip install "jax[cuda12]"`` as well; set
``XLA_PYTHON_CLIENT_PREALLOCATE=false`` so JAX does not take the GPU memory torch's encoder shares).

Arguments: the algorithm's own, with sbx's defaults (the zoo configs ``sac_sbx``, ``furl_sbx``, ``crossq_sbx``,
``furl_crossq_sbx`` hold the paper's settings), and for the relay classes the relay's first (see
:class:`~furl_wrappers.relay.RelayPolicy`; ``target_entropy="paper"`` = −|A|/2 is accepted too).

Example:
    >>> import furl_wrappers
    >>> from furl_wrappers.jax_backbones import RelaySbxSAC
    >>> venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", env_kwargs={"image_size": 32})
    >>> model = RelaySbxSAC("MlpPolicy", venv, learning_starts=20, buffer_size=1000, batch_size=16,
    ...                     alignment_kwargs={"batch_size": 16})
    >>> _ = model.learn(40)
    >>> type(model.task_agent).__name__
    'SbxSAC'
"""

from __future__ import annotations

from typing import ClassVar

try:
    import sbx
except ImportError as err:  # the optional extra: say what to install, in one line
    raise ImportError(f"the JAX backbones need sbx and JAX ({err}): pip install \"furl_wrappers[jax]\"") from None

from furl_wrappers.jax_state import JaxParameters
from furl_wrappers.relay import _Relay

__all__ = ["SbxSAC", "SbxCrossQ", "SbxTQC", "RelaySbxSAC", "RelaySbxCrossQ", "RelaySbxTQC"]

#: sbx keeps these constructor arguments under other names (``ent_coef`` becomes a flax module on setup)
_SBX_SETTINGS = {"ent_coef": "ent_coef_init", "qf_learning_rate": "initial_qf_learning_rate"}


class SbxSAC(JaxParameters, sbx.SAC):
    """sbx's SAC, saved and loaded without pickle. Arguments: sbx's ``SAC``'s (its defaults)."""


class SbxCrossQ(JaxParameters, sbx.CrossQ):
    """sbx's CrossQ (no target network, BatchRenorm), saved and loaded without pickle. Arguments: sbx's ``CrossQ``'s
    (its defaults)."""


class SbxTQC(JaxParameters, sbx.TQC):
    """sbx's TQC, saved and loaded without pickle. Arguments: sbx's ``TQC``'s (its defaults)."""


class RelaySbxSAC(_Relay, SbxSAC):  # type: ignore[misc]  # target_entropy: also "paper"
    """FuRL's relay over sbx's SAC (both agents :class:`SbxSAC`). Arguments: the relay's, then sbx SAC's."""

    backbone = SbxSAC
    setting_attributes: ClassVar[dict[str, str]] = _SBX_SETTINGS


class RelaySbxCrossQ(_Relay, SbxCrossQ):  # type: ignore[misc]  # target_entropy: also "paper"
    """FuRL's relay over sbx's CrossQ (both agents :class:`SbxCrossQ`). Arguments: the relay's, then sbx
    CrossQ's."""

    backbone = SbxCrossQ
    setting_attributes: ClassVar[dict[str, str]] = _SBX_SETTINGS


class RelaySbxTQC(_Relay, SbxTQC):  # type: ignore[misc]  # target_entropy: also "paper"
    """FuRL's relay over sbx's TQC (both agents :class:`SbxTQC`). Arguments: the relay's, then sbx TQC's."""

    backbone = SbxTQC
    setting_attributes: ClassVar[dict[str, str]] = _SBX_SETTINGS
