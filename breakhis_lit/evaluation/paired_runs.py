"""Paired comparison of two models over one or several pairs of runs scored on the same test images."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar
from typing_extensions import Unpack

from breakhis_lit.errors import BreakHisError
from breakhis_lit.evaluation.union import UnionMean
from breakhis_lit.stats.bootstrap import Resampling, ResamplingOptions
from breakhis_lit.stats.delong import DeLong, delong_test, wald
from breakhis_lit.stats.mcnemar import McNemar, mcnemar_test
from breakhis_lit.stats.paired import (
    Difference,
    PairedDifferences,
    bootstrap_differences,
    check_comparable,
    paired_bootstrap,
)
from breakhis_lit.stats.predictions import Predictions

Pair = tuple[Predictions, Predictions]
"""Model a's and model b's test predictions on the same images."""


@dataclass(frozen=True)
class PairedResult:
    """What a paired comparison of models a and b found.

    Attributes:
        differences: ``{metric: Difference}`` of ``a - b`` (paired patient bootstrap; means over the pairs).
        mcnemar_patient: Exact McNemar on patient decisions (tables summed over the pairs).
        mcnemar_image: Exact McNemar on image decisions (summed likewise).
        delong: DeLong's test of the AUROC difference (binary tasks; combined over the pairs), else None.
        n_pairs: Pairs of runs.
        n_groups: Distinct split groups resampled (over all pairs).
        n_images: Test images per pair, summed.
    """

    differences: dict[str, Difference]
    mcnemar_patient: McNemar
    mcnemar_image: McNemar
    delong: DeLong | None
    n_pairs: int
    n_groups: int
    n_images: int


def _summed_mcnemar(tables: Sequence[McNemar], unit: str) -> McNemar:
    both_correct, only_a, only_b, both_wrong = (sum(getattr(t, f) for t in tables) for f in (
        "both_correct", "only_a", "only_b", "both_wrong"))  # fmt: skip
    p = float(mcnemar(np.array([[both_correct, only_a], [only_b, both_wrong]]), exact=True).pvalue)
    return McNemar(unit, both_correct, only_a, only_b, both_wrong, p)


def _combined_delong(tests: Sequence[DeLong], level: float) -> DeLong:
    se = math.sqrt(sum(t.standard_error**2 for t in tests)) / len(tests)
    mean_a, mean_b, difference = (
        float(np.mean([getattr(t, f) for t in tests])) for f in ("auroc_a", "auroc_b", "difference")
    )
    return wald(mean_a, mean_b, difference, se, level)


def _pooled_pairs(
    pairs: Sequence[Pair], metrics: Sequence[str] | None, resampling: Resampling
) -> tuple[dict[str, Difference], int]:
    """Differences averaged over several pairs, with a bootstrap over the union of their groups."""
    differences = [PairedDifferences(a, b, metrics) for a, b in pairs]
    groups = [a.group_names for a, _ in pairs]
    evaluate = UnionMean(list(zip(differences, groups, strict=True)))
    estimates = tuple(
        UnionMean([(getattr(d, m), g) for d, g in zip(differences, groups, strict=True)]).estimate() for m in "ab"
    )
    found = bootstrap_differences(evaluate, evaluate.n_units, estimates, resampling)
    return found, evaluate.n_units


def compare_pairs(
    pairs: Sequence[Pair], *, metrics: Sequence[str] | None = None, **options: Unpack[ResamplingOptions]
) -> PairedResult:
    """Compare models a and b over pairs of runs, each pair scored on the same test images.

    One pair: :func:`~breakhis_lit.stats.paired_bootstrap`, :func:`~breakhis_lit.stats.mcnemar_test` (patients and
    images) and :func:`~breakhis_lit.stats.delong_test`, unchanged. Several pairs (seeds, each pair on its split):
    the estimate of a metric's difference is the mean over the pairs; a replicate draws split groups with
    replacement from the union of the pairs' test groups and takes the mean over the pairs of each pair's
    difference on the drawn groups it tested, so patients shared by several splits are resampled together and
    every run keeps its own predictions. McNemar sums the pairs' 2x2 tables (a patient tested in two splits counts
    twice); DeLong averages the pairs' AUROC differences with the variance of a mean of independent differences.

    Args:
        pairs: ``(a, b)`` predictions of each pair of runs.
        metrics: Metrics of the bootstrap (default: all).
        options: ``n_resamples``, ``seed``, ``method`` (here ``"bca"`` by default), ``level`` (DeLong's too) of
            :class:`~breakhis_lit.stats.Resampling`.

    Returns:
        The :class:`PairedResult`.

    Raises:
        BreakHisError: On no pairs, or a pair whose runs differ in task, images, labels, groups or patients, or a
            class with fewer than two test patients.
    """
    options = {"method": "bca", **options}
    resampling = Resampling(**options)
    if not pairs:
        raise BreakHisError("no pairs of runs to compare; pass runs scored on the same test images")
    aligned = [(a, check_comparable(a, b)) for a, b in pairs]
    binary = aligned[0][0].binary
    if len(aligned) == 1:
        a, b = aligned[0]
        differences = paired_bootstrap(a, b, metrics=metrics, **options)
        n_groups = a.n_groups
    else:
        differences, n_groups = _pooled_pairs(aligned, metrics, resampling)
    patient = [mcnemar_test(a, b, "patient") for a, b in aligned]
    image = [mcnemar_test(a, b, "image") for a, b in aligned]
    delong = None
    if binary:
        tests = [delong_test(a, b, resampling.level) for a, b in aligned]
        delong = tests[0] if len(tests) == 1 else _combined_delong(tests, resampling.level)
    return PairedResult(
        differences=differences,
        mcnemar_patient=patient[0] if len(patient) == 1 else _summed_mcnemar(patient, "patient"),
        mcnemar_image=image[0] if len(image) == 1 else _summed_mcnemar(image, "image"),
        delong=delong,
        n_pairs=len(aligned),
        n_groups=n_groups,
        n_images=sum(a.n_images for a, _ in aligned),
    )


def shared_images(a: Predictions, b: Predictions) -> Pair:
    """``a`` and ``b`` restricted to the test images both hold, in ``a``'s order.

    Raises:
        BreakHisError: When either run has no image ids or the runs share fewer than two groups' images.
    """
    if a.images is None or b.images is None:
        raise BreakHisError(f"{a.name} vs {b.name}: image ids are needed to find the test images both runs scored")
    in_b = set(b.images)
    keep_a = np.array([i for i, image in enumerate(a.images) if image in in_b], dtype=np.int64)
    if keep_a.size == 0:
        raise BreakHisError(f"{a.name} vs {b.name}: no test image in common; nothing to pair")
    shared = {a.images[i] for i in keep_a}
    keep_b = np.array([i for i, image in enumerate(b.images) if image in shared], dtype=np.int64)
    sub_a, sub_b = a.subset(keep_a), b.subset(keep_b)
    if sub_a.n_groups < 2:
        raise BreakHisError(
            f"{a.name} vs {b.name}: the {keep_a.size} shared test images come from {sub_a.n_groups} group; a paired "
            "bootstrap needs at least 2"
        )
    return sub_a, sub_b
