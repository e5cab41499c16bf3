"""Per-stage classification metrics of the paper (accuracy, F1 per class, G-mean, IBA, AUROC, ...) in one module."""

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryPrecision,
    BinaryRecall,
    BinarySpecificity,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassSpecificity,
)

from breakhis_lit.metrics.auroc import BinaryExactAUROC, MulticlassExactAUROC
from breakhis_lit.metrics.confusion import BinaryConfusionCounts, MulticlassConfusionCounts
from breakhis_lit.metrics.imbalanced import BinaryGMean, BinaryIBA, MulticlassGMean, MulticlassIBA
from breakhis_lit.metrics.stat_scores import (
    BinaryBalancedAccuracy,
    BinaryF1PerClass,
    BinaryMacroF1,
    MulticlassBalancedAccuracy,
)

_F1_PER_CLASS = "f1_per_class"  # internal vector metric, split into f1_<class> keys by compute()
_CONFUSION = "confusion_matrix"  # internal matrix metric, returned by confusion_matrix(), not by compute()
_PROB_SUM_TOLERANCE = 1e-3


def scalar_names(class_names: Sequence[str]) -> list[str]:
    """The keys of :meth:`ClassificationMetrics.compute`, in order, without the prefix."""
    names = ["accuracy", "balanced_accuracy", "precision", "recall", "specificity"]
    return [*names, *(f"f1_{name}" for name in class_names), "f1_macro", "gmean", "iba", "auroc"]


