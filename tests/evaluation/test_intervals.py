"""An evaluation's intervals are the statistics library's patient and image bootstraps, plus calibration."""

import numpy as np
import pytest

from breakhis_lit.evaluation.intervals import THRESHOLD_FREE, evaluation_intervals
from breakhis_lit.evaluation.rows import with_probs
from breakhis_lit.evaluation.validation import apply_temperature
from breakhis_lit.stats import brier_score, expected_calibration_error, image_bootstrap, patient_bootstrap

OPTIONS = {"n_resamples": 300, "seed": 3, "level": 0.95}


def _bootstrap(function, pred, **kwargs):
    return function(
        pred.probs, pred.labels, pred.groups, pred.patients, class_names=pred.class_names, **OPTIONS, **kwargs
    )


@pytest.mark.parametrize("method", ["bca", "percentile", "expanded"])
@pytest.mark.parametrize("num_classes", [2, 3])
def test_intervals_equal_patient_bootstrap(make_predictions, method, num_classes) -> None:
    pred = make_predictions(num_classes=num_classes)
    found = evaluation_intervals(pred, method=method, **OPTIONS)
    expected = _bootstrap(patient_bootstrap, pred, method=method)
    for name, interval in expected.items():
        assert found.intervals[name] == interval, name
    assert found.image == _bootstrap(image_bootstrap, pred, method=method, metrics=["accuracy"])
    assert found.intervals["ece"].estimate == pytest.approx(expected_calibration_error(pred.probs, pred.labels), 2e-6)
    assert found.intervals["brier"].estimate == pytest.approx(brier_score(pred.probs, pred.labels))
    assert found.at_threshold == {}
    assert found.seconds > 0


def test_threshold_and_calibrated_intervals(make_predictions) -> None:
    pred = make_predictions()
    calibrated = with_probs(pred, apply_temperature(pred.probs, 1.7))
    found = evaluation_intervals(pred, method="bca", threshold=0.3, calibrated=calibrated, **OPTIONS)
    expected = _bootstrap(patient_bootstrap, pred, method="bca", threshold=0.3)
    assert set(found.at_threshold) == set(expected) - set(THRESHOLD_FREE)
    for name, interval in found.at_threshold.items():
        assert interval == expected[name], name
    assert found.intervals["ece_calibrated"].estimate == pytest.approx(
        expected_calibration_error(calibrated.probs, calibrated.labels), abs=2e-6
    )
    low, high = found.intervals["brier_calibrated"].low, found.intervals["brier_calibrated"].high
    assert low <= found.intervals["brier_calibrated"].estimate <= high


def test_image_interval_is_narrower_with_clustered_images(make_predictions) -> None:
    pred = make_predictions(n_images=600, n_patients=12)
    found = evaluation_intervals(pred, method="percentile", **OPTIONS)
    patient, image = found.intervals["accuracy"], found.image["accuracy"]
    assert image.high - image.low < patient.high - patient.low
    assert np.isclose(image.estimate, patient.estimate)
