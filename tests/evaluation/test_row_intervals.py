"""A report row's interval: runs_bootstrap for seeds and folds, the union bootstrap for overlapping splits."""

import numpy as np
import pytest

from breakhis_lit.evaluation.row_intervals import row_design, row_intervals
from breakhis_lit.stats import Predictions, patient_bootstrap, runs_bootstrap

from .conftest import random_predictions

OPTIONS = {"n_resamples": 300, "seed": 2, "level": 0.95, "method": "percentile"}
METRICS = ["accuracy", "auroc"]


def _renamed(pred: Predictions, prefix: str, name: str) -> Predictions:
    return Predictions(
        pred.probs,
        pred.labels,
        [f"{prefix}{g}" for g in pred.groups],
        [f"{prefix}{p}" for p in pred.patients],
        class_names=pred.class_names,
        images=[f"{prefix}{i}" for i in pred.images],
        name=name,
    )


def test_one_run_is_its_patient_bootstrap() -> None:
    pred = random_predictions()
    found = row_intervals([pred], ["h"], metrics=METRICS, **OPTIONS)
    expected = patient_bootstrap(
        pred.probs, pred.labels, pred.groups, pred.patients, class_names=pred.class_names, metrics=METRICS, **OPTIONS
    )
    assert found.design == "seeds"
    assert found.intervals == expected


def test_seeds_and_folds_are_runs_bootstrap() -> None:
    a, b = random_predictions(seed=1), random_predictions(seed=1)
    b = Predictions(np.roll(b.probs, 1, axis=0), a.labels, a.groups, a.patients, class_names=a.class_names,
                    images=a.images, name="b")  # fmt: skip
    found = row_intervals([a, b], ["h", "h"], metrics=METRICS, **OPTIONS)
    assert found.design == "seeds"
    assert found.intervals == runs_bootstrap([a, b], "seeds", metrics=METRICS, **OPTIONS)
    folds = [_renamed(random_predictions(seed=k), f"f{k}-", f"fold{k}") for k in range(3)]
    found = row_intervals(folds, ["1", "2", "3"], metrics=METRICS, **OPTIONS)
    assert found.design == "folds"
    assert found.intervals == runs_bootstrap(folds, "folds", metrics=METRICS, **OPTIONS)


def test_overlapping_splits_take_the_mean_over_runs() -> None:
    a = random_predictions(seed=1, n_patients=16)
    b = random_predictions(seed=2, n_patients=12)  # groups acc0..acc5 are in both test sets
    assert row_design([a, b], ["x", "y"]) == "splits"
    found = row_intervals([a, b], ["x", "y"], metrics=METRICS, **OPTIONS)
    assert found.design == "splits"
    assert found.n_groups == 8
    single = [row_intervals([run], ["x"], metrics=METRICS, **OPTIONS).intervals["accuracy"] for run in (a, b)]
    accuracy = found.intervals["accuracy"]
    assert accuracy.estimate == pytest.approx(np.mean([s.estimate for s in single]))
    assert accuracy.low < accuracy.estimate < accuracy.high