class ClassificationMetrics(nn.Module):
    """The scalar metrics of one stage (train/val/test) plus its confusion matrix, DDP-synchronised.

    ``compute()`` returns, in this order (each key prefixed with ``prefix``):

    * ``accuracy``: fraction of correct predictions.
    * ``balanced_accuracy``: mean recall over the classes present in the targets (``balanced_accuracy_score``).
    * ``precision``, ``recall`` (sensitivity), ``specificity``: binary task, those of the positive class, index 1
      (malignant); multiclass, their macro averages over the classes present in targets or predictions.
    * ``f1_<class name>`` for every class: F1 with that class as the positive one (the paper's F1 benign/malignant).
    * ``f1_macro``: mean of the per-class F1 over present classes (``f1_score(average="macro")``).
    * ``gmean``, ``iba``: imbalanced-learn's ``geometric_mean_score`` and
      ``make_index_balanced_accuracy(alpha=0.1, squared=True)(geometric_mean_score)`` with default arguments
      (see :mod:`breakhis_lit.metrics.imbalanced`; for two classes the IBA equals ``gmean**2``).
    * ``auroc``: exact ROC AUC (binary: of ``probs[:, 1]``; multiclass: one-vs-rest macro over the classes present
      in the targets); NaN when undefined.

    Predictions: binary, ``probs[:, 1] > threshold`` (the torchmetrics rule; with threshold 0.5 it is the arg-max,
    ties going to class 0); multiclass, the arg-max (first class on ties). Label-based metrics share one
    compute group, so the counts are accumulated once (binary: the confusion matrix too, from the same counts).
    No update reads a value back from the device (no ``torch.bincount``, no boolean masks; see
    :func:`~breakhis_lit.metrics.stat_scores.confusion_counts`), except the value check of ``validate``. Every state
    is sum- or cat-reduced, so ``compute()`` and ``confusion_matrix()`` give the global values under DDP; call them
    on every rank.

    Args:
        class_names: Class names in class-index order, e.g. ``["benign", "malignant"]``; at least two, unique.
        prefix: Prepended to every key of ``compute()``, e.g. ``"val/"``.
        threshold: Binary task only: probability of class 1 above which a sample is predicted class 1.
        validate: When ``update`` checks that the values are probabilities (in [0, 1], rows summing to 1) and valid
            class indices, which costs one device-to-host sync: ``"first"`` (default) on the first batch after each
            reset, i.e. once per stage and epoch, enough to catch logits passed as probabilities; ``"every"`` on
            every batch; ``"none"`` never. Shapes and dtypes are always checked (free).
    """

    def __init__(
        self,
        class_names: Sequence[str],
        prefix: str = "",
        threshold: float = 0.5,
        validate: Literal["first", "every", "none"] = "first",
    ) -> None:
        super().__init__()
        names = [str(name) for name in class_names]
        if len(names) < 2:
            raise ValueError(f"class_names needs at least two classes, got {names}")
        if len(set(names)) != len(names) or any(not name for name in names):
            raise ValueError(f"class_names must be unique and non-empty, got {names}")
        if "macro" in names:
            raise ValueError("class_names: a class named 'macro' would clash with the f1_macro key; rename it")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.class_names = names
        self.prefix = prefix
        self.threshold = float(threshold)
        if validate not in ("first", "every", "none"):
            raise ValueError(f"validate must be 'first', 'every' or 'none', got {validate!r}")
        self.validate = validate
        self._values_checked = False
        self.binary = len(names) == 2

        # Inputs are checked in update(), so the torchmetrics checks (and their device syncs) are switched off.
        metrics: dict[str, Metric]
        if self.binary:
            kw = {"threshold": self.threshold, "validate_args": False}
            metrics = {
                "accuracy": BinaryAccuracy(**kw),
                "balanced_accuracy": BinaryBalancedAccuracy(**kw),
                "precision": BinaryPrecision(**kw),
                "recall": BinaryRecall(**kw),
                "specificity": BinarySpecificity(**kw),
                _F1_PER_CLASS: BinaryF1PerClass(**kw),
                "f1_macro": BinaryMacroF1(**kw),
                "gmean": BinaryGMean(**kw),
                "iba": BinaryIBA(**kw),
                _CONFUSION: BinaryConfusionCounts(**kw),
                "auroc": BinaryExactAUROC(validate_args=False),
            }
            # All but auroc keep the same binary tp/fp/tn/fn states (torchmetrics' binary update has no host read).
            groups = [[name for name in metrics if name != "auroc"], ["auroc"]]
        else:
            kw = {"num_classes": len(names), "validate_args": False}
            metrics = {
                "accuracy": MulticlassAccuracy(average="micro", **kw),
                "balanced_accuracy": MulticlassBalancedAccuracy(**kw),
                "precision": MulticlassPrecision(average="macro", **kw),
                "recall": MulticlassRecall(average="macro", **kw),
                "specificity": MulticlassSpecificity(average="macro", **kw),
                _F1_PER_CLASS: MulticlassF1Score(average=None, **kw),
                "f1_macro": MulticlassF1Score(average="macro", **kw),
                "gmean": MulticlassGMean(**kw),
                "iba": MulticlassIBA(**kw),
                "auroc": MulticlassExactAUROC(**kw),
                _CONFUSION: MulticlassConfusionCounts(**kw),
            }
            # Micro accuracy keeps summed (size-1) counts; the per-class top-1 tp/fp/tn/fn group is updated by its
            # first member only, one of this package's count metrics (torchmetrics' would call torch.bincount).
            per_class = [name for name in metrics if name not in ("accuracy", "auroc", _CONFUSION)]
            groups = [["accuracy"], per_class, ["auroc"], [_CONFUSION]]
        self.metrics = MetricCollection(metrics, compute_groups=groups)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def names(self) -> list[str]:
        """The keys ``compute()`` returns, in order, without the prefix."""
        return scalar_names(self.class_names)

    def keys(self) -> list[str]:
        """The keys ``compute()`` returns, in order, with the prefix."""
        return [self.prefix + name for name in self.names()]

    def clone(self, prefix: str | None = None) -> "ClassificationMetrics":
        """A fresh (empty) instance with the same settings, e.g. ``train.clone("val/")``."""
        return ClassificationMetrics(
            self.class_names,
            prefix=self.prefix if prefix is None else prefix,
            threshold=self.threshold,
            validate=self.validate,
        )

    def _check_inputs(self, probs: Tensor, target: Tensor) -> None:
        if probs.ndim != 2 or probs.shape[1] != self.num_classes or not probs.is_floating_point():
            raise ValueError(
                f"probs must be a float tensor [B, {self.num_classes}], got {tuple(probs.shape)} {probs.dtype}"
            )
        if target.ndim != 1 or target.shape[0] != probs.shape[0]:
            raise ValueError(f"target must have shape [{probs.shape[0]}], got {tuple(target.shape)}")
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(f"target must hold integer class indices, got {target.dtype}")
        if probs.shape[0] == 0 or self.validate == "none" or (self.validate == "first" and self._values_checked):
            return
        in_range = ((probs >= 0) & (probs <= 1)).all()
        sums_to_one = ((probs.sum(dim=1) - 1).abs() <= _PROB_SUM_TOLERANCE).all()
        valid_target = ((target >= 0) & (target < self.num_classes)).all()
        checks = torch.stack([in_range, sums_to_one, valid_target]).tolist()  # one device sync
        if not checks[0] or not checks[1]:
            raise ValueError(
                "probs must be class probabilities (in [0, 1], rows summing to 1): apply softmax to the logits, "
                f"got values in [{probs.min().item():.4g}, {probs.max().item():.4g}]"
            )
        if not checks[2]:
            raise ValueError(
                f"target must hold class indices in [0, {self.num_classes - 1}], "
                f"got values in [{target.min().item()}, {target.max().item()}]"
            )
        self._values_checked = True

    @torch.no_grad()
    def update(self, probs: Tensor, target: Tensor) -> None:
        """Accumulate a batch.

        Args:
            probs: Class probabilities ``[B, C]`` (softmax of the logits, any float dtype).
            target: True class indices ``[B]`` (integer dtype).

        Raises:
            ValueError: On wrong shapes or dtypes, or (see ``validate``) values that are not probabilities or
                class indices.
        """
        probs, target = probs.detach(), target.detach()
        if probs.is_floating_point():
            probs = probs.float()  # check and accumulate half-precision inputs in float32
        self._check_inputs(probs, target)
        if probs.shape[0] == 0:  # torchmetrics cannot format an empty batch; it adds nothing anyway
            return
        target = target.long()
        self.metrics.update(probs[:, 1] if self.binary else probs, target)

    def compute(self) -> dict[str, Tensor]:
        """All scalar metrics since the last reset, keyed as :meth:`keys` (0-d float tensors)."""
        values = self.metrics.compute()
        values.pop(_CONFUSION)
        # Not torchmetrics' ClasswiseWrapper: its merge_state raises (full_state_update unset), and as a compute-group
        # follower (it costs no op there: 40 ops per update either way) it warns at every compute.
        f1 = values.pop(_F1_PER_CLASS)
        for name, value in zip(self.class_names, f1.unbind(0), strict=True):
            values[f"f1_{name}"] = value
        return {self.prefix + name: values[name] for name in self.names()}

    def confusion_matrix(self) -> Tensor:
        """Confusion matrix ``[C, C]`` of counts (int64) since the last reset: rows true class, columns predicted."""
        return self.metrics[_CONFUSION].compute()

    def reset(self) -> None:
        """Forget everything accumulated (call at the end of each epoch)."""
        self.metrics.reset()
        self._values_checked = False

    def extra_repr(self) -> str:
        """Settings shown in ``repr``."""
        return f"class_names={self.class_names}, prefix={self.prefix!r}, threshold={self.threshold}"
