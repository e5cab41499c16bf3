"""The statistics' :class:`~breakhis_lit.stats.Predictions` from the rows of an evaluation's ``predictions.csv``."""

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import PredictionRow
from breakhis_lit.stats.predictions import Predictions


def predictions_from_rows(
    rows: Sequence[PredictionRow], classes: Sequence[str], name: str, threshold: float = 0.5
) -> Predictions:
    """One run's test predictions as the statistics take them: probabilities, labels, groups, patients, image ids.

    Args:
        rows: The rows of ``predictions.csv`` (:func:`~breakhis_lit.rundir.read_predictions`).
        classes: Class names in index order.
        name: The run, for error messages (e.g. its directory).
        threshold: Binary decision threshold on the probability of class 1.

    Raises:
        BreakHisError: On no rows, a label outside the classes, or rows the statistics refuse (see
            :class:`~breakhis_lit.stats.Predictions`).
    """
    if not rows:
        raise BreakHisError(f"{name}: predictions.csv has no rows; rerun `breakhis test` for this run")
    index = {c: k for k, c in enumerate(classes)}
    unknown = next((row for row in rows if row.label not in index), None)
    if unknown is not None:
        raise BreakHisError(
            f"{name}: image {unknown.path} has label {unknown.label!r}, not one of {list(classes)}; only labelled "
            "test images can be scored"
        )
    return Predictions(
        np.array([row.probs for row in rows], dtype=np.float64),
        np.array([index[row.label] for row in rows], dtype=np.int64),
        [row.group for row in rows],
        [row.patient_id for row in rows],
        class_names=tuple(classes),
        threshold=threshold,
        images=tuple(row.path for row in rows),
        name=name,
    )


def with_probs(pred: Predictions, probs: np.ndarray) -> Predictions:
    """The same images with other probabilities (e.g. temperature-scaled)."""
    return replace(pred, probs=probs)
