"""Patient (cluster) bootstrap and image-level bootstrap intervals of every scalar test metric."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from breakhis_lit.stats.interval import Interval, Method, bootstrap_bounds, check_method, finite_or_none
from breakhis_lit.stats.predictions import Predictions
from breakhis_lit.stats.replicates import ReplicateMetrics, Unit

Evaluate = Callable[[np.ndarray], dict[str, np.ndarray]]
Seed = int | np.random.Generator | None


def resample_weights(n_units: int, n_resamples: int, seed: Seed = 0) -> np.ndarray:
    """Bootstrap replicates as multinomial counts: row ``b`` says how often each unit is drawn.

    Each replicate draws ``n_units`` units with replacement, as ``rng.integers(0, n_units, (n_resamples,
    n_units))`` (the draws of ``scipy.stats.bootstrap``), turned into counts: counts let every metric of every
    replicate come from one matrix product with per-unit statistics.

    Args:
        n_units: Number of units ``U`` (groups or images).
        n_resamples: Number of replicates ``B``.
        seed: Seed or ``numpy.random.Generator``.

    Returns:
        ``[B, U]`` int64 counts; every row sums to ``U``.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, (n_resamples, n_units))
    flat = (draws + np.arange(n_resamples)[:, None] * n_units).ravel()
    return np.bincount(flat, minlength=n_resamples * n_units).reshape(n_resamples, n_units)


