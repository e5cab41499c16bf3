"""Paired comparisons over pairs of runs: one pair is the statistics library's tests; several pairs average."""

import numpy as np
import pytest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.evaluation.paired_runs import compare_pairs, shared_images
from breakhis_lit.stats import delong_test, mcnemar_test, paired_bootstrap

from .conftest import random_predictions

OPTIONS = {"n_resamples": 400, "seed": 5, "level": 0.95, "method": "bca"}


def test_one_pair_is_paired_bootstrap_mcnemar_and_delong() -> None:
    a, b = random_predictions(seed=1), random_predictions(seed=2)
    b = type(b)(b.probs, a.labels, a.groups, a.patients, class_names=a.class_names, images=a.images, name="b")
    result = compare_pairs([(a, b)], metrics=["accuracy", "auroc"], **OPTIONS)
    assert result.differences == paired_bootstrap(a, b, metrics=["accuracy", "auroc"], **OPTIONS)
    assert result.mcnemar_patient == mcnemar_test(a, b, "patient")
    assert result.mcnemar_image == mcnemar_test(a, b, "image")
    assert result.delong == delong_test(a, b)
    assert (result.n_pairs, result.n_groups, result.n_images) == (1, a.n_groups, a.n_images)


def _pair(seed: int) -> tuple:
    a = random_predictions(seed=seed)
    logits = np.log(a.probs) + np.random.default_rng(seed + 100).normal(0, 1.0, a.probs.shape)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    b = type(a)(probs, a.labels, a.groups, a.patients, class_names=a.class_names, images=a.images, name=f"b{seed}")
    return a, b


def test_several_pairs_average_and_a_model_against_itself_is_zero() -> None:
    pairs = [_pair(1), _pair(2)]
    result = compare_pairs(pairs, metrics=["accuracy", "patient_accuracy"], **OPTIONS)
    single = [compare_pairs([pair], metrics=["accuracy"], **OPTIONS).differences["accuracy"] for pair in pairs]
    found = result.differences["accuracy"]
    assert found.difference.estimate == pytest.approx(np.mean([d.difference.estimate for d in single]))
    assert found.estimate_a == pytest.approx(np.mean([d.estimate_a for d in single]))
    assert result.n_pairs == 2
    assert result.mcnemar_image.only_a == sum(mcnemar_test(a, b, "image").only_a for a, b in pairs)
    same = compare_pairs([(a, a) for a, _ in pairs], metrics=["accuracy", "auroc"], **OPTIONS)
    for name in ("accuracy", "auroc"):
        assert same.differences[name].difference.estimate == 0
        assert (same.differences[name].difference.low, same.differences[name].difference.high) == (0, 0)
        assert same.differences[name].p_value == 1
    assert same.mcnemar_patient.p_value == 1
    assert same.delong.p_value == 1


def test_shared_images_keeps_the_images_both_runs_hold() -> None:
    a = random_predictions(seed=3)
    b = a.subset(np.arange(a.n_images)[::-1][: a.n_images // 2])
    sub_a, sub_b = shared_images(a, b)
    assert sub_a.images == tuple(image for image in a.images if image in set(b.images))
    assert set(sub_b.images) == set(sub_a.images)
    with pytest.raises(BreakHisError, match="no test image in common"):
        shared_images(a.subset(np.arange(10)), a.subset(np.arange(10, 20)))


def test_pairs_on_different_images_are_refused() -> None:
    a, b = random_predictions(seed=1), random_predictions(seed=1, n_images=299)
    with pytest.raises(BreakHisError, match="different test images"):
        compare_pairs([(a, b)], **OPTIONS)
