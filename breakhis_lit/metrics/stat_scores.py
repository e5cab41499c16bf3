"""Per-class confusion counts from torchmetrics stat-score states, and scikit-learn-exact metrics built on them.

Every metric here subclasses a torchmetrics stat-score metric, so it keeps the four sum-reducible states
``tp``, ``fp``, ``tn``, ``fn`` (synchronised under DDP with ``dist_reduce_fx="sum"``) and only overrides
``compute``. Because the states are identical to those of ``BinaryAccuracy``, ``MulticlassPrecision(average="macro")``
and friends, a ``MetricCollection`` can put all of them in one compute group.

"Present" classes follow scikit-learn's ``labels=None`` convention: the classes that occur in the targets or in the
predictions (``tp + fp + fn > 0``); torchmetrics' macro averages use the same set.

Multiclass counts come from :func:`confusion_counts`, which never makes the host wait for the device.
"""

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics.classification import BinaryStatScores, MulticlassStatScores
from torchmetrics.functional.classification.stat_scores import (
    _multiclass_stat_scores_format,
    _multiclass_stat_scores_tensor_validation,
)


class ClassCounts(NamedTuple):
    """One-vs-rest confusion counts per class, each a float tensor of shape ``[C]``."""

    tp: Tensor
    fp: Tensor
    tn: Tensor
    fn: Tensor

    @property
    def support(self) -> Tensor:
        """Number of samples whose true class is ``c`` (``tp + fn``)."""
        return self.tp + self.fn

    @property
    def present(self) -> Tensor:
        """Boolean mask of classes seen in the targets or the predictions (``tp + fp + fn > 0``)."""
        return (self.tp + self.fp + self.fn) > 0


