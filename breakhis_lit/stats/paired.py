"""Paired patient-bootstrap comparison of two models on the same test images: differences, intervals, p-values."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from typing_extensions import Unpack

from breakhis_lit.stats.bootstrap import Evaluator, Resampling, ResamplingOptions
from breakhis_lit.stats.interval import Interval, JsonFields, finite_or_none
from breakhis_lit.stats.predictions import Predictions, aligned, check_patients_per_class
from breakhis_lit.stats.replicates import ReplicateMetrics


@dataclass(frozen=True)
class Difference(JsonFields):
    """One metric of two models and their paired difference ``a - b``.

    Attributes:
        estimate_a: Model a's metric on the full test set (None where undefined).
        estimate_b: Model b's metric.
        difference: ``a - b`` with its paired bootstrap interval.
        p_value: Two-sided bootstrap p-value of ``a - b = 0`` (see :func:`bootstrap_p_value`).
    """

    estimate_a: float | None
    estimate_b: float | None
    difference: Interval
    p_value: float | None


def bootstrap_p_value(replicates: np.ndarray) -> float:
    r"""Two-sided p-value of "no difference" from a bootstrap distribution of a difference, by test inversion.

    .. math:: p = \min\Big(1,\; 2 \min\Big(\frac{1 + \#\{\Delta^* \le 0\}}{1 + B},
        \frac{1 + \#\{\Delta^* \ge 0\}}{1 + B}\Big)\Big)

    over the ``B`` replicates in which the difference is defined: twice the smaller share of replicates on
    either side of 0, replicates equal to 0 counting on both sides. Up to the ``+1`` (Davison & Hinkley 1997,
    eq. 4.11, which keeps p above 0 with finitely many replicates), it is the smallest ``1 - level`` at which the
    percentile interval of the difference excludes 0. A distribution concentrated at 0 (a model against itself)
    gives p = 1. NaN when no replicate is defined.
    """
    valid = replicates[np.isfinite(replicates)]
    if valid.size == 0:
        return float("nan")
    b = valid.size
    below = (1 + np.count_nonzero(valid <= 0)) / (1 + b)
    above = (1 + np.count_nonzero(valid >= 0)) / (1 + b)
    return float(min(1.0, 2 * min(below, above)))


class PairedDifferences:
    """Metric differences ``a - b`` of two aligned runs for any weights over their shared groups.

    Args:
        a: Model a's predictions.
        b: Model b's predictions, aligned on a's images.
        metrics: The metrics to compute (default: all).
    """

    def __init__(self, a: Predictions, b: Predictions, metrics: Sequence[str] | None = None) -> None:
        self.a = ReplicateMetrics(a, "group", metrics)
        self.b = ReplicateMetrics(b, "group", metrics)
        self.n_units = self.a.n_units
        self.names = self.a.names

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """``{name: [B]}``: a's metric minus b's on the same resampled groups."""
        a, b = self.a(weights), self.b(weights)
        return {name: a[name] - b[name] for name in self.names}


def bootstrap_differences(
    evaluate: Evaluator,
    n_groups: int,
    estimates: tuple[dict[str, float], dict[str, float]],
    resampling: Resampling,
) -> dict[str, Difference]:
    """:class:`Difference` of every metric of ``evaluate`` (``a - b`` for group weights) beside a's and b's estimates.

    ``estimates`` are both models' metrics on the full test set; ``n_groups`` is recorded in the intervals.
    """
    replicates, intervals = resampling.intervals(evaluate, n_groups)
    estimate_a, estimate_b = estimates
    return {
        name: Difference(
            estimate_a=finite_or_none(estimate_a[name]),
            estimate_b=finite_or_none(estimate_b[name]),
            difference=interval,
            p_value=None if interval.estimate is None else finite_or_none(bootstrap_p_value(replicates[name])),
        )
        for name, interval in intervals.items()
    }


def check_comparable(a: Predictions, b: Predictions) -> Predictions:
    """``b`` aligned on ``a``'s images, after the refusals every paired comparison shares.

    Raises:
        BreakHisError: On different classes or tasks, different images, labels, groups or patients, or a class
            with fewer than two test patients.
    """
    b = aligned(a, b)
    check_patients_per_class(a)
    return b


def paired_bootstrap(
    a: Predictions, b: Predictions, *, metrics: Sequence[str] | None = None, **options: Unpack[ResamplingOptions]
) -> dict[str, Difference]:
    """Difference ``a - b`` of every metric with a paired patient-bootstrap interval and p-value.

    Both models' metrics are computed on the same resampled groups in every replicate, so the interval of the
    difference reflects only how the models differ on the patients, not how hard the patients are. Replicates
    where a metric is undefined (AUROC with one class) are left out of its distribution.

    Args:
        a: Model a's test predictions.
        b: Model b's test predictions on the same images (matched by image id when both have ids).
        metrics: Metric names to compare (default: all).
        options: ``n_resamples``, ``seed``, ``method``, ``level`` of the differences' intervals (see
            :class:`~breakhis_lit.stats.bootstrap.Resampling`).

    Returns:
        ``{metric: Difference}``.

    Raises:
        BreakHisError: See :func:`check_comparable`; on bad options.
    """
    resampling = Resampling(**options)
    b = check_comparable(a, b)
    evaluate = PairedDifferences(a, b, metrics)
    estimates = evaluate.a.estimate(), evaluate.b.estimate()
    return bootstrap_differences(evaluate, a.n_groups, estimates, resampling)
