"""Patient and image bootstrap against scipy.stats.bootstrap on group (or image) indices, and their coverage."""

import json

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import expit
from scipy.stats import bootstrap as scipy_bootstrap
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats import (
    Predictions,
    ReplicateMetrics,
    bootstrap,
    image_bootstrap,
    patient_bootstrap,
    resample_weights,
)
from breakhis_lit.stats.bootstrap import jackknife_weights


def group_statistics(pred: Predictions):
    """Statistics of a resample of group indices, written directly (concatenate the drawn groups' images)."""
    members = [np.flatnonzero(pred.group_codes == g) for g in range(pred.n_groups)]
    correct = pred.preds == pred.labels
    labels, decisions = [], []
    for p in range(pred.n_patients):  # patient decisions from the mean probability, by a plain loop
        rows = pred.patient_codes == p
        labels.append(pred.labels[rows][0])
        decisions.append(int(pred.probs[rows, 1].mean() >= pred.threshold))
    patient_right = (np.array(labels) == np.array(decisions)).astype(float)
    patient_group = np.array([pred.group_codes[pred.patient_codes == p][0] for p in range(pred.n_patients)])

    def rows(indices: np.ndarray) -> np.ndarray:
        return np.concatenate([members[g] for g in indices])

    def each(fn):
        def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
            indices = np.asarray(indices).astype(int)
            flat = indices.reshape(-1, indices.shape[-1])
            return np.array([fn(row) for row in flat]).reshape(indices.shape[:-1])

        return statistic

    return {
        "accuracy": each(lambda idx: correct[rows(idx)].mean()),
        "auroc": each(lambda idx: roc_auc_score(pred.labels[rows(idx)], pred.probs32[rows(idx), 1])),
        "patient_accuracy": each(lambda idx: np.concatenate([patient_right[patient_group == g] for g in idx]).mean()),
    }


