"""DeLong's test of the difference of two correlated binary ROC AUCs, in the fast midrank form (Sun & Xu 2014)."""

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats.paired import check_comparable
from breakhis_lit.stats.predictions import Predictions


def delong_covariance(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""AUROCs of ``K`` scorings of the same images and DeLong's covariance matrix of them.

    With ``m`` positives and ``n`` negatives, the placement values (structural components) of scoring ``k`` are
    :math:`V_{10}(X_i) = \frac1n \sum_j \psi(X_i, Y_j)` and :math:`V_{01}(Y_j) = \frac1m \sum_i \psi(X_i, Y_j)`
    with :math:`\psi(x, y) = [x > y] + \frac12 [x = y]`; the AUROC is their mean and

    .. math:: S = \frac{S_{10}}{m} + \frac{S_{01}}{n},

    where :math:`S_{10}, S_{01}` are the sample covariance matrices (``ddof=1``) of the placement values over
    the positives and over the negatives (DeLong, DeLong & Clarke-Pearson 1988). The placement values come from
    midranks (``scipy.stats.rankdata``), :math:`V_{10}(X_i) = (R_i - R^X_i)/n` and
    :math:`V_{01}(Y_j) = 1 - (R_j - R^Y_j)/m` with :math:`R` the midrank among all images and :math:`R^X, R^Y`
    within the positives or negatives (Sun & Xu 2014): ``O(K N log N)`` instead of ``O(K m n)``. Written here
    because neither scipy nor statsmodels provides DeLong's test.

    Args:
        scores: ``[K, N]`` scores (higher means more likely positive).
        positive: Boolean ``[N]``.

    Returns:
        ``(auroc [K], covariance [K, K])``.

    Raises:
        ValueError: With fewer than two positives or two negatives.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    positive = np.asarray(positive, dtype=bool)
    x, y = scores[:, positive], scores[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least two positives and two negatives, got {m} and {n}")
    ranks = rankdata(np.concatenate([x, y], axis=1), axis=1)
    v10 = (ranks[:, :m] - rankdata(x, axis=1)) / n
    v01 = 1.0 - (ranks[:, m:] - rankdata(y, axis=1)) / m
    auroc = v10.mean(axis=1)
    covariance = np.atleast_2d(np.cov(v10, ddof=1)) / m + np.atleast_2d(np.cov(v01, ddof=1)) / n
    return auroc, covariance


@dataclass(frozen=True)
class DeLong:
    """DeLong's test of ``AUROC_a - AUROC_b``.

    Attributes:
        auroc_a: Model a's AUROC.
        auroc_b: Model b's AUROC.
        difference: ``auroc_a - auroc_b``.
        standard_error: DeLong's standard error of the difference.
        z: ``difference / standard_error`` (0 when both are 0).
        p_value: Two-sided normal p-value.
        low: Lower bound of the Wald interval ``difference ± z_{(1+level)/2} · standard_error``.
        high: Upper bound.
        level: Confidence level of the interval.
    """

    auroc_a: float
    auroc_b: float
    difference: float
    standard_error: float
    z: float | None
    p_value: float
    low: float
    high: float
    level: float


def delong_test(a: Predictions, b: Predictions, level: float = 0.95) -> DeLong:
    """DeLong's test for the AUROC difference of two models' correlated ROC curves (binary tasks).

    The scores are the probabilities of class 1 as the package's AUROC sees them (float32). DeLong's variance
    treats images as independent; with a patient's images correlated it is too small, so read it beside the
    paired patient bootstrap of ``auroc`` (:func:`~breakhis_lit.stats.paired.paired_bootstrap`). With a zero
    standard error the p-value is 1 if the AUROCs are equal (e.g. a model against itself) and 0 otherwise.

    Args:
        a: Model a's test predictions.
        b: Model b's test predictions on the same images.
        level: Confidence level of the Wald interval.

    Returns:
        The :class:`DeLong` result.

    Raises:
        BreakHisError: On a multiclass task, fewer than two images of a class, a level outside (0, 1), or see
            :func:`~breakhis_lit.stats.paired.check_comparable`.
    """
    if not 0.0 < level < 1.0:
        raise BreakHisError(f"level: must be in (0, 1), e.g. 0.95; got {level}")
    b = check_comparable(a, b)
    if not a.binary:
        raise BreakHisError(
            f"{a.name}: DeLong's test is for binary tasks; compare the multiclass macro AUROC with paired_bootstrap"
        )
    positive = a.labels == 1
    if min(int(positive.sum()), int((~positive).sum())) < 2:
        raise BreakHisError(f"{a.name}: DeLong's test needs at least two test images of each class")
    auroc, covariance = delong_covariance(np.stack([a.probs32[:, 1], b.probs32[:, 1]]), positive)
    variance = max(float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]), 0.0)
    return wald(float(auroc[0]), float(auroc[1]), float(auroc[0] - auroc[1]), math.sqrt(variance), level)


def wald(auroc_a: float, auroc_b: float, difference: float, se: float, level: float) -> DeLong:
    """The z test and Wald interval of an AUROC difference; with ``se`` 0, p is 1 if the difference is 0, else 0."""
    if se > 0:
        z: float | None = difference / se
        p_value = float(2 * ndtr(-abs(z)))
    else:
        z, p_value = (0.0, 1.0) if difference == 0 else (None, 0.0)
    half = float(ndtri((1 + level) / 2)) * se
    return DeLong(auroc_a, auroc_b, difference, se, z, p_value, difference - half, difference + half, float(level))
