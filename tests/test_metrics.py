import math

import numpy as np
import pytest

from furl_wrappers.metrics import rankdata, roc_auc, spearman


def test_rankdata_ties() -> None:
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_values() -> None:
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_roc_auc_values() -> None:
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1.0], [1.0]) == 0.5
    rng = np.random.default_rng(0)
    assert abs(roc_auc(rng.normal(size=2000), rng.normal(size=2000)) - 0.5) < 0.03
    with pytest.raises(ValueError):
        roc_auc([], [1.0])
