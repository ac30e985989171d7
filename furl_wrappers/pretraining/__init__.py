"""Pretraining the offline VLM (``furl-mw-vlm``): data generation on non-MT10 tasks, objective, one entry point.

- :mod:`~furl_wrappers.pretraining.data`: labelled episodes of the 40 tasks outside MT10;
- :mod:`~furl_wrappers.pretraining.objective`: the losses and the training loop;
- :mod:`~furl_wrappers.pretraining.run`: ``furl pretrain-vlm`` (:func:`run_pretraining`).

Example:
    >>> run_pretraining("my-vlm.pt", tasks=["reach-wall", "door-close"], steps=50)  # doctest: +SKIP
    >>> make_encoder("furl-mw-vlm:my-vlm.pt")  # doctest: +SKIP
"""
from __future__ import annotations

from furl_wrappers.pretraining.data import PRETRAIN_TASKS, PretrainDataset, check_pretrain_tasks, generate_dataset
from furl_wrappers.pretraining.objective import PretrainConfig, pretrain, pretrain_losses
from furl_wrappers.pretraining.run import run_pretraining

__all__ = ["PRETRAIN_TASKS", "PretrainDataset", "PretrainConfig", "generate_dataset", "pretrain",
           "pretrain_losses", "check_pretrain_tasks", "run_pretraining"]
