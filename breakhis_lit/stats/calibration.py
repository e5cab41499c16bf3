"""Calibration of predicted probabilities (ECE, Brier, reliability bins, temperature) and the binary threshold."""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torchmetrics.classification import BinaryCalibrationError, MulticlassCalibrationError

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stats.interval import finite_or_none

N_BINS = 15
_TEMPERATURE_BOUNDS = (math.log(1e-2), math.log(1e2))  # searched over log T


def _inputs(probs: Any, labels: Any, what: str = "probs") -> tuple[np.ndarray, np.ndarray]:
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] == 0 or not np.issubdtype(p.dtype, np.floating):
        raise BreakHisError(f"{what}: must be a float array [N>0, C>=2], got shape {p.shape} {p.dtype}")
    if y.shape != (p.shape[0],) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise BreakHisError(f"labels: must be {p.shape[0]} class indices in [0, {p.shape[1] - 1}]")
    return p, y.astype(np.int64)


def _probabilities(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p, y = _inputs(probs, labels)
    if not np.all((p >= 0) & (p <= 1)) or np.any(np.abs(p.sum(axis=1) - 1) > 1e-3):
        raise BreakHisError("probs: must be class probabilities (in [0, 1], rows summing to 1); apply softmax")
    return p, y


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """Expected calibration error (l1, equal-width bins) with torchmetrics.

    Binary (two classes): ``BinaryCalibrationError`` of the probability of class 1 against the frequency of
    class 1. Multiclass: ``MulticlassCalibrationError`` of the top-class confidence against accuracy. torchmetrics
    bins ``[k/n, (k+1)/n)`` and gives a confidence of exactly 1 a bin of its own.

    Args:
        probs: Class probabilities ``[N, C]``.
        labels: True class indices ``[N]``.
        n_bins: Number of bins.

    Returns:
        The ECE.

    Raises:
        BreakHisError: On inputs that are not probabilities and class indices.
    """
    p, y = _probabilities(probs, labels)
    preds, target = torch.from_numpy(p.astype(np.float32)), torch.from_numpy(y)
    if p.shape[1] == 2:
        metric = BinaryCalibrationError(n_bins=n_bins, norm="l1")
        return float(metric(preds[:, 1], target))
    metric = MulticlassCalibrationError(num_classes=p.shape[1], n_bins=n_bins, norm="l1")
    return float(metric(preds, target))


def brier_score(probs: Any, labels: Any) -> float:
    r"""Brier score, as ``sklearn.metrics.brier_score_loss``.

    Binary: :math:`\frac1N \sum_i (p_{i1} - [y_i = 1])^2`, the squared error of the probability of class 1.
    Multiclass: :math:`\frac1N \sum_i \sum_c (p_{ic} - [y_i = c])^2` (Brier's original definition, in [0, 2]).
    Written here because scikit-learn warns on rows that sum to 1 only up to the rounding of ``predictions.csv``.

    Raises:
        BreakHisError: On inputs that are not probabilities and class indices.
    """
    p, y = _probabilities(probs, labels)
    p = p.astype(np.float64)
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - (y == 1)) ** 2))
    return float(np.mean(np.sum((p - np.eye(p.shape[1])[y]) ** 2, axis=1)))


@dataclass(frozen=True)
class ReliabilityBins:
    """The bins of a reliability diagram.

    Attributes:
        edges: ``n_bins + 1`` bin edges from 0 to 1.
        confidence: Mean confidence per bin (None for an empty bin).
        accuracy: Observed frequency per bin: of class 1 (binary) or of a correct top class (None if empty).
        count: Images per bin.
        ece: The torchmetrics ECE of the same predictions (:func:`expected_calibration_error`).
        kind: ``"positive"`` (binary: probability of class 1) or ``"top"`` (multiclass: top-class confidence).
    """

    edges: list[float]
    confidence: list[float | None]
    accuracy: list[float | None]
    count: list[int]
    ece: float
    kind: str


