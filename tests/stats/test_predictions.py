"""Predictions: input checks, patient decisions against patient_level_metrics, alignment of two runs."""

import numpy as np
import pytest
import torch

from breakhis_lit.errors import BreakHisError
from breakhis_lit.metrics import patient_level_metrics
from breakhis_lit.stats import Predictions
from breakhis_lit.stats.predictions import aligned, check_patients_per_class

P1 = np.array([0.2, 0.7, 0.4, 0.9])
PROBS = np.stack([1 - P1, P1], axis=1)


def make(**changes) -> Predictions:
    args = {"probs": PROBS, "labels": np.array([0, 0, 1, 1]), "groups": ["a", "a", "b", "b"]}
    args |= {"patients": ["p", "p", "q", "q"], "images": ["i0", "i1", "i2", "i3"]}
    args |= changes
    return Predictions(**args)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"probs": PROBS[:, :1]}, "float array"),
        ({"probs": PROBS * 2}, "class probabilities"),
        ({"labels": np.array([0, 0, 1, 2])}, r"class indices in \[0, 1\]"),
        ({"labels": np.array([0.0, 0, 1, 1])}, "integer class indices"),
        ({"groups": ["a", "a", "b"]}, "one entry per image"),
        ({"patients": ["p", "", "q", "q"]}, "patients of image 1 is empty"),
        ({"labels": np.array([0, 1, 1, 1])}, "patient 'p' has images with different labels"),
        ({"groups": ["a", "b", "b", "b"]}, "patient 'p' lies in several groups"),
        ({"class_names": ("benign",)}, "class_names must be 2 unique names"),
        ({"threshold": 1.5}, "threshold must be in"),
        ({"images": ["i0", "i0", "i2", "i3"]}, "unique image ids"),
    ],
)
def test_refusals(changes: dict, message: str) -> None:
    with pytest.raises(BreakHisError, match=message):
        make(**changes)


def test_torch_inputs_and_integer_ids() -> None:
    pred = make(probs=torch.tensor(PROBS, dtype=torch.float32), labels=torch.tensor([0, 0, 1, 1]), groups=[7, 7, 8, 8])
    assert pred.group_names == [7, 8]
    assert pred.probs.dtype == np.float64
    assert pred.class_names == ("0", "1")
    assert pred.preds.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("num_classes", [2, 8])
def test_patient_decisions_match_patient_level_metrics(make_predictions, num_classes: int) -> None:
    pred = make_predictions(num_classes, n_images=300, n_patients=20, seed=1, decimals=2)
    labels, decisions = pred.patient_decisions()
    reference = patient_level_metrics(list(pred.patients), torch.tensor(pred.probs), torch.tensor(pred.labels))
    assert np.mean(labels == decisions) == pytest.approx(reference["patient_accuracy"])
    scores = np.bincount(pred.patient_codes, weights=pred.recognition_correct()) / np.bincount(pred.patient_codes)
    assert scores.mean() == pytest.approx(reference["patient_recognition_rate"])


def test_aligned_reorders_by_image_id_and_refuses_other_sets() -> None:
    a = make()
    order = np.array([2, 0, 3, 1])
    b = a.subset(order)
    back = aligned(a, b)
    assert back.images == a.images
    np.testing.assert_array_equal(back.probs, a.probs)
    with pytest.raises(BreakHisError, match="different test images"):
        aligned(a, make(images=["i0", "i1", "i2", "x"]))
    with pytest.raises(BreakHisError, match="different classes"):
        aligned(a, make(class_names=("B", "M")))
    with pytest.raises(BreakHisError, match="different patients"):
        aligned(a, make(patients=["p", "p", "r", "r"]))
    with pytest.raises(BreakHisError, match="different groups"):
        aligned(make(images=None), make(images=None, groups=["a", "a", "c", "c"]))
    with pytest.raises(BreakHisError, match="4 and 2 test images"):
        aligned(make(images=None), make(images=None).subset(np.array([0, 1])))


def test_patients_per_class() -> None:
    pred = make()
    assert pred.patients_per_class().tolist() == [1, 1]
    with pytest.raises(BreakHisError, match="class '0' has 1 test patient"):
        check_patients_per_class(pred)
