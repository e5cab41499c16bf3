"""Statistics for honest comparisons: patient bootstrap intervals, paired tests, calibration and thresholds."""

from breakhis_lit.stats.across_runs import pool_folds, runs_bootstrap
from breakhis_lit.stats.bootstrap import (
    Resampling,
    ResamplingOptions,
    bootstrap,
    image_bootstrap,
    patient_bootstrap,
    resample_weights,
)
from breakhis_lit.stats.calibration import (
    ReliabilityBins,
    ThresholdChoice,
    brier_score,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from breakhis_lit.stats.delong import DeLong, delong_covariance, delong_test
from breakhis_lit.stats.holm import Holm, holm
from breakhis_lit.stats.interval import Interval
from breakhis_lit.stats.mcnemar import McNemar, mcnemar_test
from breakhis_lit.stats.paired import Difference, bootstrap_p_value, paired_bootstrap
from breakhis_lit.stats.predictions import Predictions
from breakhis_lit.stats.replicates import ReplicateMetrics, metric_names

__all__ = [
    "DeLong",
    "Difference",
    "Holm",
    "Interval",
    "McNemar",
    "Predictions",
    "ReliabilityBins",
    "ReplicateMetrics",
    "Resampling",
    "ResamplingOptions",
    "ThresholdChoice",
    "bootstrap",
    "bootstrap_p_value",
    "brier_score",
    "choose_threshold",
    "delong_covariance",
    "delong_test",
    "expected_calibration_error",
    "fit_temperature",
    "holm",
    "image_bootstrap",
    "mcnemar_test",
    "metric_names",
    "paired_bootstrap",
    "patient_bootstrap",
    "pool_folds",
    "reliability_bins",
    "resample_weights",
    "runs_bootstrap",
]
