"""Patient (cluster) bootstrap and image-level bootstrap intervals of every scalar test metric."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

import numpy as np
from typing_extensions import Unpack

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


class Evaluator(Protocol):
    """Maps weights ``[B, U]`` over its ``n_units`` units to ``{metric: [B]}`` (e.g. a :class:`ReplicateMetrics`)."""

    n_units: int

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """``{metric: [B]}`` for weights ``[B, U]``."""


class ResamplingOptions(TypedDict, total=False):
    """The keyword options of every bootstrap function: the fields of :class:`Resampling`."""

    n_resamples: int
    seed: Seed
    method: Method
    level: float


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
    ) -> tuple[dict[str, np.ndarray], dict[str, Interval]]:
        """Every metric's bootstrap replicates ``[B]`` (NaN where undefined) and :class:`Interval` (with ``n_groups``).

        The estimate is ``evaluate`` on the full sample; BCa also evaluates the leave-one-unit-out jackknife.
        """
        n_units = evaluate.n_units
        estimates = {name: float(value[0]) for name, value in evaluate(np.ones((1, n_units), dtype=np.int64)).items()}
        replicates = evaluate(resample_weights(n_units, self.n_resamples, self.seed))
        jackknife = _jackknife(evaluate, n_units) if self.method == "bca" else {}
        out = {}
        for name, estimate in estimates.items():
            bounds = bootstrap_bounds(estimate, replicates[name], self.method, self.level, jackknife.get(name), n_units)
            out[name] = Interval(
                estimate=finite_or_none(estimate),
                low=finite_or_none(bounds[0]),
                high=finite_or_none(bounds[1]),
                method=self.method,
                level=float(self.level),
                n_resamples=int(replicates[name].size),
                n_valid=bounds[2],
                n_groups=int(n_groups),
                unit=unit,
            )
        return replicates, out


def bootstrap(
    pred: Predictions,
    unit: Unit = "group",
    *,
    metrics: Sequence[str] | None = None,
    **options: Unpack[ResamplingOptions],
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
    metrics: Sequence[str] | None = None,
    **options: Unpack[ResamplingOptions],
) -> dict[str, Interval]:
    """Patient (cluster) bootstrap: resample the split groups with replacement, each with all its images.

    Args:
        probs: Class probabilities ``[N, C]``.
        labels: True class indices ``[N]``.
        groups: Split group of every image ``[N]`` (e.g. accession numbers), strings or ints.
        patients: Patient id of every image ``[N]``, for the patient-level metrics.
        threshold: Binary decision threshold on ``probs[:, 1]`` (see :class:`Predictions`).
        class_names: Class names for the ``f1_<class>`` keys (default ``"0"``, ``"1"``, ...).
        metrics: Metric names (default: every scalar metric), as :func:`bootstrap`.
        options: :class:`Resampling`'s options.

    Returns:
        ``{metric: Interval}``; see :func:`bootstrap`.

    Raises:
        BreakHisError: On bad predictions (see :class:`Predictions`) or options.
    """
    pred = _predictions(probs, labels, groups, patients, threshold, class_names)
    return bootstrap(pred, "group", metrics=metrics, **options)


def image_bootstrap(
    probs: Any,
    labels: Any,
    groups: Any,
    patients: Any,
    *,
    threshold: float = 0.5,
    class_names: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    **options: Unpack[ResamplingOptions],
) -> dict[str, Interval]:
    """Image-level bootstrap (images resampled independently), for contrast with :func:`patient_bootstrap`.

    Same arguments and result as :func:`patient_bootstrap`. Patient-level metrics use, in each replicate, the
    drawn images of every patient that has any (a patient's mean probability is weighted by the draws).
    """
    pred = _predictions(probs, labels, groups, patients, threshold, class_names)
    return bootstrap(pred, "image", metrics=metrics, **options)
