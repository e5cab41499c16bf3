"""Paired bootstrap differences: a model against itself, against the package's metrics, scipy, and refusals."""

import numpy as np
import pytest
from scipy.stats import bootstrap as scipy_bootstrap

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats import Predictions, ReplicateMetrics, bootstrap_p_value, paired_bootstrap


def other_model(pred: Predictions, seed: int, name: str = "b") -> Predictions:
    """Another model's predictions on the same images: a noisier copy of ``pred``'s probabilities."""
    rng = np.random.default_rng(seed)
    logits = np.log(np.clip(pred.probs, 1e-6, 1)) + rng.normal(0, 1.0, pred.probs.shape)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return Predictions(
        probs, pred.labels, pred.groups, pred.patients, class_names=pred.class_names, images=pred.images, name=name
    )


@pytest.mark.parametrize("method", ["percentile", "expanded", "bca"])
@pytest.mark.parametrize("num_classes", [2, 8])
def test_model_against_itself(make_predictions, method: str, num_classes: int) -> None:
    a = make_predictions(num_classes, n_images=300, n_patients=24)
    for name, diff in paired_bootstrap(a, a, n_resamples=300, method=method).items():
        assert diff.difference.estimate == 0.0, name
        assert (diff.difference.low, diff.difference.high) == (0.0, 0.0), name
        assert diff.p_value == 1.0, name
        assert diff.estimate_a == diff.estimate_b


def test_difference_equals_the_metrics_difference(make_predictions) -> None:
    a = make_predictions(2, n_images=300, n_patients=20, name="a")
    b = other_model(a, seed=1)
    result = paired_bootstrap(a, b, n_resamples=200)
    ea, eb = ReplicateMetrics(a).estimate(), ReplicateMetrics(b).estimate()
    for name, diff in result.items():
        assert diff.estimate_a == pytest.approx(ea[name])
        assert diff.difference.estimate == pytest.approx(ea[name] - eb[name])
        assert diff.to_dict()["difference"]["unit"] == "group"


def test_same_draws_as_scipy_paired_statistic(make_predictions) -> None:
    # scipy resamples the group indices once per replicate and the statistic evaluates both models on them.
    a = make_predictions(2, n_images=300, n_patients=24, name="a")
    b = other_model(a, seed=2)
    ra, rb = ReplicateMetrics(a, metrics=["auroc"]), ReplicateMetrics(b, metrics=["auroc"])

    def statistic(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        indices = np.asarray(indices).astype(int)
        flat = indices.reshape(-1, indices.shape[-1])
        counts = np.stack([np.bincount(row, minlength=a.n_groups) for row in flat])
        return (ra(counts)["auroc"] - rb(counts)["auroc"]).reshape(indices.shape[:-1])

    reference = scipy_bootstrap(
        (np.arange(a.n_groups),),
        statistic,
        n_resamples=400,
        vectorized=True,
        method="percentile",
        rng=np.random.default_rng(11),
    ).confidence_interval
    ours = paired_bootstrap(a, b, n_resamples=400, seed=np.random.default_rng(11), metrics=["auroc"])["auroc"]
    assert ours.difference.low == pytest.approx(reference.low, abs=1e-12)
    assert ours.difference.high == pytest.approx(reference.high, abs=1e-12)


def test_a_clearly_better_model_has_a_small_p_value(make_predictions) -> None:
    a = make_predictions(2, n_images=600, n_patients=30, signal=3.0, name="a")
    b = Predictions(  # always predicts benign
        np.full_like(a.probs, 0.5), a.labels, a.groups, a.patients, class_names=a.class_names, images=a.images
    )
    diff = paired_bootstrap(a, b, n_resamples=999, metrics=["accuracy"])["accuracy"]
    assert diff.difference.low > 0
    assert diff.p_value == pytest.approx(2 / 1000)  # no replicate at or below 0: 2 (1 + 0) / (1 + 999)


def test_bootstrap_p_value_by_hand() -> None:
    replicates = np.array([-0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, np.nan])
    # 7 defined; <= 0: 3, >= 0: 5; p = 2 * min(4/8, 6/8) = 1.0
    assert bootstrap_p_value(replicates) == 1.0
    replicates = np.r_[np.full(97, 0.1), np.full(2, -0.1)]
    assert bootstrap_p_value(replicates) == pytest.approx(2 * 3 / 100)


def test_refusals(make_predictions) -> None:
    a = make_predictions(2, n_images=100, n_patients=10, name="a")
    with pytest.raises(BreakHisError, match="different test images"):
        paired_bootstrap(a, make_predictions(2, n_images=101, n_patients=10, name="b"))
    moved = Predictions(a.probs, a.labels, a.groups, [p + "x" for p in a.patients], class_names=a.class_names)
    with pytest.raises(BreakHisError, match="different patients"):
        paired_bootstrap(a, moved)
    other_task = make_predictions(8, n_images=100, n_patients=10, name="c")
    with pytest.raises(BreakHisError, match="different classes"):
        paired_bootstrap(a, other_task)
    few = make_predictions(8, n_images=100, n_patients=10, name="few")  # 10 patients over 8 classes
    with pytest.raises(BreakHisError, match=r"few: class '.*' has 1 test patient\(s\), fewer than 2"):
        paired_bootstrap(few, few)
