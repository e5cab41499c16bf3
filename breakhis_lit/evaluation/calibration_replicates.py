"""Expected calibration error and Brier score of one run for any batch of resampling weights, from per-unit sums."""

import numpy as np
import torch

from breakhis_lit.stats.calibration import N_BINS
from breakhis_lit.stats.predictions import Predictions
from breakhis_lit.stats.replicates import Unit

CALIBRATION_METRICS: tuple[str, ...] = ("ece", "brier")
"""The calibration metrics of an evaluation, in order."""


class CalibrationReplicates:
    r"""ECE (l1, torchmetrics' bins) and Brier score of one run's predictions under a batch of unit weights.

    What is binned follows :func:`~breakhis_lit.stats.expected_calibration_error`: binary tasks bin the probability
    of class 1 against the frequency of class 1, multiclass tasks the top-class confidence against accuracy.
    torchmetrics' bins are ``torch.bucketize(confidence, linspace(0, 1, n_bins + 1), right=True) - 1`` (a
    confidence of exactly 1 gets a bin of its own), and its l1 ECE is
    :math:`\sum_b |\sum_{i \in b} (c_i - a_i)| / N`, so per-unit sums of ``c - a`` per bin, of squared errors and
    of images give both metrics for every weighting by matrix products (as
    :class:`~breakhis_lit.stats.replicates.ReplicateMetrics` does for the other metrics).

    Args:
        pred: The run's predictions.
        unit: ``"group"`` or ``"image"``.
        n_bins: Bins of the ECE.
        suffix: Appended to the metric names (``"ece_calibrated"`` for ``suffix="_calibrated"``).
    """

    def __init__(self, pred: Predictions, unit: Unit = "group", n_bins: int = N_BINS, suffix: str = "") -> None:
        units = pred.group_codes if unit == "group" else np.arange(pred.n_images)
        self.n_units = int(units.max()) + 1
        self.names = [f"{name}{suffix}" for name in CALIBRATION_METRICS]
        probs32, labels = pred.probs32, pred.labels
        if pred.binary:
            confidence, hit = probs32[:, 1], (labels == 1).astype(np.float64)
            squared = (pred.probs[:, 1] - (labels == 1)) ** 2
        else:
            confidence = probs32.max(axis=1)
            hit = (probs32.argmax(axis=1) == labels).astype(np.float64)
            squared = np.sum((pred.probs - np.eye(pred.num_classes)[labels]) ** 2, axis=1)
        edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32).double().numpy()
        bins = np.searchsorted(edges, confidence, side="right") - 1  # n_bins + 1 bins, as torchmetrics
        self._gap = np.zeros((self.n_units, n_bins + 1))
        np.add.at(self._gap, (units, bins), confidence - hit)
        self._squared = np.bincount(units, weights=squared, minlength=self.n_units)
        self._images = np.bincount(units, minlength=self.n_units).astype(np.float64)

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """``{ece, brier: [B]}`` for unit weights ``[B, U]``."""
        w = np.asarray(weights, dtype=np.float64)
        images = w @ self._images
        with np.errstate(invalid="ignore", divide="ignore"):
            ece = np.abs(w @ self._gap).sum(axis=1) / images
            brier = w @ self._squared / images
        return dict(zip(self.names, (ece, brier), strict=True))
