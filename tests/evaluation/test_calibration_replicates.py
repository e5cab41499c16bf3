"""The replicate ECE and Brier score equal torchmetrics' ECE and the Brier score of the resampled images."""

import numpy as np
import pytest

from breakhis_lit.evaluation.calibration_replicates import CalibrationReplicates
from breakhis_lit.stats import brier_score, expected_calibration_error
from breakhis_lit.stats.bootstrap import resample_weights


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("unit", ["group", "image"])
def test_weighted_metrics_equal_the_metrics_of_the_repeated_images(make_predictions, num_classes, unit) -> None:
    pred = make_predictions(num_classes=num_classes)
    evaluate = CalibrationReplicates(pred, unit)
    units = pred.group_codes if unit == "group" else np.arange(pred.n_images)
    weights = resample_weights(evaluate.n_units, 5, seed=1)
    values = evaluate(weights)
    for b, row in enumerate(weights):
        repeat = row[units]  # how often each image is drawn
        probs, labels = np.repeat(pred.probs, repeat, axis=0), np.repeat(pred.labels, repeat)
        assert values["ece"][b] == pytest.approx(expected_calibration_error(probs, labels), abs=2e-6)
        assert values["brier"][b] == pytest.approx(brier_score(probs, labels), abs=1e-12)


def test_full_sample_and_names(make_predictions) -> None:
    pred = make_predictions()
    evaluate = CalibrationReplicates(pred, suffix="_calibrated")
    assert evaluate.names == ["ece_calibrated", "brier_calibrated"]
    full = evaluate(np.ones((1, evaluate.n_units)))
    assert full["ece_calibrated"][0] == pytest.approx(expected_calibration_error(pred.probs, pred.labels), abs=2e-6)


def test_confidence_of_exactly_one_gets_its_own_bin(make_predictions) -> None:
    pred = make_predictions(decimals=1)  # rounding puts some probabilities at exactly 0 and 1
    assert np.any(pred.probs[:, 1] == 1.0)
    value = CalibrationReplicates(pred)(np.ones((1, pred.n_groups)))["ece"][0]
    assert value == pytest.approx(expected_calibration_error(pred.probs, pred.labels), abs=2e-6)
