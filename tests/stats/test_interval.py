"""Percentile and BCa bounds against scipy.stats.bootstrap computed from the same bootstrap distribution."""

import json
import math

import numpy as np
import pytest
from scipy.stats import bootstrap as scipy_bootstrap

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats import Interval
from breakhis_lit.stats.bootstrap import jackknife_weights, resample_weights
from breakhis_lit.stats.interval import (
    acceleration,
    bootstrap_bounds,
    check_method,
    expanded_levels,
    finite_or_none,
)


class Distribution:
    """Stands in for a BootstrapResult: scipy extends ``bootstrap_distribution`` by n_resamples (here 0)."""

    def __init__(self, values: np.ndarray) -> None:
        self.bootstrap_distribution = values


def skewed_statistic(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    """A ratio of sums of a skewed variable: a statistic whose BCa correction is visible."""
    x = np.exp(sample)
    return np.sum(x**2, axis=axis) / np.sum(x, axis=axis)


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("level", [0.95, 0.8])
def test_bounds_equal_scipy_on_the_same_replicates(method: str, level: float) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, 30)
    weights = resample_weights(len(data), 3000, seed=1)
    # The statistic of a replicate given as counts: the same sample with data[i] repeated weights[i] times.
    replicates = np.array([skewed_statistic(np.repeat(data, w)) for w in weights])
    jackknife = np.array([skewed_statistic(np.repeat(data, w)) for w in jackknife_weights(len(data))])
    low, high, n_valid = bootstrap_bounds(skewed_statistic(data), replicates, method, level, jackknife)
    reference = scipy_bootstrap(
        (data,),
        skewed_statistic,
        n_resamples=0,
        bootstrap_result=Distribution(replicates),
        confidence_level=level,
        method="BCa" if method == "bca" else "percentile",
    ).confidence_interval
    assert n_valid == 3000
    assert low == pytest.approx(reference.low, abs=1e-12)
    assert high == pytest.approx(reference.high, abs=1e-12)


def test_acceleration_formula() -> None:
    # theta = [0, 1, 2, -1] (the NaN is left out), mean 0.5, so d = mean - theta = [0.5, -0.5, -1.5, 1.5]
    theta = np.array([0.0, 1.0, 2.0, -1.0, np.nan])
    d = np.array([0.5, -0.5, -1.5, 1.5])
    assert acceleration(theta) == pytest.approx(np.sum(d**3) / (6 * np.sum(d**2) ** 1.5))
    assert acceleration(np.full(5, 0.3)) == 0.0


def test_undefined_replicates_are_dropped() -> None:
    replicates = np.r_[np.linspace(0, 1, 101), [np.nan] * 9]
    low, high, n_valid = bootstrap_bounds(0.5, replicates, "percentile", 0.9)
    assert n_valid == 101
    assert (low, high) == pytest.approx((0.05, 0.95))
    assert all(math.isnan(v) for v in bootstrap_bounds(math.nan, replicates)[:2])


def test_degenerate_distributions() -> None:
    constant = np.full(200, 0.75)
    jackknife = np.full(10, 0.75)
    for method in ("percentile", "bca"):
        assert bootstrap_bounds(0.75, constant, method, 0.95, jackknife)[:2] == (0.75, 0.75)
    above = np.linspace(0.8, 0.9, 50)  # every replicate above the estimate: BCa levels both 0
    assert bootstrap_bounds(0.7, above, "bca", 0.95, np.linspace(0.6, 0.8, 10))[:2] == (0.8, 0.8)


def test_json_friendly() -> None:
    interval = Interval(finite_or_none(math.nan), None, None, "bca", 0.95, 2000, 0, 25, "group")
    text = json.dumps(interval.to_dict(), allow_nan=False)
    assert json.loads(text)["estimate"] is None


def test_option_refusals() -> None:
    with pytest.raises(BreakHisError, match="method: unknown 'BCa'"):
        check_method("BCa", 0.95, 10)
    with pytest.raises(BreakHisError, match="level"):
        check_method("bca", 95, 10)
    with pytest.raises(BreakHisError, match="n_resamples"):
        check_method("bca", 0.95, 0)


def test_expanded_levels() -> None:
    # 25 units: t(24) 97.5% quantile 2.0639 (tables), times sqrt(25/24) = 2.1065, Phi(-2.1065) = 0.01758.
    low, high = expanded_levels(0.95, 25)
    assert low == pytest.approx(0.01758, abs=1e-5)
    assert high == pytest.approx(1 - low)
    assert expanded_levels(0.95, 100_000)[0] == pytest.approx(0.025, abs=1e-4)  # the percentile interval
    replicates = np.linspace(0, 1, 10_001)
    assert bootstrap_bounds(0.5, replicates, "expanded", 0.95, n_units=25)[:2] == pytest.approx((low, high))
