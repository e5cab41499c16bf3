"""Confusion matrices as torchmetrics metrics whose updates never make the host wait for the device.

* :class:`BinaryConfusionCounts` is a binary stat-score metric: its matrix ``[[TN, FP], [FN, TP]]`` comes from the
  ``tp``/``fp``/``tn``/``fn`` states, so in a ``MetricCollection`` it shares the compute group (and the update) of
  the other binary count metrics.
* :class:`MulticlassConfusionCounts` is torchmetrics' ``MulticlassConfusionMatrix`` updated through
  :func:`~breakhis_lit.metrics.stat_scores.confusion_counts` (``scatter_add_``) instead of ``torch.bincount``.

Both return int64 counts, rows the true class, columns the predicted one, and are sum-reduced under DDP.
"""

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.functional.classification.confusion_matrix import (
    _multiclass_confusion_matrix_format,
    _multiclass_confusion_matrix_tensor_validation,
)

from breakhis_lit.metrics.stat_scores import BinaryCountMetric, confusion_counts


# Not BinaryConfusionMatrix: that keeps a state of its own, outside the binary counts' compute group.
class BinaryConfusionCounts(BinaryCountMetric):
    """Binary confusion matrix ``[[TN, FP], [FN, TP]]`` (int64), equal to ``BinaryConfusionMatrix``."""

    higher_is_better: bool | None = None

    def compute(self) -> Tensor:
        """Confusion matrix of everything seen since the last reset."""
        tp, fp, tn, fn = (state.sum() for state in self._final_state())
        return torch.stack([tn, fp, fn, tp]).view(2, 2)


class MulticlassConfusionCounts(MulticlassConfusionMatrix):
    """Multiclass confusion matrix ``[C, C]`` (int64), equal to ``MulticlassConfusionMatrix``, same arguments.

    Inputs of ``update(preds, target)``: probabilities ``[N, C]`` (the arg-max, first class on ties, is the
    prediction) or class indices ``[N]``, and class-index targets ``[N]``.
    """

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch (torchmetrics' own update counts with torch.bincount, a host read on CUDA)."""
        if self.validate_args:
            _multiclass_confusion_matrix_tensor_validation(preds, target, self.num_classes, self.ignore_index)
        preds, target = _multiclass_confusion_matrix_format(preds, target, ignore_index=None)
        self.confmat += confusion_counts(preds, target, self.num_classes, self.ignore_index)
