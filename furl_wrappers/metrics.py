"""Rank metrics for reward quality: Spearman correlation and ROC-AUC (numpy only).

Example:
    >>> spearman([1, 2, 3, 4], [10, 20, 25, 40])
    1.0
    >>> roc_auc([0.9, 0.8], [0.1, 0.85])
    0.75
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["rankdata", "spearman", "roc_auc"]


def rankdata(x: ArrayLike) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    values = np.asarray(x, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_x = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation of two equal-length sequences (NaN when either is constant)."""
    rx, ry = rankdata(x), rankdata(y)
    if len(rx) != len(ry):
        raise ValueError(f"spearman needs equal lengths, got {len(rx)} and {len(ry)}")
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def roc_auc(positive_scores: ArrayLike, negative_scores: ArrayLike) -> float:
    """P(score of a random positive > score of a random negative), ties counting ½ (Mann-Whitney U)."""
    pos, neg = np.asarray(positive_scores, np.float64), np.asarray(negative_scores, np.float64)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_auc needs at least one positive and one negative score")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))
