"""Metrics: imbalanced-learn's G-mean and IBA as torchmetrics, the per-stage collection, patient-level scores."""

from breakhis_lit.metrics.auroc import BinaryExactAUROC, MulticlassExactAUROC
from breakhis_lit.metrics.collection import ClassificationMetrics
from breakhis_lit.metrics.confusion import BinaryConfusionCounts, MulticlassConfusionCounts
from breakhis_lit.metrics.imbalanced import BinaryGMean, BinaryIBA, MulticlassGMean, MulticlassIBA
from breakhis_lit.metrics.patient import patient_level_metrics
from breakhis_lit.metrics.stat_scores import (
    BinaryBalancedAccuracy,
    BinaryF1PerClass,
    BinaryMacroF1,
    MulticlassBalancedAccuracy,
    confusion_counts,
)

__all__ = [
    "BinaryBalancedAccuracy",
    "BinaryConfusionCounts",
    "BinaryExactAUROC",
    "BinaryF1PerClass",
    "BinaryGMean",
    "BinaryIBA",
    "BinaryMacroF1",
    "ClassificationMetrics",
    "MulticlassBalancedAccuracy",
    "MulticlassConfusionCounts",
    "MulticlassExactAUROC",
    "MulticlassGMean",
    "MulticlassIBA",
    "confusion_counts",
    "patient_level_metrics",
]
