"""Instruction paraphrases and scene families: training tasks only, well-formed, symmetric."""

from __future__ import annotations

import furl_wrappers
from furl_wrappers.pretraining import PRETRAIN_TASKS
from furl_wrappers.pretraining.instructions import (
    PARAPHRASES,
    SCENE_FAMILIES,
    instruction_variants,
    scene_siblings,
)


def test_paraphrases_cover_the_training_tasks_and_never_mt10() -> None:
    assert set(PARAPHRASES) == set(PRETRAIN_TASKS)
    assert not set(PARAPHRASES) & set(furl_wrappers.MT10_TASKS)
    for task in PRETRAIN_TASKS:
        variants = instruction_variants(task)
        assert variants[0] == furl_wrappers.instruction(task) and len(variants) >= 4
        assert len(set(variants)) == len(variants) and all(v.endswith(".") and v[0].isupper() for v in variants)
    # an MT10 task has its instruction only (nothing to train on)
    assert instruction_variants("drawer-open") == [furl_wrappers.instruction("drawer-open")]


def test_scene_families() -> None:
    members = {t for family in SCENE_FAMILIES for t in family}
    assert members <= set(PRETRAIN_TASKS)
    assert scene_siblings("door-close") == ["door-lock-v3", "door-unlock-v3"]
    assert scene_siblings("coffee-button-v3") == sorted(["button-press-v3", "button-press-wall-v3",
                                                         "button-press-topdown-wall-v3", "coffee-pull-v3",
                                                         "coffee-push-v3"])
    assert scene_siblings("basketball") == [] and scene_siblings("window-open") == []
    for task in members:  # a sibling's sibling list contains the task back
        assert all(task in scene_siblings(s) for s in scene_siblings(task))
