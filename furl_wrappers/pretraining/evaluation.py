"""Zero-shot quality of an offline VLM on held-out tasks: instruction retrieval, success AUC, progress Spearman.

All scores are the raw cosine ``cos(image, text)`` of the encoder (no FuRL heads). Given, per task, episodes of
frame embeddings with their per-frame success flags, and one text embedding per task:

- **instruction retrieval**: for each task, the mean cosine of its successful episodes' frames from the first
  success on with every task's instruction; top-1 = the task's own instruction scores highest (chance
  ``1 / n_tasks``);
- **matched-vs-mismatched AUC**: over those frames of all tasks, ROC-AUC of ``cos(frame, own instruction)`` against
  ``cos(frame, another task's instruction)`` — does a frame of a finished task match its words better than
  other tasks' words;
- **success-vs-failure AUC** (per task, own instruction): positive frames of successful episodes (start through
  the first success run, as FuRL labels them) against all frames of failed episodes;
- **progress Spearman** (per task, own instruction): rank correlation of the cosine with time along each
  successful episode up to its first success, averaged over episodes.

Example:
    >>> rng = np.random.default_rng(0)
    >>> text = np.eye(2, 4, dtype=np.float32)
    >>> ep = {"embeddings": np.tile(text[0], (4, 1)), "success": np.array([0, 0, 1, 1], bool)}
    >>> zero_shot_metrics({"a": [ep], "b": [dict(ep, embeddings=np.tile(text[1], (4, 1)))]}, text)["top1"]
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from furl_wrappers.alignment_store import label_episode
from furl_wrappers.metrics import roc_auc, spearman

__all__ = ["zero_shot_metrics"]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _finite(reduce, values: list[float]) -> float:
    """``reduce`` over the finite values (NaN, without a warning, when there are none: e.g. a constant episode)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(reduce(finite)) if finite else float("nan")


def zero_shot_metrics(episodes: Mapping[str, Sequence[Mapping[str, np.ndarray]]], text: np.ndarray) -> dict:
    """Retrieval, matched AUC, success AUC and Spearman of raw cosine scores.

    Args:
        episodes: task → its episodes, each ``{"embeddings": (T, D), "success": bool (T,)}`` (the frame after each
            step, or every k-th step, in order).
        text: ``(n_tasks, D)`` instruction embeddings, row ``i`` for the ``i``-th key of ``episodes``.

    Returns:
        ``{"top1", "matched_auc", "median_success_auc", "median_spearman", "tasks": {task: {"rank", "success_auc",
        "spearman", "scores"}}}``; ``rank`` is 1 when the own instruction retrieves first, ``scores`` the mean cosine
        with each instruction. NaN where a task lacks successful (or failed) episodes.
    """
    tasks = list(episodes)
    text = _unit(text)
    if text.shape[0] != len(tasks):
        raise ValueError(f"text must have one row per task ({len(tasks)}), got {text.shape[0]}")
    per_task: dict[str, dict] = {}
    matched, mismatched = [], []
    for i, task in enumerate(tasks):
        done_frames, pos, neg, rhos = [], [], [], []
        for ep in episodes[task]:
            emb, success = _unit(ep["embeddings"]), np.asarray(ep["success"], bool)
            cos = emb @ text[i]
            ok, n_pos = label_episode(success)
            if ok:
                first = int(np.flatnonzero(success)[0])
                done_frames.append(emb[first:])
                pos.append(cos[:n_pos])
                if first >= 2:
                    rhos.append(spearman(np.arange(first + 1), cos[: first + 1]))
            else:
                neg.append(cos)
        row = {"rank": float("nan"), "scores": [], "success_auc": float("nan"),
               "spearman": _finite(np.mean, rhos)}
        if done_frames:
            sims = np.concatenate(done_frames) @ text.T  # (F, n_tasks)
            scores = sims.mean(0)
            row["scores"] = [round(float(s), 4) for s in scores]
            # a diverged encoder (non-finite scores) must not count as a retrieval
            row["rank"] = int(1 + np.sum(scores > scores[i])) if np.all(np.isfinite(scores)) else float("nan")
            matched.append(sims[:, i])
            mismatched.append(np.delete(sims, i, axis=1).ravel())
        if pos and neg:
            row["success_auc"] = roc_auc(np.concatenate(pos), np.concatenate(neg))
        per_task[task] = row
    ranks = [r["rank"] for r in per_task.values() if not np.isnan(r["rank"])]
    return {
        "top1": float(np.mean([r == 1 for r in ranks])) if ranks else float("nan"),
        "matched_auc": roc_auc(np.concatenate(matched), np.concatenate(mismatched))
        if matched and len(tasks) > 1 else float("nan"),
        "median_success_auc": _finite(np.median, [r["success_auc"] for r in per_task.values()]),
        "median_spearman": _finite(np.median, [r["spearman"] for r in per_task.values()]),
        "tasks": per_task,
    }
