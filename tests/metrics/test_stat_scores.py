"""Balanced accuracy and per-class/macro F1 built on stat-score states, against scikit-learn."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, MulticlassPrecision

from breakhis_lit.metrics import BinaryBalancedAccuracy, BinaryF1PerClass, BinaryMacroF1, MulticlassBalancedAccuracy

C = 8


def sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def run(metric, preds: np.ndarray, target: np.ndarray) -> np.ndarray:
    metric.update(torch.from_numpy(preds), torch.from_numpy(target))
    return metric.compute().numpy()


BINARY_CASES = {
    "random": (np.random.default_rng(0).integers(0, 2, 50), np.random.default_rng(1).integers(0, 2, 50)),
    "all benign, perfect": (np.zeros(9, np.int64), np.zeros(9, np.int64)),
    "all malignant, predicted benign": (np.ones(9, np.int64), np.zeros(9, np.int64)),
    "all benign, mixed predictions": (np.zeros(6, np.int64), np.array([0, 1, 0, 1, 1, 0])),
}


@pytest.mark.parametrize("case", BINARY_CASES)
def test_binary_against_sklearn(case: str) -> None:
    y_true, y_pred = (a.astype(np.int64) for a in BINARY_CASES[case])
    assert run(BinaryBalancedAccuracy(), y_pred, y_true) == pytest.approx(sk(balanced_accuracy_score, y_true, y_pred))
    per_class = sk(f1_score, y_true, y_pred, average=None, labels=[0, 1], zero_division=0)
    assert run(BinaryF1PerClass(), y_pred, y_true) == pytest.approx(per_class)
    assert run(BinaryMacroF1(), y_pred, y_true) == pytest.approx(sk(f1_score, y_true, y_pred, average="macro"))


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_balanced_accuracy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.choice([0, 1, 3, 4, 6], size=80)  # classes 2, 5, 7 absent from the targets
    y_pred = np.where(rng.random(80) < 0.6, y_true, rng.integers(0, C, 80))  # ... but some are predicted
    assert run(MulticlassBalancedAccuracy(C), y_pred, y_true) == pytest.approx(
        sk(balanced_accuracy_score, y_true, y_pred)
    )


def test_shares_compute_group_with_torchmetrics() -> None:
    preds, target = torch.rand(40), torch.randint(0, 2, (40,))
    binary = MetricCollection({"acc": BinaryAccuracy(), "ba": BinaryBalancedAccuracy(), "f1": BinaryMacroF1()})
    binary.update(preds, target)  # compute groups are detected from equal states after the first update
    assert len(binary.compute_groups) == 1
    probs, target = torch.softmax(torch.randn(40, C), 1), torch.randint(0, C, (40,))
    multi = MetricCollection({"p": MulticlassPrecision(C), "ba": MulticlassBalancedAccuracy(C)})
    multi.update(probs, target)
    assert len(multi.compute_groups) == 1
