"""Replicate metrics against the package's own ClassificationMetrics and patient_level_metrics."""

import numpy as np
import pytest
import torch

from breakhis_lit.errors import BreakHisError
from breakhis_lit.metrics import ClassificationMetrics, patient_level_metrics
from breakhis_lit.stats import Predictions, ReplicateMetrics, metric_names


def package_metrics(
    pred: Predictions, index: np.ndarray | None = None, copy: np.ndarray | None = None
) -> dict[str, float]:
    """The package's metrics of the images ``index`` (default: all); ``copy`` tells repeated patients apart."""
    index = np.arange(pred.n_images) if index is None else index
    probs = torch.tensor(pred.probs[index])
    target = torch.tensor(pred.labels[index])
    metrics = ClassificationMetrics(pred.class_names, threshold=pred.threshold)
    metrics.update(probs, target)
    out = {name: float(value) for name, value in metrics.compute().items()}
    copy = np.zeros(len(index), dtype=int) if copy is None else copy
    ids = [f"{p}#{k}" for p, k in zip(pred.patients[index], copy, strict=True)]
    patient = patient_level_metrics(ids, probs, target, threshold=pred.threshold)
    out["patient_accuracy"] = patient["patient_accuracy"]
    out["patient_recognition_rate"] = patient["patient_recognition_rate"]
    return out


def replicated_sample(pred: Predictions, unit: str, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image indices of a replicate, and for each the copy number of its unit.

    A group drawn twice brings its patients twice, as two patients; an image drawn twice stays one patient's.
    """
    if unit == "image":
        return np.repeat(np.arange(pred.n_images), weights), np.zeros(int(weights.sum()), dtype=int)
    index, copy = [], []
    for group, count in enumerate(weights):
        members = np.flatnonzero(pred.group_codes == group)
        for k in range(count):
            index.extend(members)
            copy.extend([k] * len(members))
    return np.array(index), np.array(copy)


def assert_close(ours: dict[str, float], reference: dict[str, float]) -> None:
    assert list(ours) == list(reference)
    for name, value in reference.items():
        # The package returns float32 scalars (its AUROC is a float32 trapezoid); ours are float64.
        if np.isnan(value):
            assert np.isnan(ours[name]), name
        else:
            assert ours[name] == pytest.approx(value, abs=2e-6), name


@pytest.mark.parametrize("num_classes", [2, 8])
@pytest.mark.parametrize("decimals", [None, 2])
@pytest.mark.parametrize("unit", ["group", "image"])
def test_full_sample_equals_package_metrics(make_predictions, num_classes, decimals, unit) -> None:
    pred = make_predictions(num_classes, n_images=500, n_patients=24, seed=num_classes, decimals=decimals)
    ours = ReplicateMetrics(pred, unit).estimate()
    assert_close(ours, package_metrics(pred))


def test_binary_threshold_and_ties(make_predictions) -> None:
    # Probabilities on a 0.1 grid with threshold 0.3 put many images exactly on the threshold (> vs >=).
    pred = make_predictions(2, n_images=300, n_patients=16, seed=3, decimals=1, threshold=0.3)
    assert np.any(pred.probs32[:, 1] == np.float32(0.3))
    assert_close(ReplicateMetrics(pred).estimate(), package_metrics(pred))


@pytest.mark.parametrize("num_classes", [2, 8])
@pytest.mark.parametrize("unit", ["group", "image"])
def test_replicates_equal_package_metrics_on_repeated_images(make_predictions, num_classes, unit) -> None:
    pred = make_predictions(num_classes, n_images=240, n_patients=16, seed=10 + num_classes, decimals=2)
    evaluate = ReplicateMetrics(pred, unit)
    rng = np.random.default_rng(1)
    weights = rng.multinomial(evaluate.n_units, np.full(evaluate.n_units, 1 / evaluate.n_units), size=4)
    values = evaluate(weights)
    for b in range(len(weights)):
        ours = {name: float(value[b]) for name, value in values.items()}
        assert_close(ours, package_metrics(pred, *replicated_sample(pred, unit, weights[b])))


def test_one_class_replicate_gives_nan_auroc() -> None:
    p1 = np.array([0.2, 0.6, 0.3, 0.8, 0.9, 0.4])
    labels = np.array([0, 0, 0, 1, 1, 1])
    pred = Predictions(np.stack([1 - p1, p1], 1), labels, list("aabbcc"), ["a1", "a2", "b1", "b2", "c1", "c2"])
    evaluate = ReplicateMetrics(pred, metrics=["accuracy", "auroc"])
    values = evaluate(np.array([[3, 0, 0], [0, 1, 2]]))  # group a three times: benign only; b once, c twice
    assert list(values) == ["accuracy", "auroc"]
    assert np.isnan(values["auroc"][0])
    assert values["accuracy"][0] == pytest.approx(0.5)
    # b once: 0.3 (benign), 0.8 (malignant); c twice: 0.9, 0.4 (malignant); every positive above the negative
    assert values["auroc"][1] == pytest.approx(1.0)


def test_metric_names_and_refusals(make_predictions) -> None:
    pred = make_predictions(2, n_images=50, n_patients=6)
    assert metric_names(pred.class_names)[5:7] == ["f1_benign", "f1_malignant"]
    with pytest.raises(BreakHisError, match="metrics: unknown 'acc'"):
        ReplicateMetrics(pred, metrics=["acc"])
    single = Predictions(pred.probs, pred.labels, ["g"] * pred.n_images, pred.patients)
    with pytest.raises(BreakHisError, match="at least 2 groups"):
        ReplicateMetrics(single)
