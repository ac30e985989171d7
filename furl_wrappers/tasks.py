"""Meta-World task names, their text instructions, and name normalisation.

The ten MT10 instructions are the paper's (Table 4, following CARE); the other forty are written in the
same short imperative style. Everything here is pure Python: importing it does not import MuJoCo.

Example:
    >>> from furl_wrappers.tasks import canonical_task, instruction
    >>> canonical_task("drawer-open")
    'drawer-open-v3'
    >>> instruction("drawer-open-v3")
    'Open a drawer.'
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "ALL_TASKS",
    "MT10_TASKS",
    "INSTRUCTIONS",
    "UnknownTaskError",
    "canonical_task",
    "short_task",
    "instruction",
]

_VERSION_SUFFIX = "-v3"

_INSTRUCTIONS: dict[str, str] = {
    # MT10: exactly the paper's Table 4.
    "button-press-topdown": "Press a button from the top.",
    "door-open": "Open a door with a revolving joint.",
    "drawer-close": "Push and close a drawer.",
    "drawer-open": "Open a drawer.",
    "peg-insert-side": "Insert a peg sideways.",
    "pick-place": "Pick and place a puck to a goal.",
    "push": "Push the puck to a goal.",
    "reach": "Reach a goal position.",
    "window-close": "Push and close a window.",
    "window-open": "Push and open a window.",
    # The other forty Meta-World tasks, in the same style.
    "assembly": "Pick up a nut and place it onto a peg.",
    "basketball": "Dunk the basketball into the basket.",
    "bin-picking": "Grasp the puck from one bin and place it into another bin.",
    "box-close": "Grasp the cover and close the box with it.",
    "button-press-topdown-wall": "Press a button from the top with a short wall in front.",
    "button-press": "Press a button.",
    "button-press-wall": "Press a button behind a short wall.",
    "coffee-button": "Push a button on the coffee machine.",
    "coffee-pull": "Pull a mug from a coffee machine.",
    "coffee-push": "Push a mug under a coffee machine.",
    "dial-turn": "Rotate a dial 180 degrees.",
    "disassemble": "Pick a nut out of a peg.",
    "door-close": "Close a door with a revolving joint.",
    "door-lock": "Lock the door by rotating the lock clockwise.",
    "door-unlock": "Unlock the door by rotating the lock counter-clockwise.",
    "hand-insert": "Insert the gripper into a hole.",
    "faucet-open": "Rotate the faucet counter-clockwise.",
    "faucet-close": "Rotate the faucet clockwise.",
    "hammer": "Hammer a screw on the wall.",
    "handle-press-side": "Press a handle down sideways.",
    "handle-press": "Press a handle down.",
    "handle-pull-side": "Pull a handle up sideways.",
    "handle-pull": "Pull a handle up.",
    "lever-pull": "Pull a lever down 90 degrees.",
    "pick-place-wall": "Pick a puck, bypass a wall and place the puck to a goal.",
    "pick-out-of-hole": "Pick up a puck from a hole.",
    "plate-slide": "Slide a plate into a cabinet.",
    "plate-slide-side": "Slide a plate into a cabinet sideways.",
    "plate-slide-back": "Get a plate from the cabinet.",
    "plate-slide-back-side": "Get a plate from the cabinet sideways.",
    "peg-unplug-side": "Unplug a peg sideways.",
    "soccer": "Kick a soccer ball into the goal.",
    "stick-push": "Grasp a stick and push a box using the stick.",
    "stick-pull": "Grasp a stick and pull a box with the stick.",
    "push-wall": "Bypass a wall and push a puck to a goal.",
    "push-back": "Pull a puck to a goal.",
    "reach-wall": "Bypass a wall and reach a goal position.",
    "shelf-place": "Pick and place a puck onto a shelf.",
    "sweep-into": "Sweep a puck into a hole.",
    "sweep": "Sweep a puck off the table.",
}

#: Instruction per canonical task id (``"<task>-v3"``), read-only.
INSTRUCTIONS: Mapping[str, str] = MappingProxyType(
    {f"{name}{_VERSION_SUFFIX}": text for name, text in sorted(_INSTRUCTIONS.items())}
)

#: All 50 Meta-World v3 task ids, sorted.
ALL_TASKS: tuple[str, ...] = tuple(INSTRUCTIONS)

#: The paper's ten tasks (MT10), in the order of its Table 1.
MT10_TASKS: tuple[str, ...] = tuple(
    f"{name}{_VERSION_SUFFIX}"
    for name in (
        "button-press-topdown",
        "door-open",
        "drawer-close",
        "drawer-open",
        "peg-insert-side",
        "pick-place",
        "push",
        "reach",
        "window-close",
        "window-open",
    )
)


class UnknownTaskError(ValueError):
    """Raised for a task name that is not one of the 50 Meta-World v3 tasks."""


def canonical_task(task: str) -> str:
    """Normalise a task name to its Meta-World v3 id.

    Args:
        task: ``"drawer-open"``, ``"drawer-open-v3"``, ``"Drawer_Open"`` or the Meta-World variants
            ``"drawer-open-v3-goal-hidden"`` / ``"-goal-observable"``.

    Returns:
        The canonical id, e.g. ``"drawer-open-v3"``.

    Raises:
        UnknownTaskError: (a ``ValueError``) if the name is not a Meta-World task; the message lists close
            matches.
    """
    if not isinstance(task, str):
        raise UnknownTaskError(f"task must be a string such as 'drawer-open', got {task!r}")
    name = task.strip().lower().replace("_", "-").replace(" ", "-")
    for suffix in ("-goal-hidden", "-goal-observable"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(_VERSION_SUFFIX):
        name = name[: -len(_VERSION_SUFFIX)]
    elif name.endswith("-v2") or name.endswith("-v1"):
        # The paper used v2 ids; the current Meta-World ships the same tasks as v3.
        name = name[:-3]
    if name in _INSTRUCTIONS:
        return f"{name}{_VERSION_SUFFIX}"
    close = difflib.get_close_matches(name, list(_INSTRUCTIONS), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownTaskError(
        f"Unknown Meta-World task {task!r}.{hint} Valid tasks are the 50 Meta-World v3 tasks "
        f"(see furl_wrappers.ALL_TASKS), with or without the '-v3' suffix."
    )


def short_task(task: str) -> str:
    """The task name without its version suffix: ``short_task("drawer-open-v3") == "drawer-open"``."""
    return canonical_task(task)[: -len(_VERSION_SUFFIX)]


def instruction(task: str) -> str:
    """The text instruction for ``task`` (any form :func:`canonical_task` accepts)."""
    return INSTRUCTIONS[canonical_task(task)]
