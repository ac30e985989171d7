"""The global random generators' state, captured and restored in one place, as JSON.

Python's ``random``, numpy's legacy global generator (SB3 draws exploration noise and batch indices from it), torch's
CPU generator and, when given, an action space's generator (SB3's warm-up actions). A relay checkpoint and a run's
checkpoint set both record :func:`capture` so that a resumed run draws what the uninterrupted one would have.

Example:
    >>> import numpy as np
    >>> state = capture()
    >>> first = np.random.rand()
    >>> restore(state)
    >>> bool(np.random.rand() == first)
    True
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture", "restore"]


def capture(action_space: Any = None) -> dict[str, Any]:
    """The generators' states as a JSON-able dict (``action_space``: a Gymnasium space, or ``None``)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)  # legacy=True (the default): ("MT19937", keys, pos, has_gauss, cached)
    space_rng = getattr(action_space, "np_random", None)
    return {"python": [version, list(internal), gauss],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "torch": torch.get_rng_state().tolist(),
            "action_space": None if space_rng is None else space_rng.bit_generator.state}


def restore(state: dict[str, Any], action_space: Any = None) -> None:
    """Undo :func:`capture` (SB3's load re-seeds every generator with the run's seed).

    Raises:
        ValueError: a malformed state, in one line (nothing restored past the first bad part).
    """
    try:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        np_rng = state["numpy"]
        np.random.set_state((np_rng[0], np.array(np_rng[1], dtype=np.uint32), *np_rng[2:]))
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
        if state.get("action_space") is not None and action_space is not None:
            action_space.np_random.bit_generator.state = state["action_space"]
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise ValueError(f"the saved random generator states are malformed ({type(err).__name__}: "
                         f"{str(err)[:80]})") from None
