"""Intervals over several runs: seeds on one split (run-averaged metrics) and pooled disjoint folds."""

import numpy as np
import pytest
import torch

from breakhis_lit.errors import BreakHisError
from breakhis_lit.metrics import ClassificationMetrics
from breakhis_lit.stats import (
    Predictions,
    ReplicateMetrics,
    bootstrap,
    pool_folds,
    resample_weights,
    runs_bootstrap,
)
from breakhis_lit.stats.across_runs import SeedAveragedMetrics


def seeds_of(make_predictions, n_runs: int = 3, **kwargs) -> list[Predictions]:
    """Runs on one split: the same images, groups and patients; each seed's own probabilities."""
    base = make_predictions(**kwargs)
    runs = []
    for seed in range(n_runs):
        # The split of `base` with another seed's probabilities (a different model, the same patients).
        probs = make_predictions(**{**kwargs, "seed": 100 + seed}).probs
        runs.append(
            Predictions(
                probs,
                base.labels,
                base.groups,
                base.patients,
                class_names=base.class_names,
                images=base.images,
                name=f"seed{seed}",
            )
        )
    return runs


def test_seed_estimate_is_the_mean_of_the_runs_metrics(make_predictions) -> None:
    runs = seeds_of(make_predictions, n_images=200, n_patients=12)
    result = runs_bootstrap(runs, "seeds", n_resamples=300)
    for name in ("accuracy", "f1_macro", "auroc"):
        values = []
        for run in runs:
            metrics = ClassificationMetrics(run.class_names)
            metrics.update(torch.tensor(run.probs), torch.tensor(run.labels))
            values.append(float(metrics.compute()[name]))
        assert result[name].estimate == pytest.approx(np.mean(values), abs=2e-6)


def test_seed_replicates_average_the_runs_on_the_same_groups(make_predictions) -> None:
    runs = seeds_of(make_predictions, n_images=200, n_patients=12)
    weights = resample_weights(runs[0].n_groups, 50, seed=3)
    averaged = SeedAveragedMetrics(runs)(weights)
    per_run = [ReplicateMetrics(run)(weights) for run in runs]
    for name in ("accuracy", "patient_accuracy", "auroc"):
        np.testing.assert_allclose(averaged[name], np.mean([values[name] for values in per_run], axis=0))


def test_identical_seeds_give_the_single_run_interval(make_predictions) -> None:
    run = make_predictions(n_images=200, n_patients=12)
    copy = Predictions(run.probs, run.labels, run.groups, run.patients, class_names=run.class_names, name="copy")
    copies = [run, copy]
    single = bootstrap(run, n_resamples=400, seed=5, method="bca")
    for name, interval in runs_bootstrap(copies, "seeds", n_resamples=400, seed=5, method="bca").items():
        assert interval.low == pytest.approx(single[name].low, abs=1e-12), name
        assert interval.high == pytest.approx(single[name].high, abs=1e-12), name


def test_seed_runs_must_share_the_split(make_predictions) -> None:
    a = make_predictions(n_images=100, n_patients=10, name="a")
    b = make_predictions(n_images=100, n_patients=10, seed=1, name="b")
    with pytest.raises(BreakHisError, match="a vs b: different"):
        runs_bootstrap([a, b], "seeds", n_resamples=10)


def folds_of(make_predictions, k: int = 3) -> list[Predictions]:
    folds = []
    for fold in range(k):
        run = make_predictions(n_images=120, n_patients=10, seed=fold, name=f"fold{fold}")
        prefix = f"f{fold}-"
        folds.append(
            Predictions(
                run.probs,
                run.labels,
                [prefix + g for g in run.groups],
                [prefix + p for p in run.patients],
                class_names=run.class_names,
                images=[prefix + i for i in run.images],
                name=run.name,
            )
        )
    return folds


def test_folds_are_pooled_so_every_image_counts_once(make_predictions) -> None:
    folds = folds_of(make_predictions)
    pooled = pool_folds(folds)
    assert pooled.n_images == sum(f.n_images for f in folds)
    assert pooled.n_groups == sum(f.n_groups for f in folds)
    result = runs_bootstrap(folds, "folds", n_resamples=300, seed=2)
    reference = bootstrap(pooled, n_resamples=300, seed=2)
    assert result == reference
    metrics = ClassificationMetrics(pooled.class_names)
    metrics.update(torch.tensor(pooled.probs), torch.tensor(pooled.labels))
    assert result["accuracy"].estimate == pytest.approx(float(metrics.compute()["accuracy"]))


def test_overlapping_folds_are_refused(make_predictions) -> None:
    folds = folds_of(make_predictions, 2)
    first = folds[0]
    again = Predictions(first.probs, first.labels, first.groups, first.patients, class_names=first.class_names)
    twice = [first, again]
    with pytest.raises(BreakHisError, match=r"predictions: group 'f0-acc\d+' is also in the test set of fold0"):
        runs_bootstrap(twice, "folds")
    second = folds[1]
    other_threshold = Predictions(
        second.probs, second.labels, second.groups, second.patients, class_names=second.class_names, threshold=0.4
    )
    with pytest.raises(BreakHisError, match=r"threshold 0\.4 differs"):
        pool_folds([folds[0], other_threshold])
    with pytest.raises(BreakHisError, match="design: unknown"):
        runs_bootstrap(folds, "kfold")
    with pytest.raises(BreakHisError, match="no runs"):
        runs_bootstrap([], "seeds")
