"""DeLong's test against a brute-force computation from the Mann-Whitney structural components."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats import Predictions, delong_covariance, delong_test


def brute_force(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) directly: psi over all positive-negative pairs, placement values, their covariances."""
    x, y = scores[:, positive], scores[:, ~positive]
    psi = (x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :])  # [K, m, n]
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    m, n = x.shape[1], y.shape[1]
    k = len(scores)
    s10 = np.array(
        [[np.sum((v10[r] - v10[r].mean()) * (v10[s] - v10[s].mean())) / (m - 1) for s in range(k)] for r in range(k)]
    )
    s01 = np.array(
        [[np.sum((v01[r] - v01[r].mean()) * (v01[s] - v01[s].mean())) / (n - 1) for s in range(k)] for r in range(k)]
    )
    return psi.mean(axis=(1, 2)), s10 / m + s01 / n


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(decimals: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_images = 150
    positive = rng.random(n_images) < 0.4
    scores = rng.normal(size=(3, n_images)) + positive * np.array([[1.0], [0.5], [0.0]])
    if decimals is not None:
        scores = np.round(scores, decimals)  # ties within and across classes
    auroc, covariance = delong_covariance(scores, positive)
    reference_auroc, reference_covariance = brute_force(scores, positive)
    np.testing.assert_allclose(auroc, reference_auroc, atol=1e-12)
    np.testing.assert_allclose(auroc, [roc_auc_score(positive, s) for s in scores], atol=1e-12)
    np.testing.assert_allclose(covariance, reference_covariance, atol=1e-6, rtol=0)
    assert np.abs(covariance).max() > 1e-4  # the comparison is not between zeros


def binary_run(p1: np.ndarray, labels: np.ndarray, name: str) -> Predictions:
    patients = [f"p{i // 5}" for i in range(len(labels))]
    return Predictions(np.stack([1 - p1, p1], axis=1), labels, patients, patients, name=name)


def test_delong_test_z_and_p_value() -> None:
    rng = np.random.default_rng(4)
    labels = np.repeat(rng.integers(0, 2, 40), 5)
    p_a = np.clip(0.5 + 0.3 * (2 * labels - 1) + rng.normal(0, 0.25, len(labels)), 0, 1)
    p_b = np.clip(0.5 + 0.1 * (2 * labels - 1) + rng.normal(0, 0.25, len(labels)), 0, 1)
    result = delong_test(binary_run(p_a, labels, "a"), binary_run(p_b, labels, "b"))
    scores = np.stack([p_a, p_b]).astype(np.float32).astype(np.float64)
    auroc, covariance = brute_force(scores, labels == 1)
    se = np.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    z = (auroc[0] - auroc[1]) / se
    assert result.difference == pytest.approx(auroc[0] - auroc[1], abs=1e-12)
    assert result.standard_error == pytest.approx(se, abs=1e-9)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(z)), abs=1e-9)
    assert result.low == pytest.approx(result.difference - 1.959964 * se, abs=1e-6)


def test_model_against_itself() -> None:
    labels = np.repeat([0, 1, 0, 1, 1, 0], 5)
    run = binary_run(np.linspace(0.05, 0.95, 30), labels, "a")
    result = delong_test(run, run)
    assert (result.difference, result.standard_error, result.p_value, result.z) == (0.0, 0.0, 1.0, 0.0)


def test_refusals() -> None:
    labels = np.repeat([0, 1, 2, 0, 1, 2], 5)
    probs = np.full((30, 3), 1 / 3)
    patients = [f"p{i // 5}" for i in range(30)]
    multiclass = Predictions(probs, labels, patients, patients)
    with pytest.raises(BreakHisError, match="binary tasks"):
        delong_test(multiclass, multiclass)
