"""Hand-computed values of each alignment loss, gates included."""

from __future__ import annotations

import pytest
import torch

from furl_wrappers.losses import goal_mask, neg_neg_goal_loss, pos_neg_loss, pos_pos_loss, ranking_loss

T = torch.tensor


def test_ranking_loss_gate_uses_margin_value_is_raw_difference() -> None:
    r_a = T([0.5, 0.5, 0.5, 0.5])
    r_b = T([0.9, 0.45, 0.35, 0.1])
    # diffs b - a: 0.4 (gate on), -0.05 (on: -0.05 + 0.1 > 0), -0.15 (off), -0.4 (off)
    expected = (0.4 + -0.05 + 0 + 0) / 4
    assert ranking_loss(r_a, r_b, margin=0.1).item() == pytest.approx(expected)
    # exactly at the margin (values exact in binary): -0.25 + 0.25 = 0 is not > 0 -> gate off
    assert ranking_loss(T([0.5]), T([0.25]), margin=0.25).item() == 0.0
    # zero margin: only wrongly ordered pairs count
    assert ranking_loss(r_a, r_b, margin=0.0).item() == pytest.approx(0.4 / 4)


def test_ranking_loss_gradient_is_the_raw_difference() -> None:
    r_a = T([0.5, 0.5], requires_grad=True)
    r_b = T([0.9, 0.1], requires_grad=True)
    ranking_loss(r_a, r_b, margin=0.1).backward()
    assert r_a.grad.tolist() == pytest.approx([-0.5, 0.0])
    assert r_b.grad.tolist() == pytest.approx([0.5, 0.0])


def test_pos_neg_and_pos_pos() -> None:
    r_pos, r_neg, r_lag = T([0.8, 0.2]), T([0.3, 0.25]), T([0.85, 0.0])
    # pos-neg: diffs -0.5 (off), 0.05 (on) -> 0.05 / 2
    assert pos_neg_loss(r_pos, r_neg, 0.1).item() == pytest.approx(0.025)
    # pos-pos (lag should be lower): diffs 0.05 (on), -0.2 (off) -> 0.05 / 2
    assert pos_pos_loss(r_pos, r_lag, 0.1).item() == pytest.approx(0.025)


def test_goal_mask_on_hand_made_distances() -> None:
    d = T([1.0, 1.2, 2.0])
    # M_ij = d_i < d_j - 0.25
    expected = T([[0, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.float32)
    assert torch.equal(goal_mask(d, 0.25), expected)
    assert torch.equal(goal_mask(d, 0.1), T([[0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.float32))


def test_neg_neg_goal_loss() -> None:
    scores = T([0.1, 0.5, 0.3])
    d = T([1.0, 1.2, 2.0])  # frame 0 and 1 are closer to the goal than frame 2
    # pairs (0,2): relu(0.3 - 0.1 + 0.1) = 0.3; (1,2): relu(0.3 - 0.5 + 0.1) = 0 -> sums [0.3, 0, 0] -> mean 0.1
    assert neg_neg_goal_loss(scores, d, margin=0.1, goal_margin=0.25).item() == pytest.approx(0.1)
    # no pair far enough apart -> zero
    assert neg_neg_goal_loss(scores, T([1.0, 1.1, 1.2]), 0.1, 0.25).item() == 0.0
