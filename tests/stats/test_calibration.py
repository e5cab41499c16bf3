"""Calibration and threshold: ECE against numpy, Brier against scikit-learn, threshold and temperature by search."""

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss

from breakhis_lit.errors import BreakHisError
from breakhis_lit.metrics import ClassificationMetrics
from breakhis_lit.stats import (
    brier_score,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)


def random_probs(n: int, c: int, seed: int, saturate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    logits = rng.normal(0, 2, (n, c))
    logits[np.arange(n), labels] += 1.5
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=1).numpy().astype(np.float64)
    if saturate:  # confidences of exactly 1 (and 0), as a float32 softmax gives for confident models
        probs[:20] = np.eye(c)[labels[:20]]
        probs[20:30] = np.eye(c)[(labels[20:30] + 1) % c]
    return probs, labels


def numpy_ece(confidence: np.ndarray, hit: np.ndarray, n_bins: int = 15, closed_last: bool = False) -> float:
    """Equal-width l1 ECE: bins [k/n, (k+1)/n); a confidence of 1 in a bin of its own unless closed_last."""
    index = np.floor(confidence * n_bins).astype(int)
    if closed_last:
        index = np.minimum(index, n_bins - 1)
    total = 0.0
    for k in np.unique(index):
        rows = index == k
        total += rows.sum() / len(confidence) * abs(hit[rows].mean() - confidence[rows].mean())
    return total


@pytest.mark.parametrize("num_classes", [2, 8])
@pytest.mark.parametrize("saturate", [False, True])
def test_ece_matches_numpy(num_classes: int, saturate: bool) -> None:
    probs, labels = random_probs(3000, num_classes, seed=num_classes, saturate=saturate)
    p32 = probs.astype(np.float32).astype(np.float64)
    if num_classes == 2:
        confidence, hit = p32[:, 1], (labels == 1).astype(float)
    else:
        confidence, hit = p32.max(axis=1), (p32.argmax(axis=1) == labels).astype(float)
    assert expected_calibration_error(probs, labels) == pytest.approx(numpy_ece(confidence, hit), abs=1e-6)
    bins = reliability_bins(probs, labels)
    # The diagram's bins close the last one; they reproduce the ECE unless some confidence is exactly 1.
    from_bins = sum(
        n / len(labels) * abs(a - c) for n, a, c in zip(bins.count, bins.accuracy, bins.confidence, strict=True) if n
    )
    assert from_bins == pytest.approx(numpy_ece(confidence, hit, closed_last=True), abs=1e-9)
    if not saturate:
        assert from_bins == pytest.approx(bins.ece, abs=1e-6)
    assert sum(bins.count) == len(labels)
    assert bins.kind == ("positive" if num_classes == 2 else "top")


def test_reliability_bins_by_hand() -> None:
    p1 = np.array([0.05, 0.1, 0.55, 0.6, 1.0])
    labels = np.array([0, 1, 1, 0, 1])
    bins = reliability_bins(np.stack([1 - p1, p1], axis=1), labels, n_bins=2)
    assert bins.edges == [0.0, 0.5, 1.0]
    assert bins.count == [2, 3]
    assert bins.confidence == pytest.approx([0.075, 2.15 / 3])
    assert bins.accuracy == pytest.approx([0.5, 2 / 3])
    empty = reliability_bins(np.stack([1 - p1, p1], axis=1), labels, n_bins=20)
    assert empty.confidence[5] is None
    assert empty.count[5] == 0


@pytest.mark.parametrize("num_classes", [2, 8])
def test_brier_matches_sklearn(num_classes: int) -> None:
    probs, labels = random_probs(500, num_classes, seed=3)
    probs /= probs.sum(axis=1, keepdims=True)  # exactly 1 in float64, which scikit-learn checks
    if num_classes == 2:
        reference = brier_score_loss(labels, probs[:, 1])
    else:
        reference = brier_score_loss(labels, probs, labels=list(range(num_classes)))
    assert brier_score(probs, labels) == pytest.approx(reference, abs=1e-9)


