"""Weighted AUROC against scikit-learn's roc_auc_score with sample weights, on both evaluation paths."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from breakhis_lit.stats.weighted_auroc import WeightedAUROC


@pytest.mark.parametrize(("n_images", "n_units"), [(400, 10), (300, 300)])
@pytest.mark.parametrize("decimals", [None, 1])
def test_matches_sklearn_sample_weight(n_images: int, n_units: int, decimals: int | None) -> None:
    rng = np.random.default_rng(n_units)
    scores = rng.random(n_images)
    if decimals is not None:
        scores = np.round(scores, decimals)  # heavy ties
    positive = rng.random(n_images) < 0.4
    units = rng.integers(0, n_units, n_images) if n_units < n_images else np.arange(n_images)
    auroc = WeightedAUROC(scores, positive, units, n_units)
    assert auroc._pairwise == (n_units < n_images)  # both paths are covered
    weights = rng.multinomial(n_units, np.full(n_units, 1 / n_units), size=6)
    ours = auroc(weights)
    for b in range(len(weights)):
        reference = roc_auc_score(positive, scores, sample_weight=weights[b][units])
        assert ours[b] == pytest.approx(reference, abs=1e-12)


def test_undefined_without_both_classes() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    positive = np.array([False, False, True, True])
    units = np.array([0, 0, 1, 1])
    auroc = WeightedAUROC(scores, positive, units, 2)
    values = auroc(np.array([[2, 0], [0, 2], [1, 1]]))
    assert np.isnan(values[0])
    assert np.isnan(values[1])
    assert values[2] == pytest.approx(0.75)  # pairs: 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4
