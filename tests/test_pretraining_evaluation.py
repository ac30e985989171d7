"""Zero-shot metrics of an offline VLM: retrieval rank, matched AUC, success AUC and Spearman by hand."""

from __future__ import annotations

import numpy as np
import pytest

from furl_wrappers.pretraining.evaluation import zero_shot_metrics


def _unit(angles: list[float]) -> np.ndarray:
    """Frames on the circle spanned by the first two axes: cos with e0 is cos(angle)."""
    a = np.asarray(angles)
    return np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], axis=1)


def test_metrics_by_hand() -> None:
    text = np.eye(3)[:2] * 5.0  # any scale: rows are normalised
    # task a: an episode that moves towards e0 and succeeds at step 2; a failed one sitting at e1
    a_ok = {"embeddings": _unit([1.2, 0.8, 0.0, 0.1]), "success": np.array([0, 0, 1, 0], bool)}
    a_fail = {"embeddings": _unit([np.pi / 2, 1.0, np.pi / 2]), "success": np.zeros(3, bool)}
    # task b: finished frames closer to e0 than to e1 → its own instruction ranks second
    b_ok = {"embeddings": _unit([1.5, 0.3, 0.2]), "success": np.array([0, 1, 1], bool)}
    m = zero_shot_metrics({"a": [a_ok, a_fail], "b": [b_ok]}, text)
    ta, tb = m["tasks"]["a"], m["tasks"]["b"]
    # a: frames from the first success on are angles 0.0 and 0.1 → mean cos with e0 / e1
    assert ta["scores"] == pytest.approx([round((1 + np.cos(0.1)) / 2, 4), round(np.sin(0.1) / 2, 4)])
    assert ta["rank"] == 1 and tb["rank"] == 2 and m["top1"] == 0.5
    # positives of a: start through the first success run (3 frames); negatives: the failed episode's 3 frames
    pos, neg = np.cos([1.2, 0.8, 0.0]), np.cos([np.pi / 2, 1.0, np.pi / 2])
    expected_auc = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert ta["success_auc"] == pytest.approx(expected_auc)
    assert ta["spearman"] == pytest.approx(1.0)  # cos rises monotonically to the first success
    assert np.isnan(tb["success_auc"]) and np.isnan(tb["spearman"])  # no failed episode; first success at step 1
    # matched AUC over finished frames: a's (0.0, 0.1) and b's (0.3, 0.2), own vs other instruction
    matched = [np.cos(0.0), np.cos(0.1), np.sin(0.3), np.sin(0.2)]
    mismatched = [np.sin(0.0), np.sin(0.1), np.cos(0.3), np.cos(0.2)]
    want = np.mean([(p > q) + 0.5 * (p == q) for p in matched for q in mismatched])
    assert m["matched_auc"] == pytest.approx(want)
    assert m["median_success_auc"] == pytest.approx(expected_auc) and m["median_spearman"] == pytest.approx(1.0)


def test_bad_text_rows() -> None:
    ep = {"embeddings": np.eye(2), "success": np.array([0, 1], bool)}
    with pytest.raises(ValueError, match="one row per task"):
        zero_shot_metrics({"a": [ep], "b": [ep]}, np.eye(2)[:1])
