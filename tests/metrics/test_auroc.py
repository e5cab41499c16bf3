"""Exact AUROC against scikit-learn, and NaN where it is undefined."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from breakhis_lit.metrics import BinaryExactAUROC, MulticlassExactAUROC

C = 8


@pytest.mark.parametrize("seed", range(3))
def test_binary_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 120)
    p = np.round(np.clip(0.3 * y + rng.random(120) * 0.7, 0, 1), 2)  # rounding makes ties
    metric = BinaryExactAUROC()
    for part in np.array_split(np.arange(120), 3):
        metric.update(torch.from_numpy(p[part]).float(), torch.from_numpy(y[part]))
    assert metric.compute().item() == pytest.approx(roc_auc_score(y, p.astype(np.float32)), abs=1e-6)


def test_binary_single_class_is_nan() -> None:
    metric = BinaryExactAUROC()
    metric.update(torch.rand(10), torch.ones(10, dtype=torch.long))
    assert math.isnan(metric.compute().item())


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(C), rng.integers(0, C, 150)])
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(len(y), C))) + torch.eye(C)[y], dim=1).float()
    metric = MulticlassExactAUROC(C)
    metric.update(probs, torch.from_numpy(y))
    expected = roc_auc_score(y, probs.double().numpy(), multi_class="ovr", average="macro")
    assert metric.compute().item() == pytest.approx(expected, abs=1e-6)


def test_multiclass_absent_class_is_left_out() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice([0, 1, 2, 4, 5, 6, 7], size=100)  # class 3 absent
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(100, C))), dim=1).float()
    metric = MulticlassExactAUROC(C)
    metric.update(probs, torch.from_numpy(y))
    per_class = [roc_auc_score(y == c, probs[:, c].numpy()) for c in range(C) if c != 3]
    assert metric.compute().item() == pytest.approx(np.mean(per_class), abs=1e-6)
    single = MulticlassExactAUROC(C)
    single.update(probs[:5], torch.full((5,), 2))
    assert math.isnan(single.compute().item())
