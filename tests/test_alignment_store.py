from __future__ import annotations

import numpy as np
import pytest

from furl_wrappers.alignment_store import AlignmentStore, label_episode


def _emb(n: int, start: float = 0.0, dim: int = 2) -> np.ndarray:
    # embedding of frame t encodes t, so tests can read which frame came out
    return np.stack([np.full(dim, start + t, np.float32) for t in range(n)])


def test_label_successful_episode() -> None:
    # success first at 3, run 3..4, breaks at 5, again at 6: positives are 0..4
    assert label_episode(np.array([0, 0, 0, 1, 1, 0, 1], bool)) == (True, 5)
    assert label_episode(np.array([1], bool)) == (True, 1)
    assert label_episode(np.array([0, 1, 1, 1], bool)) == (True, 4)


def test_label_failed_episode() -> None:
    assert label_episode(np.zeros(500, bool)) == (False, 0)


def test_store_labels_and_k_rule() -> None:
    store = AlignmentStore(dim=2, capacity=100, lag=3, seed=0)
    success = np.zeros(12, bool)
    success[8:10] = True
    assert store.add_episode(_emb(12), success) == "positive"
    assert store.positive_count == 10 and store.num_positive == 10 and store.num_negative == 0
    assert not store.can_sample_triples()  # no negative yet
    assert store.add_episode(_emb(5, 100.0), np.zeros(5, bool)) == "negative"
    pos, neg, lag = store.sample_triples(64)
    # later frames have index >= k = 3; their lag partner is exactly 3 frames earlier, same episode
    assert pos[:, 0].min() >= 3 and pos[:, 0].max() <= 9
    np.testing.assert_array_equal(lag[:, 0], pos[:, 0] - 3)
    assert (neg[:, 0] >= 100).all()


def test_lag_never_pairs_across_episodes_or_overwritten_slots() -> None:
    store = AlignmentStore(dim=2, capacity=8, lag=2, seed=1)
    store.add_episode(_emb(1, 1000.0), np.zeros(1, bool))  # a negative
    store.add_episode(_emb(4, 0.0), np.array([0, 0, 0, 1], bool))  # frames 0..3 -> slots 0..3
    store.add_episode(_emb(6, 10.0), np.array([0, 0, 0, 0, 0, 1], bool))  # 6 frames: slots 4..7, 0, 1
    # the first episode's slots 0,1 are overwritten; its frame 3 (slot 3) would pair with slot 1, now another
    # episode's frame: it must not be used. Valid later frames: episode 2, indices 2..5.
    for _ in range(20):
        pos, _, lag = store.sample_triples(32)
        assert (pos[:, 0] >= 12).all() and (pos[:, 0] <= 15).all()
        np.testing.assert_array_equal(lag[:, 0], pos[:, 0] - 2)


def test_ring_is_bounded_and_counts_keep_growing() -> None:
    store = AlignmentStore(dim=2, capacity=10, lag=1)
    for i in range(5):
        store.add_episode(_emb(4, 10.0 * i), np.array([0, 0, 0, 1], bool))
        store.add_episode(_emb(4, -10.0 * i), np.zeros(4, bool))
    assert store.num_positive == 10 and store.num_negative == 10
    assert store.positive_count == 20 and store.successful_episodes == 5 and store.failed_episodes == 5


def test_negatives_with_goal_distances() -> None:
    store = AlignmentStore(dim=2, capacity=10)
    store.add_episode(_emb(3), np.zeros(3, bool), goal_distances=np.array([3.0, 2.0, 1.0]))
    emb, dist = store.sample_negatives(16)
    np.testing.assert_array_equal(dist, 3.0 - emb[:, 0])
    nodist = AlignmentStore(dim=2, capacity=10)
    nodist.add_episode(_emb(3), np.zeros(3, bool))
    assert nodist.sample_negatives(4) is None


def test_state_dict_round_trip() -> None:
    store = AlignmentStore(dim=2, capacity=10, lag=1, seed=3)
    store.add_episode(_emb(4), np.array([0, 0, 1, 1], bool))
    store.add_episode(_emb(3, 50.0), np.zeros(3, bool))
    copy = AlignmentStore(dim=2, capacity=10, lag=1)
    copy.load_state_dict(store.state_dict())
    a, b = store.sample_triples(8), copy.sample_triples(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="mismatch"):
        AlignmentStore(dim=3, capacity=10, lag=1).load_state_dict(store.state_dict())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="capacity"):
        AlignmentStore(dim=2, capacity=0)
    with pytest.raises(ValueError, match="lag"):
        AlignmentStore(dim=2, lag=0)
