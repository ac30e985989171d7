from __future__ import annotations

import pytest

from furl_wrappers.tasks import (
    ALL_TASKS,
    INSTRUCTIONS,
    MT10_TASKS,
    UnknownTaskError,
    canonical_task,
    instruction,
    short_task,
)

PAPER_TABLE_4 = {
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
}


def test_fifty_tasks_match_metaworld() -> None:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    assert len(ALL_TASKS) == 50
    assert set(ALL_TASKS) == set(ALL_V3_ENVIRONMENTS)


def test_mt10_instructions_are_the_papers() -> None:
    assert [short_task(t) for t in MT10_TASKS] == list(PAPER_TABLE_4)
    for name, text in PAPER_TABLE_4.items():
        assert instruction(name) == text


def test_every_instruction_is_a_short_imperative_sentence() -> None:
    assert len(set(INSTRUCTIONS.values())) == 50  # no two tasks share a text
    for text in INSTRUCTIONS.values():
        assert text[0].isupper() and text.endswith(".") and 2 <= len(text.split()) <= 14


@pytest.mark.parametrize(
    "given", ["drawer-open", "drawer-open-v3", "Drawer_Open", "drawer-open-v2", "drawer-open-v3-goal-hidden"]
)
def test_name_forms(given: str) -> None:
    assert canonical_task(given) == "drawer-open-v3"


def test_unknown_task_lists_close_matches() -> None:
    with pytest.raises(UnknownTaskError, match="drawer-open") as info:
        canonical_task("drawer-opn")
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="'not-a-task'"):
        instruction("not-a-task")
    with pytest.raises(ValueError, match="must be a string"):
        canonical_task(3)  # type: ignore[arg-type]