def reliability_bins(probs: Any, labels: Any, n_bins: int = N_BINS) -> ReliabilityBins:
    """Per-bin confidence, observed frequency and count for a reliability diagram.

    Bins are ``[k/n, (k+1)/n)`` with the last one closed, so a confidence of exactly 1 falls into the last bin
    (torchmetrics' ECE gives it a bin of its own; the two agree unless some confidence is exactly 1). What is
    binned follows :func:`expected_calibration_error`. Written here because torchmetrics does not return its bins.

    Raises:
        BreakHisError: On inputs that are not probabilities and class indices, or ``n_bins < 1``.
    """
    if n_bins < 1:
        raise BreakHisError(f"n_bins: must be at least 1 (15 is usual); got {n_bins}")
    p, y = _probabilities(probs, labels)
    p32 = p.astype(np.float32).astype(np.float64)
    if p.shape[1] == 2:
        confidence, hit, kind = p32[:, 1], (y == 1).astype(np.float64), "positive"
    else:
        confidence, kind = p32.max(axis=1), "top"
        hit = (p32.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / count
        frequency = np.bincount(index, weights=hit, minlength=n_bins) / count
    return ReliabilityBins(
        edges=[float(e) for e in edges],
        confidence=[finite_or_none(v) for v in mean_confidence],
        accuracy=[finite_or_none(v) for v in frequency],
        count=[int(c) for c in count],
        ece=expected_calibration_error(p, y, n_bins),
        kind=kind,
    )


@dataclass(frozen=True)
class ThresholdChoice:
    """A binary decision threshold chosen on validation predictions.

    Attributes:
        threshold: Predict class 1 when ``probs[:, 1] > threshold``.
        balanced_accuracy: The validation balanced accuracy it reaches (the maximum).
    """

    threshold: float
    balanced_accuracy: float


def choose_threshold(probs: Any, labels: Any) -> ThresholdChoice:
    """The threshold on the probability of class 1 that maximises validation balanced accuracy.

    Decisions follow the package's rule ``probs[:, 1] > threshold`` (on float32 probabilities). Every distinct
    decision rule is one gap between consecutive distinct validation scores (plus "all positive" below the
    lowest and "all negative" above the highest); a gap is represented by its midpoint (the lowest score's
    gap by the midpoint of ``[0, lowest)``, the highest's by that of ``[highest, 1]``). Tie rule: among gaps of
    maximal balanced accuracy, the midpoint closest to 0.5 (the package's default threshold), and of two
    equally close, the lower one. Written as one sort and cumulative counts rather than a metric call per
    candidate threshold.

    Args:
        probs: Validation probabilities ``[N, 2]``.
        labels: Validation labels ``[N]`` (0/1); both classes must occur.

    Returns:
        The :class:`ThresholdChoice`.

    Raises:
        BreakHisError: On a multiclass task or validation labels of a single class.
    """
    p, y = _probabilities(probs, labels)
    if p.shape[1] != 2:
        raise BreakHisError(f"choose_threshold: binary tasks only, got {p.shape[1]} classes")
    positives, negatives = int((y == 1).sum()), int((y == 0).sum())
    if positives == 0 or negatives == 0:
        raise BreakHisError("choose_threshold: the validation labels hold one class; both are needed")
    score = p.astype(np.float32)[:, 1].astype(np.float64)
    values = np.unique(score)  # sorted distinct scores
    # Gap k (k = 0..len(values)): threshold in [values[k-1], values[k]); predicts positive the scores >= values[k].
    pos_at = np.bincount(np.searchsorted(values, score[y == 1]), minlength=len(values))
    neg_at = np.bincount(np.searchsorted(values, score[y == 0]), minlength=len(values))
    tp = positives - np.concatenate([[0], np.cumsum(pos_at)])
    tn = np.concatenate([[0], np.cumsum(neg_at)])
    balanced = (tp / positives + tn / negatives) / 2
    lower = np.concatenate([[0.0], values])
    upper = np.concatenate([values, [1.0]])
    midpoint = (lower + upper) / 2
    feasible = np.ones(len(midpoint), dtype=bool)
    feasible[0] = values[0] > 0  # "all positive" needs a threshold below the lowest score
    best = balanced[feasible].max()
    candidates = np.flatnonzero(feasible & (balanced >= best - 1e-12))
    distance = np.round(np.abs(midpoint[candidates] - 0.5), 12)  # 0.3 and 0.7 are equally close
    chosen = candidates[np.lexsort((midpoint[candidates], distance))[0]]
    threshold = float(midpoint[chosen])
    if chosen < len(values) and np.float32(threshold) >= upper[chosen]:
        threshold = float(lower[chosen])  # a one-ulp gap: its midpoint rounds (float32) onto the next score
    return ThresholdChoice(threshold=threshold, balanced_accuracy=float(balanced[chosen]))


def fit_temperature(logits: Any, labels: Any) -> float:
    """Temperature ``T`` minimising the validation negative log-likelihood of ``softmax(logits / T)``.

    Log-probabilities give the same temperature as the logits (softmax ignores a per-row shift). The search is
    a bounded scalar minimisation over ``log T`` in ``[log 0.01, log 100]`` (``scipy.optimize.minimize_scalar``).

    Args:
        logits: Validation logits or log-probabilities ``[N, C]``.
        labels: Validation class indices ``[N]``.

    Returns:
        The temperature (divide test logits by it before the softmax).

    Raises:
        BreakHisError: On inputs that are not finite logits and class indices.
    """
    z, y = _inputs(logits, labels, "logits")
    z = z.astype(np.float64)
    if not np.all(np.isfinite(z)):
        raise BreakHisError("logits: must be finite; pass logits or log-probabilities without -inf (clip them)")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-np.mean(log_softmax(z / math.exp(log_t), axis=1)[rows, y]))

    result = minimize_scalar(nll, bounds=_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-7})
    return float(math.exp(result.x))