def jackknife_weights(n_units: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Leave-one-unit-out weights: row ``i - start`` holds every unit once except unit ``i``, for ``start <= i < stop``.

    Args:
        n_units: Number of units ``U``.
        start: First left-out unit.
        stop: One past the last left-out unit (default ``U``).

    Returns:
        ``[stop - start, U]`` int64 weights.
    """
    stop = n_units if stop is None else stop
    weights = np.ones((stop - start, n_units), dtype=np.int64)
    weights[np.arange(stop - start), np.arange(start, stop)] = 0
    return weights


def _jackknife(evaluate: Evaluate, n_units: int) -> dict[str, np.ndarray]:
    step = max(1, 4_000_000 // n_units)  # rows at a time: image units make the full [U, U] matrix large
    blocks = [evaluate(jackknife_weights(n_units, i, min(i + step, n_units))) for i in range(0, n_units, step)]
    return {name: np.concatenate([block[name] for block in blocks]) for name in blocks[0]}


@dataclass(frozen=True)
class BootstrapDistribution:
    """Full-sample values, bootstrap replicates and (for BCa) jackknife values of several metrics.

    Attributes:
        estimates: ``{name: value}`` on the full sample.
        replicates: ``{name: [B]}``, NaN where undefined.
        jackknife: ``{name: [U]}`` leave-one-unit-out values, or None.
        n_units: Number of resampled units ``U``.
    """

    estimates: dict[str, float]
    replicates: dict[str, np.ndarray]
    jackknife: dict[str, np.ndarray] | None
    n_units: int


def bootstrap_distribution(
    evaluate: Evaluate, n_units: int, n_resamples: int = 2000, seed: Seed = 0, jackknife: bool = False
) -> BootstrapDistribution:
    """Evaluate metrics on the full sample, on ``n_resamples`` bootstrap replicates and optionally the jackknife.

    Args:
        evaluate: Maps unit weights ``[B, U]`` to ``{name: [B]}`` (e.g. a :class:`ReplicateMetrics`).
        n_units: Number of resampling units ``U``.
        n_resamples: Number of replicates.
        seed: Seed or generator of the replicates.
        jackknife: Also evaluate the ``U`` leave-one-unit-out samples.

    Returns:
        The :class:`BootstrapDistribution`.
    """
    estimates = {name: float(value[0]) for name, value in evaluate(np.ones((1, n_units), dtype=np.int64)).items()}
    replicates = evaluate(resample_weights(n_units, n_resamples, seed))
    jackknife_values = _jackknife(evaluate, n_units) if jackknife else None
    return BootstrapDistribution(estimates, replicates, jackknife_values, n_units)


class Evaluator(Protocol):
    """Maps weights ``[B, U]`` over its ``n_units`` units to ``{metric: [B]}`` (e.g. a :class:`ReplicateMetrics`)."""

    n_units: int

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """``{metric: [B]}`` for weights ``[B, U]``."""


@dataclass(frozen=True)
class Resampling:
    """The options of every bootstrap of the package (its functions take them as keyword arguments), checked.

    Attributes:
        n_resamples: Number of bootstrap replicates.
        seed: Seed or ``numpy.random.Generator`` of the replicates (the same replicates for every metric).
        method: ``"percentile"``, ``"expanded"`` (:func:`~breakhis_lit.stats.interval.expanded_levels`) or
            ``"bca"`` (acceleration from the leave-one-unit-out jackknife).
        level: Confidence level.

    Raises:
        BreakHisError: On an unknown method, a level outside (0, 1) or fewer than one resample.
    """

    n_resamples: int = 2000
    seed: Seed = 0
    method: Method = "percentile"
    level: float = 0.95

    def __post_init__(self) -> None:
        check_method(self.method, self.level, self.n_resamples)

    def intervals(
        self, evaluate: Evaluator, n_groups: int, unit: str = "group"
    ) -> tuple[BootstrapDistribution, dict[str, Interval]]:
        """The bootstrap distribution of ``evaluate`` and one :class:`Interval` per metric (recording ``n_groups``)."""
        method, level, n_units = self.method, self.level, evaluate.n_units
        distribution = bootstrap_distribution(evaluate, n_units, self.n_resamples, self.seed, method == "bca")
        out = {}
        for name, estimate in distribution.estimates.items():
            replicates = distribution.replicates[name]
            jackknife = None if distribution.jackknife is None else distribution.jackknife[name]
            low, high, n_valid = bootstrap_bounds(estimate, replicates, method, level, jackknife, n_units)
            out[name] = Interval(
                estimate=finite_or_none(estimate),
                low=finite_or_none(low),
                high=finite_or_none(high),
                method=method,
                level=float(level),
                n_resamples=int(replicates.size),
                n_valid=n_valid,
                n_groups=int(n_groups),
                unit=unit,
            )
        return distribution, out


def bootstrap(
    pred: Predictions, unit: Unit = "group", *, metrics: Sequence[str] | None = None, **options: Any
) -> dict[str, Interval]:
    """Bootstrap interval of every scalar test metric of one run, resampling groups or images.

    Resampling the split groups (``unit="group"``) keeps each group's images together, so the interval reflects
    that a patient's images are correlated and the test set is effectively a sample of patients. Resampling
    images (``unit="image"``) treats them as independent and is shown for contrast: with clustered images it
    is too narrow. A replicate in which a metric is undefined (AUROC when the replicate holds a single class,
    or, per class in the multiclass macro, a class absent from it) is left out of that metric's distribution;
    ``Interval.n_valid`` counts the replicates used. BCa takes its acceleration from the leave-one-unit-out
    jackknife (undefined jackknife values are left out). With ~25 patients the percentile interval covers less
    than its level (about 92-93% for 95% in ``tests/stats/test_bootstrap.py``'s simulation); ``"expanded"``
    (:func:`~breakhis_lit.stats.interval.expanded_levels`) corrects most of that (about 94.5%).

    Args:
        pred: The run's test predictions.
        unit: ``"group"`` or ``"image"``.
        metrics: Metric names to compute (default: all of :func:`~breakhis_lit.stats.replicates.metric_names`).
        options: ``n_resamples``, ``seed``, ``method``, ``level`` (see :class:`Resampling`).

    Returns:
        ``{metric: Interval}`` in the order of :func:`~breakhis_lit.stats.replicates.metric_names`.

    Raises:
        BreakHisError: On bad options, an unknown metric, or fewer than two units.
    """
    resampling = Resampling(**options)
    return resampling.intervals(ReplicateMetrics(pred, unit, metrics), pred.n_groups, unit)[1]


def _predictions(
    probs: Any, labels: Any, groups: Any, patients: Any, threshold: float, class_names: Sequence[str] | None
) -> Predictions:
    return Predictions(probs, labels, groups, patients, class_names=tuple(class_names or ()), threshold=threshold)


def patient_bootstrap(
    probs: Any,
    labels: Any,
    groups: Any,
    patients: Any,
    *,
    threshold: float = 0.5,
    class_names: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, Interval]:
    """Patient (cluster) bootstrap: resample the split groups with replacement, each with all its images.

    Args:
        probs: Class probabilities ``[N, C]``.
        labels: True class indices ``[N]``.
        groups: Split group of every image ``[N]`` (e.g. accession numbers), strings or ints.
        patients: Patient id of every image ``[N]``, for the patient-level metrics.
        threshold: Binary decision threshold on ``probs[:, 1]`` (see :class:`Predictions`).
        class_names: Class names for the ``f1_<class>`` keys (default ``"0"``, ``"1"``, ...).
        options: ``metrics`` and :class:`Resampling`'s options, as :func:`bootstrap`.

    Returns:
        ``{metric: Interval}``; see :func:`bootstrap`.

    Raises:
        BreakHisError: On bad predictions (see :class:`Predictions`) or options.
    """
    return bootstrap(_predictions(probs, labels, groups, patients, threshold, class_names), "group", **options)


def image_bootstrap(probs: Any, labels: Any, groups: Any, patients: Any, **options: Any) -> dict[str, Interval]:
    """Image-level bootstrap (images resampled independently), for contrast with :func:`patient_bootstrap`.

    Same arguments and result as :func:`patient_bootstrap`. Patient-level metrics use, in each replicate, the
    drawn images of every patient that has any (a patient's mean probability is weighted by the draws).
    """
    threshold, class_names = options.pop("threshold", 0.5), options.pop("class_names", None)
    return bootstrap(_predictions(probs, labels, groups, patients, threshold, class_names), "image", **options)
