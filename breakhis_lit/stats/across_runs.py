"""Patient-bootstrap intervals over several runs of one model: seeds on one split, or folds with disjoint test sets."""

from collections.abc import Sequence
from typing import Literal

import numpy as np
from typing_extensions import Unpack

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats.bootstrap import Resampling, ResamplingOptions, bootstrap
from breakhis_lit.stats.interval import Interval
from breakhis_lit.stats.predictions import Predictions, aligned
from breakhis_lit.stats.replicates import ReplicateMetrics

Design = Literal["seeds", "folds"]


def pool_folds(runs: Sequence[Predictions]) -> Predictions:
    """The test predictions of k folds as one set in which every image counts once.

    Raises:
        BreakHisError: When the folds have different classes or thresholds, or share a group, a patient or an
            image (their test sets must be disjoint).
    """
    first = runs[0]
    seen: dict[str, dict[object, str]] = {"group": {}, "patient": {}, "image": {}}
    for run in runs:
        if run.class_names != first.class_names:
            raise BreakHisError(
                f"{run.name}: classes {list(run.class_names)} differ from {first.name}'s; pool folds of one task"
            )
        if run.threshold != first.threshold:
            raise BreakHisError(
                f"{run.name}: threshold {run.threshold} differs from {first.name}'s {first.threshold}; "
                "pool folds decided with one threshold"
            )
        for what, values in (("group", run.group_names), ("patient", run.patient_names), ("image", run.images or ())):
            for value in values:
                other = seen[what].setdefault(value, run.name)
                if other != run.name:
                    raise BreakHisError(
                        f"{run.name}: {what} {value!r} is also in the test set of {other}; design='folds' needs "
                        "disjoint test sets (use design='seeds' for runs on one split)"
                    )
    images = None if any(run.images is None for run in runs) else sum((run.images for run in runs), ())
    return Predictions(
        np.concatenate([run.probs for run in runs]),
        np.concatenate([run.labels for run in runs]),
        np.concatenate([run.groups for run in runs]),
        np.concatenate([run.patients for run in runs]),
        class_names=first.class_names,
        threshold=first.threshold,
        images=images,
        name=f"{len(runs)} pooled folds",
    )


class SeedAveragedMetrics:
    """Metrics of several runs on one split, averaged over the runs, for any weights over the shared groups.

    Args:
        runs: Runs whose predictions are aligned on the same images (see :func:`aligned`).
        metrics: The metrics to compute (default: all).
    """

    def __init__(self, runs: Sequence[Predictions], metrics: Sequence[str] | None = None) -> None:
        self._runs = [ReplicateMetrics(run, "group", metrics) for run in runs]
        self.n_units = self._runs[0].n_units
        self.names = self._runs[0].names

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """``{name: [B]}``: the mean over the runs of each run's metric under the same weights."""
        values = [run(weights) for run in self._runs]
        return {name: np.mean([value[name] for value in values], axis=0) for name in self.names}


def runs_bootstrap(
    runs: Sequence[Predictions],
    design: Design,
    *,
    metrics: Sequence[str] | None = None,
    **options: Unpack[ResamplingOptions],
) -> dict[str, Interval]:
    """Bootstrap interval of every metric over several runs of one model, resampling patients (split groups).

    ``design="seeds"``: runs of different seeds tested on the same split (the same images). The estimate is the
    mean over the runs of each run's metric (the number ``breakhis report`` shows as the mean over seeds). A
    replicate resamples the groups once and keeps every run's predictions of each drawn group: every run's
    metric is computed on the same resampled patients and the run-mean is taken. The interval thus covers the
    sampling of patients for the seed-averaged model, with each patient's run-to-run variation carried inside
    its cluster; the seeds themselves are not resampled (a handful of seeds is too few to bootstrap), so a
    systematic difference between seeds only enters through the mean.

    ``design="folds"``: k folds (e.g. group k-fold) whose test sets are disjoint. The predictions are pooled, so
    every image (and patient) counts once, and the pool is patient-bootstrapped as one test set of all the
    folds' patients. This estimates the metric of the modelling procedure over the whole data set; the folds'
    models differ, and pooling treats their decisions as one classifier's (all must use one threshold).

    Args:
        runs: The runs' test predictions (one :class:`Predictions` each, ``name`` naming the run).
        design: ``"seeds"`` or ``"folds"``.
        metrics: Metric names to compute (default: all).
        options: ``n_resamples``, ``seed``, ``method``, ``level`` of :class:`~breakhis_lit.stats.Resampling`.

    Returns:
        ``{metric: Interval}`` (``n_groups`` counts the distinct groups: shared by the seeds, pooled over folds).

    Raises:
        BreakHisError: On no runs, an unknown design, seeds that saw different images, classes, labels, groups or
            patients, or folds whose test sets overlap.
    """
    resampling = Resampling(**options)
    if not runs:
        raise BreakHisError("runs: no runs given; pass the predictions of at least one run")
    if design == "folds":
        return bootstrap(pool_folds(runs), "group", metrics=metrics, **options)
    if design != "seeds":
        raise BreakHisError(f"design: unknown {design!r}; use 'seeds' (one split) or 'folds' (disjoint test sets)")
    first = runs[0]
    seeds = [first, *(aligned(first, run) for run in runs[1:])]
    evaluate = SeedAveragedMetrics(seeds, metrics)
    return resampling.intervals(evaluate, first.n_groups)[1]
