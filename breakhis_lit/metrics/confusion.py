"""Confusion matrices as torchmetrics metrics whose updates never make the host wait for the device.

* :class:`BinaryConfusionCounts` is a binary stat-score metric: its matrix ``[[TN, FP], [FN, TP]]`` comes from the
  ``tp``/``fp``/``tn``/``fn`` states, so in a ``MetricCollection`` it shares the compute group (and the update) of
  the other binary count metrics.
* :class:`MulticlassConfusionCounts` is torchmetrics' ``MulticlassConfusionMatrix`` updated through
  :func:`~breakhis_lit.metrics.stat_scores.confusion_counts` (``scatter_add_``) instead of ``torch.bincount``.

Both return int64 counts, rows the true class, columns the predicted one, and are sum-reduced under DDP.
"""

from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.functional.classification.confusion_matrix import (
    _multiclass_confusion_matrix_format,
    _multiclass_confusion_matrix_tensor_validation,
)

from breakhis_lit.metrics.stat_scores import BinaryCountMetric, confusion_counts


class BinaryConfusionCounts(BinaryCountMetric):
    """Binary confusion matrix ``[[TN, FP], [FN, TP]]`` (int64), equal to ``BinaryConfusionMatrix``.

    Inputs of ``update(preds, target)``: probabilities of the positive class ``[N]`` (predicted positive when
    ``> threshold``) or hard 0/1 predictions, and 0/1 targets ``[N]``.
    """

    higher_is_better: bool | None = None

    def compute(self) -> Tensor:
        """Confusion matrix of everything seen since the last reset."""
        tp, fp, tn, fn = (state.sum() for state in self._final_state())
        return torch.stack([tn, fp, fn, tp]).view(2, 2)


class MulticlassConfusionCounts(MulticlassConfusionMatrix):
    """Multiclass confusion matrix ``[C, C]`` (int64), equal to ``MulticlassConfusionMatrix``.

    Inputs of ``update(preds, target)``: probabilities ``[N, C]`` (the arg-max, first class on ties, is the
    prediction) or class indices ``[N]``, and class-index targets ``[N]``.

    Args:
        num_classes: Number of classes ``C``.
        ignore_index: Target value whose samples are ignored.
        validate_args: Check the arguments and input tensors (costs a device sync per update).
        kwargs: Passed on to ``torchmetrics.Metric``.
    """

    def __init__(
        self, num_classes: int, ignore_index: int | None = None, validate_args: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(num_classes, ignore_index=ignore_index, validate_args=validate_args, **kwargs)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch."""
        if self.validate_args:
            _multiclass_confusion_matrix_tensor_validation(preds, target, self.num_classes, self.ignore_index)
        preds, target = _multiclass_confusion_matrix_format(preds, target, ignore_index=None)
        self.confmat += confusion_counts(preds, target, self.num_classes, self.ignore_index)