def package_balanced_accuracy(probs: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    metrics = ClassificationMetrics(["benign", "malignant"], threshold=threshold)
    metrics.update(torch.tensor(probs), torch.tensor(labels))
    return float(metrics.compute()["balanced_accuracy"])


@pytest.mark.parametrize("decimals", [None, 2])
def test_threshold_is_optimal_for_the_package_rule(decimals: int | None) -> None:
    probs, labels = random_probs(400, 2, seed=5)
    if decimals is not None:
        probs[:, 1] = np.round(probs[:, 1], decimals)
        probs[:, 0] = 1 - probs[:, 1]
    choice = choose_threshold(probs, labels)
    # Every distinct decision rule: thresholds at every score, halfway between scores, and 0.
    scores = np.unique(probs[:, 1].astype(np.float32).astype(np.float64))
    grid = np.unique(np.concatenate([[0.0], scores, (scores[1:] + scores[:-1]) / 2]))
    labels_pos, labels_neg = labels == 1, labels == 0
    best = max(
        ((probs[labels_pos, 1].astype(np.float32) > t).mean() + (probs[labels_neg, 1].astype(np.float32) <= t).mean())
        / 2
        for t in grid
    )
    assert choice.balanced_accuracy == pytest.approx(best, abs=1e-12)
    assert package_balanced_accuracy(probs, labels, choice.threshold) == pytest.approx(best, abs=1e-6)


def test_threshold_tie_rule_by_hand() -> None:
    def run(p1: list[float], labels: list[int]) -> float:
        p = np.array(p1)
        return choose_threshold(np.stack([1 - p, p], axis=1), np.array(labels)).threshold

    assert run([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == pytest.approx(0.5)
    # Balanced accuracy 0.75 below 0.3 (midpoint 0.2) and in [0.35, 0.9) (midpoint 0.625): the one nearer 0.5.
    assert run([0.1, 0.3, 0.35, 0.9], [0, 1, 0, 1]) == pytest.approx(0.625)
    # 0.75 in [0.2, 0.4) and in [0.6, 0.8): midpoints 0.3 and 0.7 are equally near 0.5; the lower wins.
    assert run([0.2, 0.4, 0.6, 0.8], [0, 1, 0, 1]) == pytest.approx(0.3)


def test_temperature_recovers_the_generating_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20_000, 4))
    true_probs = torch.softmax(torch.tensor(logits) / 2.0, dim=1).numpy()
    labels = np.array([rng.choice(4, p=p) for p in true_probs])
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.0, rel=0.05)

    def nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(torch.tensor(logits) / t, torch.tensor(labels)))

    assert nll(temperature) <= min(nll(temperature * 1.001), nll(temperature / 1.001))
    log_probs = torch.log_softmax(torch.tensor(logits), dim=1).numpy()
    assert fit_temperature(log_probs, labels) == pytest.approx(temperature, rel=1e-5)


def test_refusals() -> None:
    probs, labels = random_probs(20, 3, seed=1)
    with pytest.raises(BreakHisError, match="binary tasks only"):
        choose_threshold(probs, labels)
    with pytest.raises(BreakHisError, match="one class"):
        choose_threshold(np.full((4, 2), 0.5), np.zeros(4, dtype=int))
    with pytest.raises(BreakHisError, match="class probabilities"):
        expected_calibration_error(probs * 3, labels)
    with pytest.raises(BreakHisError, match="labels"):
        brier_score(probs, labels + 5)
    with pytest.raises(BreakHisError, match="finite"):
        fit_temperature(np.where(np.eye(3)[labels] > 0, 0.0, -np.inf), labels)
    with pytest.raises(BreakHisError, match="n_bins"):
        reliability_bins(probs, labels, n_bins=0)
