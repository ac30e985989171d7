"""The language side of pretraining: paraphrases of the 40 training tasks' instructions and their scene families.

None of it covers MT10, which stays unseen.

**Paraphrases.** The offline VLM learns the mapping from frames to sentence embeddings on only 40 instructions;
training on several phrasings of each (sampled per step, the canonical instruction among them) teaches the text
adapter a map over wording rather than forty fixed points (on held-out MT10 it raised instruction retrieval from 2 to
4 of 10; unseen phrasings still move the scores, see the model card).

**Scene families.** Tasks that share objects (a door to close, lock or unlock) give hard negatives: a finished
frame of one must match its own instruction better than a sibling's finished frame does.

Example:
    >>> from furl_wrappers.pretraining.instructions import instruction_variants
    >>> instruction_variants("door-close-v3")[0]
    'Close a door with a revolving joint.'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from furl_wrappers.tasks import canonical_task, instruction

__all__ = ["PARAPHRASES", "SCENE_FAMILIES", "instruction_variants", "scene_siblings"]

_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "assembly": ("Put the nut on the peg.", "Grab the ring nut and slide it down over the peg.",
                 "Assemble the nut onto the peg.", "Lift the nut and fit it onto the post."),
    "basketball": ("Put the ball through the hoop.", "Pick up the basketball and score in the basket.",
                   "Drop the ball into the basketball hoop.", "Carry the ball to the hoop and dunk it."),
    "bin-picking": ("Move the puck from one bin to the other.", "Pick the puck out of the bin and drop it in "
                    "the other bin.", "Transfer the puck between the two bins.",
                    "Take the puck from the left bin to the right bin."),
    "box-close": ("Put the lid on the box.", "Pick up the lid and close the box.", "Cover the box with its lid.",
                  "Place the cover on top of the box."),
    "button-press-topdown-wall": ("Push the button down from above, reaching over a small wall.",
                                  "Press down on the button from the top past a low wall.",
                                  "Press the top button behind the little wall.",
                                  "Reach over the wall and press the button downward."),
    "button-press": ("Push the button.", "Press the button in.", "Push the button in horizontally.",
                     "Hit the button on the box."),
    "button-press-wall": ("Press the button that is behind a low wall.", "Reach past the small wall and push the "
                          "button.", "Push the button on the other side of the wall.",
                          "Press in the button hidden behind a wall."),
    "coffee-button": ("Press the coffee machine's button.", "Push the button on the espresso machine.",
                      "Turn on the coffee machine by pressing its button.", "Hit the coffee maker button."),
    "coffee-pull": ("Pull the mug out from under the coffee machine.", "Take the cup away from the coffee "
                    "machine.", "Slide the mug back out of the coffee maker.", "Remove the mug from the machine."),
    "coffee-push": ("Slide the mug under the coffee machine.", "Push the cup into the coffee maker.",
                    "Move the mug beneath the coffee spout.", "Put the cup under the coffee machine."),
    "dial-turn": ("Turn the dial halfway around.", "Spin the knob by 180 degrees.", "Rotate the knob a half turn.",
                  "Twist the dial around."),
    "disassemble": ("Take the nut off the peg.", "Lift the nut up and off the peg.", "Remove the ring from the "
                    "post.", "Pull the nut out of the peg."),
    "door-close": ("Shut the door.", "Swing the door closed.", "Close the hinged door.",
                   "Push the door shut on its hinge."),
    "door-lock": ("Lock the door.", "Turn the lock on the door clockwise.", "Rotate the door's lock to lock it.",
                  "Twist the door lock down to lock it."),
    "door-unlock": ("Unlock the door.", "Turn the lock on the door counter-clockwise.",
                    "Rotate the door's lock to unlock it.", "Twist the door lock up to unlock it."),
    "hand-insert": ("Put the gripper into the hole.", "Move the hand down into the hole.",
                    "Insert the hand into the opening in the table.", "Lower the gripper into the hole."),
    "faucet-open": ("Open the faucet.", "Turn the tap counter-clockwise.", "Turn on the faucet.",
                    "Rotate the faucet handle to open it."),
    "faucet-close": ("Close the faucet.", "Turn the tap clockwise.", "Turn off the faucet.",
                     "Rotate the faucet handle to close it."),
    "hammer": ("Hit the nail with the hammer.", "Pick up the hammer and drive the screw into the wall.",
               "Use the hammer to knock the nail in.", "Hammer the peg into the wall."),
    "handle-press-side": ("Push the handle down from the side.", "Press down the side handle.",
                          "Move the handle downwards from the side.", "Press the handle down, approaching "
                          "sideways."),
    "handle-press": ("Push the handle down.", "Press down on the handle.", "Move the handle downwards.",
                     "Lower the handle."),
    "handle-pull-side": ("Pull the handle up from the side.", "Lift the side handle up.",
                         "Raise the handle, approaching sideways.", "Pull up on the side handle."),
    "handle-pull": ("Pull the handle up.", "Lift the handle.", "Raise the handle upwards.", "Pull up on the handle."),
    "lever-pull": ("Pull the lever down.", "Rotate the lever down a quarter turn.", "Pull down on the lever.",
                   "Lower the lever by 90 degrees."),
    "pick-place-wall": ("Pick up the puck, go over the wall and put it at the goal.", "Move the puck past a wall "
                        "to the target.", "Grab the puck and place it at the goal behind the wall.",
                        "Carry the puck around a wall to the goal."),
    "pick-out-of-hole": ("Lift the puck out of the hole.", "Take the puck out of the hole.",
                         "Grab the puck in the hole and raise it.", "Pull the puck up from the hole."),
    "plate-slide": ("Push the plate into the cabinet.", "Slide the plate into the goal.",
                    "Move the plate into the cabinet.", "Shove the plate into the open cabinet."),
    "plate-slide-side": ("Push the plate sideways into the cabinet.", "Slide the plate into the cabinet from the "
                         "side.", "Move the plate sideways into the goal.", "Shove the plate sideways into the "
                         "cabinet."),
    "plate-slide-back": ("Pull the plate out of the cabinet.", "Slide the plate back out of the cabinet.",
                         "Take the plate out of the cabinet.", "Retrieve the plate from the cabinet."),
    "plate-slide-back-side": ("Pull the plate sideways out of the cabinet.", "Slide the plate out of the cabinet "
                              "to the side.", "Take the plate out of the cabinet sideways.",
                              "Retrieve the plate from the cabinet, moving it sideways."),
    "peg-unplug-side": ("Pull the peg out sideways.", "Unplug the peg from the side.", "Remove the peg from its "
                        "hole sideways.", "Pull the plug out to the side."),
    "soccer": ("Kick the ball into the goal.", "Push the soccer ball into the net.", "Score a goal with the ball.",
               "Move the soccer ball into the goal."),
    "stick-push": ("Use the stick to push the box.", "Grab the stick and shove the box with it.",
                   "Pick up the stick and push the container with it.", "Push the box using a stick."),
    "stick-pull": ("Use the stick to pull the box.", "Grab the stick and drag the box with it.",
                   "Pick up the stick and pull the container with it.", "Pull the box using a stick."),
    "push-wall": ("Push the puck around a wall to the goal.", "Slide the puck past the wall to the target.",
                  "Move the puck around the wall to the goal.", "Go around the wall and push the puck to the goal."),
    "push-back": ("Pull the puck back to the goal.", "Drag the puck towards the goal.",
                  "Slide the puck backwards to the target.", "Bring the puck back to the goal."),
    "reach-wall": ("Move the gripper over a wall to the goal.", "Reach the target behind a wall.",
                   "Go around the wall and reach the goal.", "Reach past a wall to a goal position."),
    "shelf-place": ("Put the puck on the shelf.", "Pick up the puck and place it on the shelf.",
                    "Move the puck onto the shelf.", "Lift the puck onto the shelf."),
    "sweep-into": ("Sweep the puck into the hole.", "Push the puck into the hole.", "Slide the puck into the hole.",
                   "Brush the puck into the hole."),
    "sweep": ("Sweep the puck off the table.", "Push the puck off the edge of the table.",
              "Slide the puck off the table.", "Brush the puck off the table."),
}

#: paraphrases per canonical task id (``"<task>-v3"``), read-only; none for MT10 tasks
PARAPHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {canonical_task(name): texts for name, texts in sorted(_PARAPHRASES.items())})


def instruction_variants(task: str) -> list[str]:
    """The canonical instruction of ``task`` first, then its paraphrases (none for MT10 tasks)."""
    name = canonical_task(task)
    return [instruction(name), *PARAPHRASES.get(name, ())]


#: groups of training tasks that share a scene's objects, so that one task's finished frames are the hardest
#: negatives for another's instruction (open vs close, press vs pull, lock vs unlock)
SCENE_FAMILIES: tuple[tuple[str, ...], ...] = tuple(tuple(canonical_task(t) for t in family) for family in (
    ("door-close", "door-lock", "door-unlock"),
    ("faucet-open", "faucet-close"),
    ("handle-press", "handle-press-side", "handle-pull", "handle-pull-side"),
    ("button-press", "button-press-wall", "button-press-topdown-wall", "coffee-button"),
    ("coffee-button", "coffee-pull", "coffee-push"),
    ("plate-slide", "plate-slide-side", "plate-slide-back", "plate-slide-back-side"),
    ("stick-push", "stick-pull"),
    ("assembly", "disassemble"),
    ("push-wall", "push-back", "pick-place-wall", "pick-out-of-hole", "shelf-place", "sweep", "sweep-into",
     "bin-picking"),
    ("reach-wall", "push-wall", "pick-place-wall"),
))


def scene_siblings(task: str) -> list[str]:
    """Training tasks that share a scene family with ``task`` (sorted, without ``task`` itself)."""
    name = canonical_task(task)
    return sorted({t for family in SCENE_FAMILIES if name in family for t in family} - {name})
