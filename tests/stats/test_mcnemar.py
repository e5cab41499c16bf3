"""Exact McNemar on patient and image decisions against a hand table and scipy's binomial test."""

import numpy as np
import pytest
from scipy.stats import binomtest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats import Predictions, mcnemar_test

# Six patients (two images each), labels 0,0,0,1,1,1. P(class 1) of model a and model b per image.
LABELS = np.repeat([0, 0, 0, 1, 1, 1], 2)
PATIENTS = np.repeat(["p0", "p1", "p2", "p3", "p4", "p5"], 2)
A = np.array([0.1, 0.2, 0.7, 0.8, 0.3, 0.6, 0.9, 0.8, 0.4, 0.7, 0.2, 0.3])
B = np.array([0.6, 0.7, 0.2, 0.1, 0.3, 0.4, 0.2, 0.3, 0.9, 0.9, 0.8, 0.9])


def predictions(p1: np.ndarray, name: str) -> Predictions:
    return Predictions(np.stack([1 - p1, p1], axis=1), LABELS, PATIENTS, PATIENTS, name=name)


def test_patient_table_by_hand() -> None:
    # Patient means, a: .15 .75 .45 .85 .55 .25 -> right, wrong, right, right, right, wrong
    #                b: .65 .15 .35 .25 .90 .85 -> wrong, right, right, wrong, right, right
    result = mcnemar_test(predictions(A, "a"), predictions(B, "b"), unit="patient")
    assert (result.both_correct, result.only_a, result.only_b, result.both_wrong) == (2, 2, 2, 0)
    assert result.p_value == pytest.approx(binomtest(2, 4, 0.5).pvalue)


def test_image_table_against_binomial_test() -> None:
    a, b = predictions(A, "a"), predictions(B, "b")
    ca, cb = (A > 0.5) == (LABELS == 1), (B > 0.5) == (LABELS == 1)
    result = mcnemar_test(a, b, unit="image")
    only_a, only_b = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
    assert (result.only_a, result.only_b) == (only_a, only_b)
    assert result.both_correct + result.only_a + result.only_b + result.both_wrong == len(LABELS)
    assert result.p_value == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)


@pytest.mark.parametrize("unit", ["patient", "image"])
def test_model_against_itself(unit: str) -> None:
    a = predictions(A, "a")
    result = mcnemar_test(a, a, unit=unit)
    assert result.only_a == result.only_b == 0
    assert result.p_value == 1.0


def test_refusals() -> None:
    a = predictions(A, "a")
    with pytest.raises(BreakHisError, match="unit: unknown"):
        mcnemar_test(a, a, unit="group")
    one_benign = Predictions(a.probs, np.repeat([0, 1, 1, 1, 1, 1], 2), PATIENTS, PATIENTS, name="one")
    with pytest.raises(BreakHisError, match="class '0' has 1 test patient"):
        mcnemar_test(one_benign, one_benign)