def mc_tolerance(replicates: np.ndarray, level: float, n_resamples: int, resolution: float = 0.0) -> float:
    """Four standard errors of the difference of two independent bootstrap estimates of a tail quantile.

    The standard error of a quantile is sqrt(alpha (1 - alpha) / B) / density, the density taken as normal with the
    replicates' spread; ``resolution`` adds the step of a lumpy distribution (a quantile can jump one step).
    """
    alpha = (1 - level) / 2
    se_quantile = np.std(replicates) * np.sqrt(alpha * (1 - alpha) / n_resamples) / norm.pdf(norm.ppf(alpha))
    return 4 * np.sqrt(2) * se_quantile + resolution


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_patient_bootstrap_matches_scipy_on_group_indices(make_predictions, method: str) -> None:
    pred = make_predictions(2, n_images=400, n_patients=30, seed=5)
    n_resamples = 2000
    ours = bootstrap(pred, n_resamples=n_resamples, seed=1, method=method)
    spread = ReplicateMetrics(pred)(resample_weights(pred.n_groups, n_resamples, seed=2))
    for name, statistic in group_statistics(pred).items():
        reference = scipy_bootstrap(
            (np.arange(pred.n_groups),),
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            method="BCa" if method == "bca" else "percentile",
            rng=np.random.default_rng(99),  # independent draws: agreement up to Monte-Carlo error
        )
        assert ours[name].estimate == pytest.approx(float(statistic(np.arange(pred.n_groups))), abs=1e-6)
        resolution = 1 / pred.n_patients if name == "patient_accuracy" else 0.0
        tolerance = mc_tolerance(spread[name], 0.95, n_resamples, resolution)
        assert ours[name].low == pytest.approx(reference.confidence_interval.low, abs=tolerance), name
        assert ours[name].high == pytest.approx(reference.confidence_interval.high, abs=tolerance), name


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_same_draws_as_scipy_give_the_same_interval(make_predictions, method: str) -> None:
    # scipy.stats.bootstrap (batch=None) draws rng.integers(0, n, (n_resamples, n)) at once, as resample_weights.
    pred = make_predictions(2, n_images=300, n_patients=24, seed=6)
    statistic = group_statistics(pred)["accuracy"]
    reference = scipy_bootstrap(
        (np.arange(pred.n_groups),),
        statistic,
        n_resamples=500,
        vectorized=True,
        method="BCa" if method == "bca" else "percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    ours = bootstrap(pred, n_resamples=500, seed=np.random.default_rng(7), method=method, metrics=["accuracy"])
    assert (ours["accuracy"].low, ours["accuracy"].high) == pytest.approx((reference.low, reference.high), abs=1e-12)


def test_image_bootstrap_matches_scipy_on_image_indices(make_predictions) -> None:
    pred = make_predictions(2, n_images=300, n_patients=20, seed=8)
    correct = (pred.preds == pred.labels).astype(float)
    reference = scipy_bootstrap(
        (correct,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(3)
    )
    ours = bootstrap(pred, "image", n_resamples=2000, seed=4, metrics=["accuracy"])["accuracy"]
    tolerance = mc_tolerance(reference.bootstrap_distribution, 0.95, 2000)
    assert ours.low == pytest.approx(reference.confidence_interval.low, abs=tolerance)
    assert ours.high == pytest.approx(reference.confidence_interval.high, abs=tolerance)
    assert ours.unit == "image"
    assert ours.n_groups == pred.n_groups


def test_array_interface_and_json(make_predictions) -> None:
    pred = make_predictions(8, n_images=300, n_patients=16, seed=9)
    kwargs = {"class_names": pred.class_names, "n_resamples": 200, "seed": 0}
    args = (pred.probs, pred.labels, pred.groups, pred.patients)
    for fn, unit in ((patient_bootstrap, "group"), (image_bootstrap, "image")):
        result = fn(*args, **kwargs)
        assert list(result)[:2] == ["accuracy", "balanced_accuracy"]
        assert "f1_PC" in result
        assert "patient_recognition_rate" in result
        for interval in result.values():
            assert interval.unit == unit
            assert interval.low <= interval.estimate <= interval.high
        json.dumps({name: interval.to_dict() for name, interval in result.items()}, allow_nan=False)


def test_undefined_auroc_is_none(make_predictions) -> None:
    pred = make_predictions(2, n_images=80, n_patients=8, seed=2)
    benign = pred.labels == 0
    only_benign = Predictions(pred.probs[benign], pred.labels[benign], pred.groups[benign], pred.patients[benign])
    result = bootstrap(only_benign, n_resamples=100, method="bca")
    assert result["auroc"].to_dict()["estimate"] is None
    assert result["auroc"].low is None
    assert result["accuracy"].estimate is not None


def test_refusals(make_predictions) -> None:
    pred = make_predictions(2, n_images=80, n_patients=8)
    with pytest.raises(BreakHisError, match="method: unknown"):
        bootstrap(pred, method="basic")
    with pytest.raises(BreakHisError, match="unit must be"):
        bootstrap(pred, "patient")
    with pytest.raises(BreakHisError, match="lies in several groups"):
        patient_bootstrap(pred.probs, pred.labels, np.arange(pred.n_images), pred.patients)


def simulate_test_sets(n_sets: int, seed: int) -> tuple[list[tuple[np.ndarray, ...]], float]:
    """Clustered test sets: 25 patients with 10-40 images each, each patient with its own probability of success.

    Patient i's images are classified correctly with probability expit(MU + SIGMA * u_i), u_i ~ N(0, 1); the
    population accuracy (images of a random patient, whose size is independent of its difficulty) is E[p_i].
    """
    mu, sigma, n_patients = 1.5, 1.2, 25
    truth = quad(lambda z: expit(mu + sigma * z) * norm.pdf(z), -np.inf, np.inf)[0]
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n_sets):
        sizes = rng.integers(10, 41, n_patients)
        patient = np.repeat(np.arange(n_patients), sizes)
        p_correct = expit(mu + sigma * rng.normal(size=n_patients))[patient]
        labels = patient % 2
        correct = rng.random(len(patient)) < p_correct
        p1 = np.where(correct == (labels == 1), 0.8, 0.2)
        sets.append((np.stack([1 - p1, p1], axis=1), labels, patient))
    return sets, truth


def test_coverage_of_patient_vs_image_bootstrap() -> None:
    # 1000 test sets for the patient bootstrap (Monte-Carlo standard error of a coverage near 94%: 0.75 points),
    # the first 400 for the image bootstrap, whose under-coverage is gross.
    sets, truth = simulate_test_sets(1000, seed=2024)
    covered = dict.fromkeys(["percentile", "expanded", "bca", "image"], 0)
    for k, (probs, labels, patient) in enumerate(sets):
        pred = Predictions(probs, labels, patient, patient)
        for method in ("percentile", "expanded", "bca"):
            interval = bootstrap(pred, "group", seed=k, method=method, metrics=["accuracy"])["accuracy"]
            covered[method] += interval.low <= truth <= interval.high
        if k < 400:
            interval = bootstrap(pred, "image", seed=k, metrics=["accuracy"])["accuracy"]
            covered["image"] += interval.low <= truth <= interval.high
    coverage = {key: value / (400 if key == "image" else len(sets)) for key, value in covered.items()}
    print(
        f"\n95% intervals of the population accuracy {truth:.4f} (25 patients, 10-40 images each, 2000 resamples): "
        f"patient bootstrap percentile {coverage['percentile']:.1%}, expanded {coverage['expanded']:.1%}, "
        f"BCa {coverage['bca']:.1%} (1000 test sets); image bootstrap {coverage['image']:.1%} (400 test sets)"
    )
    assert 0.92 <= coverage["percentile"] <= 0.97
    assert 0.93 <= coverage["expanded"] <= 0.97
    assert 0.90 <= coverage["bca"] <= 0.97
    assert coverage["image"] < 0.80


def test_resample_and_jackknife_weights() -> None:
    weights = resample_weights(25, 4000, seed=0)
    assert weights.shape == (4000, 25)
    assert np.all(weights.sum(axis=1) == 25)
    # Multinomial(25, 1/25) counts: mean 1, variance 24/25.
    assert weights.mean() == pytest.approx(1.0)
    assert weights.var() == pytest.approx(24 / 25, rel=0.03)
    np.testing.assert_array_equal(jackknife_weights(6), 1 - np.eye(6, dtype=int))
    np.testing.assert_array_equal(jackknife_weights(6, 2, 5), (1 - np.eye(6, dtype=int))[2:5])
