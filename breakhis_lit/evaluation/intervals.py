"""The intervals of one evaluation: a patient bootstrap of every scalar metric, an image bootstrap for contrast."""

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from typing_extensions import Unpack

from breakhis_lit.evaluation.calibration_replicates import CalibrationReplicates
from breakhis_lit.stats.bootstrap import Resampling, ResamplingOptions, bootstrap
from breakhis_lit.stats.interval import Interval
from breakhis_lit.stats.predictions import Predictions
from breakhis_lit.stats.replicates import ReplicateMetrics, Unit, metric_names

THRESHOLD_FREE: tuple[str, ...] = ("auroc",)
"""Metrics of :func:`~breakhis_lit.stats.metric_names` that do not depend on the decision threshold."""


class EvaluationMetrics:
    """Every scalar test metric and the calibration metrics of one run, for any batch of unit weights.

    Args:
        pred: The run's predictions.
        unit: ``"group"`` or ``"image"``.
        calibrated: The same images with temperature-scaled probabilities: adds ``ece_calibrated`` and
            ``brier_calibrated``.
    """

    def __init__(self, pred: Predictions, unit: Unit = "group", calibrated: Predictions | None = None) -> None:
        self._parts: list[ReplicateMetrics | CalibrationReplicates] = [
            ReplicateMetrics(pred, unit),
            CalibrationReplicates(pred, unit),
        ]
        if calibrated is not None:
            self._parts.append(CalibrationReplicates(calibrated, unit, suffix="_calibrated"))
        self.n_units = self._parts[0].n_units
        self.names = [name for part in self._parts for name in part.names]

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """``{name: [B]}`` for unit weights ``[B, U]``."""
        return {name: values for part in self._parts for name, values in part(weights).items()}


@dataclass(frozen=True)
class EvaluationIntervals:
    """The intervals of one evaluation.

    Attributes:
        intervals: Patient-bootstrap interval of every metric, decisions at the run's threshold (0.5).
        at_threshold: Patient-bootstrap intervals of the threshold-dependent metrics at another threshold (the
            one chosen on validation), empty without one.
        image: Image-level bootstrap interval of accuracy, for contrast.
        seconds: Wall time of all of them.
    """

    intervals: dict[str, Interval]
    at_threshold: dict[str, Interval]
    image: dict[str, Interval]
    seconds: float


def evaluation_intervals(
    pred: Predictions,
    *,
    threshold: float | None = None,
    calibrated: Predictions | None = None,
    image_metrics: Sequence[str] = ("accuracy",),
    **options: Unpack[ResamplingOptions],
) -> EvaluationIntervals:
    """Patient-bootstrap intervals of every metric of an evaluation, and the image-level ones for contrast.

    The patient intervals resample the split groups (:func:`~breakhis_lit.stats.patient_bootstrap`'s replicates:
    for the metrics that function reports, the intervals are its intervals), adding the ECE and Brier score
    (and their temperature-scaled versions) to the same replicates.

    Args:
        pred: The run's test predictions (decisions at its threshold).
        threshold: A second binary threshold (chosen on validation) for :attr:`EvaluationIntervals.at_threshold`.
        calibrated: The predictions with temperature-scaled probabilities.
        image_metrics: Metrics of the image-level bootstrap.
        options: ``n_resamples``, ``seed``, ``method`` (here ``"bca"`` by default), ``level`` of
            :class:`~breakhis_lit.stats.Resampling`, the same for every bootstrap.

    Returns:
        The :class:`EvaluationIntervals`.

    Raises:
        BreakHisError: On bad options or fewer than two groups.
    """
    options = {"method": "bca", **options}
    resampling = Resampling(**options)
    start = time.perf_counter()
    intervals = resampling.intervals(EvaluationMetrics(pred, "group", calibrated), pred.n_groups)[1]
    at_threshold: dict[str, Interval] = {}
    if threshold is not None and pred.binary:
        names = [name for name in metric_names(pred.class_names) if name not in THRESHOLD_FREE]
        at_threshold = bootstrap(replace(pred, threshold=threshold), "group", metrics=names, **options)
    image = bootstrap(pred, "image", metrics=list(image_metrics), **options)
    return EvaluationIntervals(intervals, at_threshold, image, time.perf_counter() - start)
