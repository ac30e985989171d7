"""FuRL's alignment losses as pure functions of VLM scores (r_VLM values).

Notation: ``r(x)`` is r_VLM of frame ``x``; δ the margin (0.1); δ' the goal margin (0.25).

Stage 2 (after the first success), following the reference code *deliberately*: the hinge's gate uses the
margin but the loss value is the raw score difference,

    ℓ(a, b) = 1[r(b) − r(a) + δ > 0] · (r(b) − r(a)),   averaged over the batch,

so a pair already ordered but by less than δ still pushes ``a`` further above ``b`` (its gradient is the raw
difference's, not a constant). ``pos_neg`` uses a = successful-episode frame, b = failed-episode frame;
``pos_pos`` uses a = frame t, b = frame t − k of the same successful episode.

Stage 1 (before the first success, with a goal image) is, as in the reference code, a true hinge over all pairs
of a batch of failed-episode frames:

    L = mean_i Σ_j M_ij · max(0, r(o_j) − r(o_i) + δ),   M_ij = 1[d_i < d_j − δ'],

where ``d_i = ‖Φ_I(o_i) − Φ_I(o_g)‖₂`` is the frame's distance to the goal image in the frozen embedding space:
frames closer to the goal must score higher.

Example:
    >>> import torch
    >>> ranking_loss(torch.tensor([0.5]), torch.tensor([0.45]), margin=0.1)  # gated: 0.45 - 0.5
    tensor(-0.0500)
"""

from __future__ import annotations

import torch

__all__ = ["ranking_loss", "pos_neg_loss", "pos_pos_loss", "goal_mask", "neg_neg_goal_loss"]


def ranking_loss(r_a: torch.Tensor, r_b: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """``mean(1[r_b − r_a + δ > 0] · (r_b − r_a))``: asks ``a`` to score at least δ above ``b``.

    Args:
        r_a: scores of the frames that should rank higher, ``(B,)``.
        r_b: scores of the frames that should rank lower, ``(B,)``.
        margin: δ.

    Returns:
        Scalar loss.
    """
    diff = r_b - r_a
    gate = (diff + margin > 0).to(diff.dtype)
    return (gate * diff).mean()


def pos_neg_loss(r_pos: torch.Tensor, r_neg: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Successful-episode frames above failed-episode frames: ``ranking_loss(r_pos, r_neg, δ)``."""
    return ranking_loss(r_pos, r_neg, margin)


def pos_pos_loss(r_later: torch.Tensor, r_earlier: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Within a successful episode, frame t above frame t − k: ``ranking_loss(r_t, r_{t−k}, δ)``."""
    return ranking_loss(r_later, r_earlier, margin)


def goal_mask(distances: torch.Tensor, goal_margin: float = 0.25) -> torch.Tensor:
    """``M_ij = 1[d_i < d_j − δ']`` for goal distances ``(B,)`` → float ``(B, B)``."""
    return (distances.unsqueeze(1) < distances.unsqueeze(0) - goal_margin).to(distances.dtype)


def neg_neg_goal_loss(
    scores: torch.Tensor, distances: torch.Tensor, margin: float = 0.1, goal_margin: float = 0.25,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Stage-1 loss ``mean_i Σ_j M_ij · max(0, r_j − r_i + δ)`` over a batch.

    Args:
        scores: r_VLM of the frames, ``(B,)``.
        distances: their L2 distances to the goal image's embedding, ``(B,)``.
        margin: δ.
        goal_margin: δ'.
        mask: ``goal_mask(distances, goal_margin)`` when the caller already has it ``(B, B)``.
    """
    if mask is None:
        mask = goal_mask(distances, goal_margin)
    hinge = torch.relu(scores.unsqueeze(0) - scores.unsqueeze(1) + margin)  # [i, j] = r_j - r_i + δ
    return (mask * hinge).sum(dim=1).mean()
