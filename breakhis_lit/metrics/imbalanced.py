"""G-mean and index balanced accuracy (IBA) as torchmetrics metrics, exactly as imbalanced-learn defines them.

The reference is ``imblearn.metrics.geometric_mean_score`` and
``imblearn.metrics.make_index_balanced_accuracy(alpha=0.1, squared=True)(geometric_mean_score)``, both called
with their default arguments (``average="multiclass"``, ``labels=None``, ``correction=0.0``). With that default
imbalanced-learn works on the *present* classes ``P``: those found in the targets or in the predictions.

* G-mean: the geometric mean of the per-class recalls over ``P``; a recall of exactly 0 is replaced by
  ``correction`` (so, by default, one missed class makes the G-mean 0).
* IBA: ``(1 + alpha * dominance) * gmean**2`` where the dominance is the macro sensitivity minus the macro
  specificity over ``P`` (imbalanced-learn maps ``average="multiclass"`` to ``"macro"`` for the dominance).

Two consequences of imbalanced-learn's definitions are kept on purpose. In the binary case the macro sensitivity
equals the macro specificity, so the default IBA is exactly ``gmean**2``; pass ``average="binary"`` to
``BinaryIBA`` for García et al.'s original dominance ``TPR - TNR``. When only one class is present at all and it is
predicted perfectly, the G-mean is 1 and the IBA ``1 + alpha`` (specificity is 0/0, taken as 0).

All metrics keep sum-reducible stat-score states (see :mod:`breakhis_lit.metrics.stat_scores`), so they synchronise
under DDP and share a compute group with the other stat-score metrics of a ``MetricCollection``.
"""

from typing import Any, Literal

import torch
from torch import Tensor

from breakhis_lit.metrics.stat_scores import (
    BinaryCountMetric,
    ClassCounts,
    MulticlassCountMetric,
    masked_mean,
    safe_divide,
)

BinaryAverage = Literal["multiclass", "binary"]


def geometric_mean_from_counts(counts: ClassCounts, correction: float = 0.0) -> Tensor:
    r"""``imblearn.metrics.geometric_mean_score(average="multiclass")`` from per-class counts.

    .. math:: \text{G-mean} = \Big(\prod_{c \in P} r_c\Big)^{1/|P|}, \quad
        r_c = \begin{cases} \frac{TP_c}{TP_c + FN_c} & \text{if this is } > 0 \\
        \text{correction} & \text{otherwise} \end{cases}, \quad
        P = \{c : TP_c + FP_c + FN_c > 0\}

    Args:
        counts: Per-class one-vs-rest counts.
        correction: Value substituted for a recall of 0 (imbalanced-learn's ``correction``).

    Returns:
        A scalar tensor; 0 when there are no samples.
    """
    present = counts.present
    recall = safe_divide(counts.tp, counts.support)
    recall = torch.where(recall == 0, torch.full_like(recall, correction), recall)
    if not bool(present.any()):
        return recall.new_zeros(())
    recall = recall[present]
    if bool((recall == 0).any()):
        return recall.new_zeros(())
    return torch.exp(torch.log(recall).mean())  # the formula of scipy.stats.gmean


def macro_sensitivity_specificity(counts: ClassCounts) -> tuple[Tensor, Tensor]:
    r"""``sensitivity_specificity_support(average="macro")``: mean TPR and mean TNR over the present classes.

    .. math:: \text{sens} = \frac{1}{|P|} \sum_{c \in P} \frac{TP_c}{TP_c + FN_c}, \qquad
        \text{spec} = \frac{1}{|P|} \sum_{c \in P} \frac{TN_c}{TN_c + FP_c}

    with 0 for a 0/0 ratio, and both 0 when there are no samples.
    """
    present = counts.present
    sensitivity = safe_divide(counts.tp, counts.tp + counts.fn)
    specificity = safe_divide(counts.tn, counts.tn + counts.fp)
    return masked_mean(sensitivity, present), masked_mean(specificity, present)


def binary_sensitivity_specificity(counts: ClassCounts) -> tuple[Tensor, Tensor]:
    r"""``sensitivity_specificity_support(average="binary", pos_label=1)`` from two-class counts.

    ``sens = TP / (TP + FN)`` and ``spec = TN / (TN + FP)`` of class 1, with 0 for a 0/0 ratio; both are 0 when
    class 1 appears neither in the targets nor in the predictions (imbalanced-learn returns ``(0, 0)`` then).
    """
    zero = counts.tp.new_zeros(())
    if not bool(counts.present[1]):
        return zero, zero
    sensitivity = safe_divide(counts.tp[1], counts.tp[1] + counts.fn[1])
    specificity = safe_divide(counts.tn[1], counts.tn[1] + counts.fp[1])
    return sensitivity, specificity


def _check(correction: float, alpha: float = 0.1) -> None:
    if not correction >= 0:
        raise ValueError(f"correction must be >= 0, got {correction}")
    if not isinstance(alpha, (int, float)):
        raise ValueError(f"alpha must be a number, got {alpha!r}")