def confusion_counts(preds: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Confusion matrix ``[C, C]`` (int64; rows true class, columns predicted) of class-index tensors of one shape.

    One ``scatter_add_`` into a fixed-size tensor: torchmetrics' ``torch.bincount`` reads the input's minimum and
    maximum back to the host on CUDA, and dropping ignored samples by a boolean mask is a hidden ``nonzero``; here
    ignored samples count with weight 0. Indices outside ``[0, C)`` are an error (a device-side assert on CUDA).
    """
    target = target.reshape(-1).long()
    flat = target * num_classes + preds.reshape(-1).long()
    if ignore_index is None:
        weight = torch.ones_like(flat)
    else:
        keep = target != ignore_index
        flat, weight = torch.where(keep, flat, 0), keep.long()
    counts = flat.new_zeros(num_classes * num_classes).scatter_add_(0, flat, weight)
    return counts.view(num_classes, num_classes)


def compute_dtype(device: torch.device) -> torch.dtype:
    """Float type used to turn counts into scores: float64, except on MPS, which lacks it."""
    return torch.float32 if device.type == "mps" else torch.float64


def safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Elementwise ``numerator / denominator`` with 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    zero = denominator == 0
    return torch.where(zero, torch.zeros_like(numerator), numerator / torch.where(zero, 1, denominator))


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values[mask]``, or 0 when the mask is empty."""
    count = mask.sum()
    return safe_divide(torch.where(mask, values, 0).sum(), count.to(values.dtype))


def balanced_accuracy_from_counts(counts: ClassCounts) -> Tensor:
    r"""Balanced accuracy exactly as ``sklearn.metrics.balanced_accuracy_score``.

    .. math:: \text{BA} = \frac{1}{|K|} \sum_{c \in K} \frac{TP_c}{TP_c + FN_c},
        \qquad K = \{c : TP_c + FN_c > 0\}

    Classes absent from the targets are left out (scikit-learn drops their NaN recall), so a class that is only
    predicted does not drag the score down; 0 when there are no samples.
    """
    support = counts.support
    return masked_mean(safe_divide(counts.tp, support), support > 0)


def f1_per_class_from_counts(counts: ClassCounts) -> Tensor:
    r"""F1 of every class taken as the positive one, ``2 TP_c / (2 TP_c + FP_c + FN_c)`` (0 when undefined)."""
    return safe_divide(2 * counts.tp, 2 * counts.tp + counts.fp + counts.fn)


def macro_f1_from_counts(counts: ClassCounts) -> Tensor:
    r"""Macro F1 as ``sklearn.metrics.f1_score(average="macro")``: the mean per-class F1 over present classes."""
    return masked_mean(f1_per_class_from_counts(counts), counts.present)


class _CountScores:
    """Mixin: a stat-score metric whose ``compute`` is ``score`` of its per-class counts, as a float32 tensor."""

    is_differentiable: bool = False
    higher_is_better: bool | None = True
    full_state_update: bool = False
    plot_lower_bound: float = 0.0
    plot_upper_bound: float = 1.0
    score: Callable[[ClassCounts], Tensor]

    def compute(self) -> Tensor:
        """The score of everything seen since the last reset."""
        return self.score(self.class_counts()).float()  # type: ignore[attr-defined]


class BinaryCountMetric(_CountScores, BinaryStatScores):
    """Binary stat scores (torchmetrics' update) whose ``compute`` works on per-class counts ``[negative, positive]``.

    Inputs of ``update(preds, target)``: probabilities of the positive class ``[N]`` (predicted positive when
    ``> threshold``, like every torchmetrics binary metric) or hard 0/1 predictions, and 0/1 targets ``[N]``.
    Arguments as ``BinaryStatScores`` (``validate_args`` costs a device sync per update).
    """

    def class_counts(self) -> ClassCounts:
        """Per-class one-vs-rest counts; index 0 is the negative class, index 1 the positive one."""
        tp, fp, tn, fn = (state.sum().to(compute_dtype(state.device)) for state in self._final_state())
        # For the negative class the roles swap: its TP are our TN, its FP our FN, and so on.
        return ClassCounts(*(torch.stack(pair) for pair in ((tn, tp), (fn, fp), (tp, tn), (fp, fn))))


class MulticlassCountMetric(_CountScores, MulticlassStatScores):
    """Multiclass stat scores (top-1, per-class states) whose ``compute`` works on per-class counts.

    Inputs of ``update(preds, target)``: probabilities ``[N, C]`` (the arg-max is the prediction) or class indices
    ``[N]``, and class-index targets ``[N]``. Arguments as ``MulticlassStatScores`` with its defaults (top-1,
    ``average="macro"``, which keeps one count per class); ``validate_args`` costs a device sync per update.
    """

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate the per-class counts of a batch, from :func:`confusion_counts`."""
        # torchmetrics' own update counts with torch.bincount, which reads the input's range back to the host.
        if self.validate_args:
            _multiclass_stat_scores_tensor_validation(
                preds, target, self.num_classes, self.multidim_average, self.ignore_index
            )
        preds, target = _multiclass_stat_scores_format(preds, target, self.top_k)
        confmat = confusion_counts(preds, target, self.num_classes, self.ignore_index)
        tp = confmat.diagonal()
        fp = confmat.sum(0) - tp
        fn = confmat.sum(1) - tp
        self._update_state(tp, fp, confmat.sum() - (tp + fp + fn), fn)

    def class_counts(self) -> ClassCounts:
        """Per-class one-vs-rest counts, each of shape ``[C]``."""
        return ClassCounts(*(state.to(compute_dtype(state.device)) for state in self._final_state()))


# torchmetrics has no balanced accuracy; MulticlassRecall(average="macro") also averages classes only predicted.
class BinaryBalancedAccuracy(BinaryCountMetric):
    """Balanced accuracy for binary tasks (:func:`balanced_accuracy_from_counts`); with one target class, its recall."""

    score = staticmethod(balanced_accuracy_from_counts)


class MulticlassBalancedAccuracy(MulticlassCountMetric):
    """Balanced accuracy (:func:`balanced_accuracy_from_counts`): leaves out classes only predicted, not in targets."""

    score = staticmethod(balanced_accuracy_from_counts)


# BinaryF1Score gives class 1's F1 only; these keep the binary counts' compute group (binary [N] inputs).
class BinaryF1PerClass(BinaryCountMetric):
    """F1 with each class as the positive one, ``[F1_negative, F1_positive]``; ``F1_positive`` is ``BinaryF1Score``."""

    score = staticmethod(f1_per_class_from_counts)


class BinaryMacroF1(BinaryCountMetric):
    """Macro F1 for binary tasks, exactly as ``f1_score(average="macro")`` (see :func:`macro_f1_from_counts`)."""

    score = staticmethod(macro_f1_from_counts)
