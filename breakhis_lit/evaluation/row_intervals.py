"""The interval of a report row over several runs: seeds on one split, disjoint folds, or overlapping splits."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from typing_extensions import Unpack

from breakhis_lit.evaluation.union import UnionMean
from breakhis_lit.stats.across_runs import runs_bootstrap
from breakhis_lit.stats.bootstrap import Resampling, ResamplingOptions
from breakhis_lit.stats.interval import Interval
from breakhis_lit.stats.predictions import Predictions
from breakhis_lit.stats.replicates import ReplicateMetrics

RowDesign = Literal["seeds", "folds", "splits"]
"""How a row's runs are resampled: see :func:`row_intervals`."""


@dataclass(frozen=True)
class RowIntervals:
    """The intervals of one report row.

    Attributes:
        design: ``seeds``, ``folds`` or ``splits`` (see :func:`row_intervals`).
        intervals: ``{metric: Interval}``.
        n_groups: Distinct split groups resampled.
    """

    design: RowDesign
    intervals: dict[str, Interval]
    n_groups: int


def row_design(runs: Sequence[Predictions], split_hashes: Sequence[str]) -> RowDesign:
    """``seeds`` for runs scored on one split, ``folds`` for test sets sharing no group, else ``splits``."""
    if len(set(split_hashes)) == 1:
        return "seeds"
    seen: set[object] = set()
    for run in runs:
        groups = set(run.group_names)
        if groups & seen:
            return "splits"
        seen |= groups
    return "folds"


def row_intervals(
    runs: Sequence[Predictions],
    split_hashes: Sequence[str],
    *,
    metrics: Sequence[str] | None = None,
    **options: Unpack[ResamplingOptions],
) -> RowIntervals:
    """Interval of every metric over a row's runs, covering patient sampling and run-to-run variation.

    * ``seeds``: every run scored on one split (one split hash): :func:`~breakhis_lit.stats.runs_bootstrap` with
      ``design="seeds"``: the groups are resampled once per replicate, every run keeps its predictions, and the
      estimate is the mean over the runs (the row's mean). One run: its patient bootstrap.
    * ``folds``: different splits whose test sets share no group (k folds): ``design="folds"``, the folds' predictions
      pooled and resampled as one test set; the estimate is the pooled metric, not the mean over folds.
    * ``splits``: different splits whose test sets overlap (split seeds: each test set is another sample of the same
      patients). Neither of the above applies (pooling would count shared patients twice, and the runs saw different
      images). A replicate draws groups from the union of the test sets, each run's metric is computed on the drawn
      groups it tested (a patient shared by two test sets is drawn for both), and the estimate is the mean over the
      runs, as the row's mean. The interval thus covers both the sampling of patients and how the runs differ, the
      split seeds included, but not the sampling of split seeds themselves.

    Args:
        runs: The row's runs' test predictions (with ``name`` naming each).
        split_hashes: Each run's split hash.
        metrics: Metric names (default: all).
        options: ``n_resamples``, ``seed``, ``method`` (here ``"bca"`` by default), ``level`` of
            :class:`~breakhis_lit.stats.Resampling`.

    Returns:
        The :class:`RowIntervals`.
    """
    options = {"method": "bca", **options}
    resampling = Resampling(**options)
    design = row_design(runs, split_hashes)
    if design != "splits":
        intervals = runs_bootstrap(runs, design, metrics=metrics, **options)
        return RowIntervals(design, intervals, next(iter(intervals.values())).n_groups)
    evaluate = UnionMean([(ReplicateMetrics(run, "group", metrics), run.group_names) for run in runs])
    intervals = resampling.intervals(evaluate, evaluate.n_units)[1]
    return RowIntervals(design, intervals, evaluate.n_units)
