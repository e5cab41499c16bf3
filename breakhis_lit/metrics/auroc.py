"""Exact AUROC that is NaN, not a misleading 0, where ROC AUC is undefined (a class missing from the targets)."""

import torch
from torch import Tensor
from torchmetrics.classification import BinaryAUROC, MulticlassAUROC
from torchmetrics.functional.classification import binary_auroc
from torchmetrics.utilities.data import dim_zero_cat


def _concatenated(state: list[Tensor] | Tensor) -> Tensor | None:
    """A cat-reduced state as one tensor (a list before a DDP sync, a tensor after it), or None if it is empty."""
    if isinstance(state, list) and not state:
        return None
    return dim_zero_cat(state)


class BinaryExactAUROC(BinaryAUROC):
    """Exact binary AUROC (no threshold binning), equal to ``sklearn.metrics.roc_auc_score``; arguments as BinaryAUROC.

    NaN when the targets hold a single class (torchmetrics returns 0 with a warning, scikit-learn raises).

    Inputs of ``update(preds, target)``: positive-class probabilities ``[N]``, 0/1 targets ``[N]``.
    """

    def compute(self) -> Tensor:
        """Area under the ROC curve of everything seen since the last reset, or NaN if it is undefined."""
        target = _concatenated(self.target)
        if target is None:
            return torch.tensor(float("nan"))
        positives = int((target == 1).sum())
        if positives == 0 or positives == target.numel():
            return torch.tensor(float("nan"), device=target.device)
        return super().compute()


class MulticlassExactAUROC(MulticlassAUROC):
    """Exact one-vs-rest macro AUROC over the classes present in the targets.

    Equal to ``sklearn.metrics.roc_auc_score(multi_class="ovr", average="macro")`` when every class occurs in the
    targets. A class missing from the targets (possible in a small patient-level split) has no ROC curve: it is left
    out of the mean (scikit-learn raises, torchmetrics counts it as 0). NaN when no class qualifies.
    Inputs of ``update(preds, target)``: probabilities ``[N, C]`` and class-index targets ``[N]``. Arguments as
    ``MulticlassAUROC`` (exact and macro by default).
    """

    def compute(self) -> Tensor:
        """Macro one-vs-rest AUROC of everything seen since the last reset, or NaN if it is undefined."""
        preds, target = _concatenated(self.preds), _concatenated(self.target)
        if preds is None or target is None:
            return torch.tensor(float("nan"))
        scores = []
        for c in range(self.num_classes):
            is_c = (target == c).long()
            positives = int(is_c.sum())
            if 0 < positives < is_c.numel():
                scores.append(binary_auroc(preds[:, c], is_c, thresholds=None, validate_args=False))
        if not scores:
            return torch.tensor(float("nan"), device=preds.device)
        return torch.stack(scores).mean()
