"""Every scalar test metric of the package for a batch of resampling weights, from per-unit sufficient statistics."""

from collections.abc import Sequence
from typing import Literal

import numpy as np

from breakhis_lit.errors import BreakHisError
from breakhis_lit.metrics.collection import scalar_names
from breakhis_lit.stats.predictions import Predictions
from breakhis_lit.stats.weighted_auroc import WeightedAUROC

Unit = Literal["group", "image"]
IBA_ALPHA = 0.1
_CHUNK_ELEMENTS = 8_000_000  # largest temporary array per chunk of replicates (float64 entries)


def metric_names(class_names: Sequence[str]) -> list[str]:
    """The metrics a bootstrap reports, in order: those of ``ClassificationMetrics`` and the patient-level two."""
    return [*scalar_names(class_names), "patient_accuracy", "patient_recognition_rate"]


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (the package's zero_division=0)."""
    zero = denominator == 0
    return np.where(zero, 0.0, numerator / np.where(zero, 1.0, denominator))


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the last axis of ``values[mask]``, 0 where the mask is empty."""
    return _safe_divide(np.where(mask, values, 0.0).sum(axis=-1), mask.sum(axis=-1).astype(np.float64))


def finite_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the first axis of the finite entries; NaN where none is."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    return np.where(count > 0, np.where(finite, values, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan)


def count_metrics(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The confusion-count metrics of :class:`~breakhis_lit.metrics.ClassificationMetrics` for many tables.

    Same definitions as :mod:`breakhis_lit.metrics`: scikit-learn's "present classes" (targets or predictions)
    in the macro averages, balanced accuracy over the classes present in the targets, imbalanced-learn's G-mean
    and IBA (``alpha=0.1``, squared, dominance from the macro sensitivity and specificity), 0 for 0/0. Written
    here because it is vectorised over replicates; torchmetrics and imbalanced-learn score one sample per call.

    Args:
        confusion: Counts (or weights) ``[B, C, C]``, rows true class, columns predicted class.
        class_names: The ``C`` class names (for the ``f1_<class>`` keys).

    Returns:
        ``{name: [B] float64}`` for accuracy ... iba.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support = cm.sum(axis=2)
    predicted = cm.sum(axis=1)
    total = support.sum(axis=1)
    fp, fn = predicted - tp, support - tp
    tn = total[:, None] - tp - fp - fn
    present = (tp + fp + fn) > 0
    recall = _safe_divide(tp, support)
    specificity = _safe_divide(tn, tn + fp)
    precision = _safe_divide(tp, tp + fp)
    f1 = _safe_divide(2 * tp, 2 * tp + fp + fn)
    out = {"accuracy": _safe_divide(tp.sum(axis=1), total), "balanced_accuracy": _masked_mean(recall, support > 0)}
    if cm.shape[1] == 2:  # binary: the positive class, index 1
        out.update(precision=precision[:, 1], recall=recall[:, 1], specificity=specificity[:, 1])
    else:
        out.update(
            precision=_masked_mean(precision, present),
            recall=_masked_mean(recall, present),
            specificity=_masked_mean(specificity, present),
        )
    out.update({f"f1_{name}": f1[:, k] for k, name in enumerate(class_names)})
    out["f1_macro"] = _masked_mean(f1, present)
    n_present = present.sum(axis=1)
    any_zero = (present & (recall == 0)).any(axis=1)
    with np.errstate(divide="ignore"):
        log_recall = np.where(present, np.log(np.where(present & (recall > 0), recall, 1.0)), 0.0)
    gmean = np.where((n_present == 0) | any_zero, 0.0, np.exp(_safe_divide(log_recall.sum(axis=1), n_present)))
    dominance = _masked_mean(recall, present) - _masked_mean(specificity, present)
    out["gmean"] = gmean
    out["iba"] = (1.0 + IBA_ALPHA * dominance) * gmean**2
    return out


class ReplicateMetrics:
    """Every scalar metric of one run's predictions for any batch of weights over the resampling units.

    A bootstrap replicate (or a jackknife sample) is a vector of integer weights, one per unit (a split group for
    the patient bootstrap, an image for the image-level one): how often the replicate holds that unit. All
    metrics come from matrix products of the weights with per-unit sufficient statistics computed once: per-unit
    confusion counts for the label metrics, a weighted Mann–Whitney for AUROC (:class:`WeightedAUROC`), and for
    the patient metrics either per-unit sums of fixed patient decisions (when every patient lies in one unit) or
    weighted per-patient sums of probabilities (image units: a patient's mean probability then changes with the
    replicate, and a patient none of whose images is drawn is left out). Written here because
    ``scipy.stats.bootstrap`` resamples observations, not clusters, and calls the metric once per replicate.

    Args:
        pred: The run's predictions.
        unit: ``"group"`` (resample the split groups) or ``"image"``.
        metrics: The metrics to compute (default: all of :func:`metric_names`).

    Raises:
        BreakHisError: On an unknown metric name or fewer than two units.
    """

    def __init__(self, pred: Predictions, unit: Unit = "group", metrics: Sequence[str] | None = None) -> None:
        all_names = metric_names(pred.class_names)
        names = list(all_names if metrics is None else metrics)
        unknown = [name for name in names if name not in all_names]
        if unknown:
            raise BreakHisError(f"metrics: unknown {unknown[0]!r}; choose from {', '.join(all_names)}")
        if unit not in ("group", "image"):
            raise BreakHisError(f"unit must be 'group' or 'image', got {unit!r}")
        self.names = [name for name in all_names if name in names]
        self.pred = pred
        self.unit = unit
        units = pred.group_codes if unit == "group" else np.arange(pred.n_images)
        self.n_units = int(units.max()) + 1
        if self.n_units < 2:
            raise BreakHisError(f"{pred.name}: a bootstrap needs at least 2 {unit}s, got {self.n_units}")
        c = pred.num_classes
        self._per_replicate = self.n_units * c * c  # elements of the per-unit confusion product

        cells = pred.labels * c + pred.preds
        self._confusion = np.zeros((self.n_units, c * c))
        np.add.at(self._confusion, (units, cells), 1.0)

        self._auroc: list[WeightedAUROC] = []
        if "auroc" in self.names:
            if pred.binary:
                self._auroc = [WeightedAUROC(pred.probs32[:, 1], pred.labels == 1, units, self.n_units)]
            else:
                self._auroc = [
                    WeightedAUROC(pred.probs32[:, k], pred.labels == k, units, self.n_units) for k in range(c)
                ]
            self._per_replicate = max(self._per_replicate, 6 * pred.n_images)  # classes run one after another

        self._patients_nested = False
        if "patient_accuracy" in self.names or "patient_recognition_rate" in self.names:
            self._init_patients(units)

    def _init_patients(self, units: np.ndarray) -> None:
        pred = self.pred
        codes, n_patients = pred.patient_codes, pred.n_patients
        correct = pred.recognition_correct().astype(np.float64)
        images = np.bincount(codes, minlength=n_patients).astype(np.float64)
        patient_units = units[np.unique(codes, return_index=True)[1]]
        # Predictions guarantees that groups hold whole patients; an image unit holds one only if it is alone.
        self._patients_nested = self.unit == "group" or bool(np.all(images == 1))
        if self._patients_nested:
            patient_label, decision = pred.patient_decisions()
            score = np.bincount(codes, weights=correct, minlength=n_patients) / images
            self._patient_correct = np.bincount(
                patient_units, weights=(decision == patient_label).astype(np.float64), minlength=self.n_units
            )
            self._patient_count = np.bincount(patient_units, minlength=self.n_units).astype(np.float64)
            self._patient_score = np.bincount(patient_units, weights=score, minlength=self.n_units)
        else:
            order = np.argsort(codes, kind="stable")
            self._starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
            self._sorted_units = units[order]
            self._sorted_probs = pred.probs[order]
            self._sorted_correct = correct[order]
            self._patient_label = pred.labels[order][self._starts]
            self._per_replicate = max(self._per_replicate, pred.n_images * (pred.num_classes + 2))

    def _patient_metrics(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._patients_nested:
            count = w @ self._patient_count
            return w @ self._patient_correct / count, w @ self._patient_score / count
        image_weights = w[:, self._sorted_units]
        count = np.add.reduceat(image_weights, self._starts, axis=1)  # [B, P]
        sums = np.add.reduceat(image_weights[:, :, None] * self._sorted_probs[None], self._starts, axis=1)
        present = count > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums / count[:, :, None]
            if self.pred.binary:
                decision = (mean[:, :, 1] >= self.pred.threshold).astype(np.int64)
            else:
                decision = mean.argmax(axis=2)
            score = np.add.reduceat(image_weights * self._sorted_correct, self._starts, axis=1) / count
        n_present = present.sum(axis=1)
        accuracy = (present & (decision == self._patient_label)).sum(axis=1) / n_present
        recognition = np.where(present, score, 0.0).sum(axis=1) / n_present
        return accuracy, recognition

    def _chunk(self, w: np.ndarray) -> dict[str, np.ndarray]:
        c = self.pred.num_classes
        out = count_metrics((w @ self._confusion).reshape(-1, c, c), self.pred.class_names)
        if self._auroc:
            with np.errstate(invalid="ignore"):
                out["auroc"] = finite_mean(np.stack([auroc(w) for auroc in self._auroc]))
        if "patient_accuracy" in self.names or "patient_recognition_rate" in self.names:
            out["patient_accuracy"], out["patient_recognition_rate"] = self._patient_metrics(w)
        return {name: out[name] for name in self.names}

    def __call__(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Every requested metric for every row of ``weights``.

        Args:
            weights: Non-negative unit weights ``[B, U]`` (integer counts for a bootstrap; 0/1 for a jackknife).

        Returns:
            ``{name: [B] float64}``; NaN where a metric is undefined (AUROC without both classes).
        """
        w = np.asarray(weights)
        if w.ndim != 2 or w.shape[1] != self.n_units:
            raise ValueError(f"weights must have shape [B, {self.n_units}], got {w.shape}")
        step = max(1, _CHUNK_ELEMENTS // self._per_replicate)
        chunks = [self._chunk(w[i : i + step].astype(np.float64)) for i in range(0, len(w), step)]
        return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in self.names}

    def estimate(self) -> dict[str, float]:
        """Every requested metric on the full sample (each unit once)."""
        return {name: float(value[0]) for name, value in self(np.ones((1, self.n_units))).items()}
