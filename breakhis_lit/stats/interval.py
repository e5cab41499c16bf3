"""Bootstrap confidence intervals (percentile and BCa) from a replicate distribution, and their JSON-friendly result."""

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import t as student_t

from breakhis_lit.errors import BreakHisError

Method = Literal["percentile", "expanded", "bca"]


def finite_or_none(value: float) -> float | None:
    """``value`` as a Python float, or None when it is NaN or infinite (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


class JsonFields:
    """Base of the statistics' result dataclasses that are written to JSON."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Interval(JsonFields):
    """A point estimate with its bootstrap confidence interval.

    Attributes:
        estimate: The metric on the full sample (None where undefined, e.g. AUROC with one class).
        low: Lower bound (None where undefined).
        high: Upper bound (None where undefined).
        method: ``"percentile"``, ``"expanded"`` or ``"bca"``.
        level: Confidence level, e.g. 0.95.
        n_resamples: Replicates drawn.
        n_valid: Replicates in which the metric was defined (the interval uses only these).
        n_groups: Distinct split groups of the test set.
        unit: What was resampled: ``"group"`` or ``"image"``.
    """

    estimate: float | None
    low: float | None
    high: float | None
    method: str
    level: float
    n_resamples: int
    n_valid: int
    n_groups: int
    unit: str


def check_method(method: str, level: float, n_resamples: int) -> None:
    """Refuse an unknown interval method, a level outside (0, 1) or too few resamples.

    Raises:
        BreakHisError: Naming the option and the fix.
    """
    if method not in ("percentile", "expanded", "bca"):
        raise BreakHisError(f"method: unknown {method!r}; use 'percentile', 'expanded' or 'bca'")
    if not 0.0 < level < 1.0:
        raise BreakHisError(f"level: must be in (0, 1), e.g. 0.95; got {level}")
    if n_resamples < 1:
        raise BreakHisError(f"n_resamples: must be at least 1 (2000 is a good default); got {n_resamples}")


def acceleration(jackknife: np.ndarray) -> float:
    r"""BCa acceleration from jackknife values :math:`\hat\theta_{(i)}` (Efron & Tibshirani 1993, eq. 14.15).

    .. math:: \hat a = \frac{\sum_i d_i^3}{6 \big(\sum_i d_i^2\big)^{3/2}}, \qquad
        d_i = \bar\theta_{(\cdot)} - \hat\theta_{(i)}

    Undefined jackknife values (NaN) are left out; 0 when the jackknife values do not vary.
    """
    values = jackknife[np.isfinite(jackknife)]
    if values.size == 0:
        return 0.0
    d = values.mean() - values
    denominator = 6.0 * float(np.sum(d**2)) ** 1.5
    return float(np.sum(d**3)) / denominator if denominator > 0 else 0.0


def bca_levels(estimate: float, replicates: np.ndarray, jackknife: np.ndarray, level: float) -> tuple[float, float]:
    r"""The quantile levels of the BCa interval, as ``scipy.stats.bootstrap(method="BCa")``.

    .. math:: \hat z_0 = \Phi^{-1}\Big(\tfrac{\#\{\theta^* < \hat\theta\} + \#\{\theta^* \le \hat\theta\}}{2B}\Big),
        \qquad \alpha_{1,2} = \Phi\Big(\hat z_0 + \frac{\hat z_0 + z_{\alpha}}{1 - \hat a (\hat z_0 + z_{\alpha})}\Big)

    with :math:`z_\alpha = \Phi^{-1}((1 \mp \text{level})/2)` and :math:`\hat a` from :func:`acceleration`.
    Written here because scipy's BCa needs the statistic as a callable on resampled data and re-runs the
    jackknife; here the replicates and the jackknife come from the vectorised metrics.
    Where every replicate lies on one side of the estimate (:math:`\hat z_0 = \pm\infty`) both levels are 0 or 1.
    """
    b = replicates.size
    share = (np.count_nonzero(replicates < estimate) + np.count_nonzero(replicates <= estimate)) / (2 * b)
    z0 = float(ndtri(share))
    if not math.isfinite(z0):
        return (0.0, 0.0) if z0 < 0 else (1.0, 1.0)
    a = acceleration(jackknife)
    levels = []
    for z in (float(ndtri((1 - level) / 2)), float(ndtri((1 + level) / 2))):
        shifted = z0 + z
        levels.append(float(ndtr(z0 + shifted / (1 - a * shifted))))
    return levels[0], levels[1]


def expanded_levels(level: float, n_units: int) -> tuple[float, float]:
    r"""The quantile levels of the expanded percentile interval (Hesterberg 2015, *The American Statistician* 69).

    .. math:: \alpha_{1,2} = \Phi\Big(\mp \sqrt{\tfrac{n}{n-1}}\; t_{n-1,\,(1+\text{level})/2}\Big)

    for ``n`` resampled units. It corrects the percentile interval's narrowness with few units: the bootstrap
    variance is ``(n-1)/n`` of the plug-in one and its tails are normal rather than Student's ``t``. With 25
    groups the 95% interval takes the 1.76% and 98.24% quantiles; as ``n`` grows it becomes the percentile
    interval. Needs ``n >= 2``.
    """
    z = math.sqrt(n_units / (n_units - 1)) * float(student_t.ppf((1 + level) / 2, n_units - 1))
    return float(ndtr(-z)), float(ndtr(z))


def bootstrap_bounds(
    estimate: float,
    replicates: np.ndarray,
    method: Method = "percentile",
    level: float = 0.95,
    jackknife: np.ndarray | None = None,
    n_units: int | None = None,
) -> tuple[float, float, int]:
    """Confidence bounds from a bootstrap distribution.

    Replicates in which the metric is undefined (NaN) are dropped, so the interval is conditional on the metric
    being defined; their number is returned. Quantiles are linear interpolations (``numpy.quantile``'s default,
    as ``scipy.stats.bootstrap``).

    Args:
        estimate: The full-sample value.
        replicates: Bootstrap values ``[B]`` (NaN where undefined).
        method: ``"percentile"``, ``"expanded"`` (see :func:`expanded_levels`) or ``"bca"``.
        level: Confidence level.
        jackknife: Leave-one-unit-out values (needed for ``"bca"``).
        n_units: Number of resampled units (needed for ``"expanded"``).

    Returns:
        ``(low, high, n_valid)``; NaN bounds when the estimate is undefined or no replicate is.
    """
    valid = replicates[np.isfinite(replicates)]
    if not math.isfinite(estimate) or valid.size == 0:
        return math.nan, math.nan, int(valid.size)
    if method == "bca":
        if jackknife is None:
            raise ValueError("method='bca' needs the jackknife values")
        levels = bca_levels(estimate, valid, jackknife, level)
    elif method == "expanded":
        if n_units is None:
            raise ValueError("method='expanded' needs the number of units")
        levels = expanded_levels(level, n_units)
    else:
        levels = ((1 - level) / 2, (1 + level) / 2)
    low, high = np.quantile(valid, levels)
    return float(low), float(high), int(valid.size)