# imbalanced-learn's G-mean and IBA have no torchmetrics counterpart; these only add a compute to the counts.
class _GMeanIBA:
    """Mixin: the G-mean (``alpha`` None) or its IBA ``(1 + alpha * dominance) * gmean**(2 if squared else 1)``."""

    average: str = "multiclass"  # binary classes: BinaryAverage; multiclass ones: torchmetrics' "macro"
    correction: float = 0.0
    alpha: float | None = None
    squared: bool = True

    def _settings(self, correction: float, alpha: float | None = None, squared: bool = True) -> None:
        _check(correction, 0.1 if alpha is None else alpha)
        self.correction, self.squared = float(correction), bool(squared)
        self.alpha = None if alpha is None else float(alpha)

    def compute(self) -> Tensor:
        """G-mean or IBA of everything seen since the last reset (a float32 scalar)."""
        counts = self.class_counts()  # type: ignore[attr-defined]
        if self.average == "binary":
            sensitivity, specificity = binary_sensitivity_specificity(counts)
            score = torch.sqrt(sensitivity * specificity)
        else:
            sensitivity, specificity = macro_sensitivity_specificity(counts)
            score = geometric_mean_from_counts(counts, self.correction)
        if self.alpha is not None:
            score = (1.0 + self.alpha * (sensitivity - specificity)) * (score**2 if self.squared else score)
        return score.float()


class BinaryGMean(_GMeanIBA, BinaryCountMetric):
    r"""G-mean of a binary classifier, as ``imblearn.metrics.geometric_mean_score``.

    With the default ``average="multiclass"`` (imbalanced-learn's default) it is :func:`geometric_mean_from_counts`,
    ``sqrt(TPR * TNR)`` when both classes are present; with ``average="binary"`` it is ``sqrt(TPR * TNR)`` of class 1
    (0 when class 1 is absent from both targets and predictions; ``correction`` is ignored). Inputs and other
    arguments as :class:`~breakhis_lit.metrics.stat_scores.BinaryCountMetric`.

    Args:
        threshold: Probability above which a sample is predicted positive.
        average: ``"multiclass"`` (imbalanced-learn's default) or ``"binary"``.
        correction: Value substituted for a recall of 0 (``average="multiclass"`` only).
    """

    def __init__(
        self, threshold: float = 0.5, average: BinaryAverage = "multiclass", correction: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(threshold=threshold, **kwargs)
        if average not in ("multiclass", "binary"):
            raise ValueError(f"average must be 'multiclass' or 'binary', got {average!r}")
        self.average = average
        self._settings(correction)


class BinaryIBA(BinaryGMean):
    r"""Index balanced accuracy of the G-mean: ``make_index_balanced_accuracy(alpha, squared)(geometric_mean_score)``.

    .. math:: \text{IBA}_\alpha = (1 + \alpha \cdot \text{Dom}) \cdot \text{G-mean}^2

    With the default ``average="multiclass"`` ``Dom`` is the macro sensitivity minus the macro specificity over the
    present classes, 0 whenever both classes are present, so the IBA equals ``G-mean**2`` (``1 + alpha`` when a
    single class is present and predicted perfectly). With ``average="binary"`` (García et al.),
    ``Dom = TPR - TNR`` of class 1 and ``G-mean = sqrt(TPR * TNR)``. Arguments as :class:`BinaryGMean`, and
    ``alpha`` (weight of the dominance) and ``squared`` (square the G-mean before weighting it).
    """

    plot_upper_bound: float = 1.1

    def __init__(
        self,
        threshold: float = 0.5,
        average: BinaryAverage = "multiclass",
        alpha: float = 0.1,
        squared: bool = True,
        correction: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(threshold, average, correction, **kwargs)
        self._settings(correction, alpha, squared)


class MulticlassGMean(_GMeanIBA, MulticlassCountMetric):
    r"""G-mean of a multiclass classifier, as ``imblearn.metrics.geometric_mean_score`` (``average="multiclass"``).

    See :func:`geometric_mean_from_counts`: a class predicted but absent from the targets has recall 0, so it makes
    the G-mean 0 (or brings in ``correction``); a class absent from both targets and predictions is left out.
    Inputs and other arguments as :class:`~breakhis_lit.metrics.stat_scores.MulticlassCountMetric`.
    """

    def __init__(self, num_classes: int, correction: float = 0.0, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, **kwargs)
        self._settings(correction)


class MulticlassIBA(MulticlassGMean):
    r"""Index balanced accuracy of the G-mean: ``make_index_balanced_accuracy(alpha, squared)(geometric_mean_score)``.

    The G-mean is :class:`MulticlassGMean`'s; the dominance is the macro sensitivity minus the macro specificity
    over the present classes (imbalanced-learn turns ``average="multiclass"`` into ``"macro"`` there).
    Arguments as :class:`MulticlassGMean`, and ``alpha`` and ``squared`` as :class:`BinaryIBA`.
    """

    plot_upper_bound: float = 1.1

    def __init__(
        self, num_classes: int, alpha: float = 0.1, squared: bool = True, correction: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(num_classes, correction, **kwargs)
        self._settings(correction, alpha, squared)
