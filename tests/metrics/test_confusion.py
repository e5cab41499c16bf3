"""Confusion matrices and per-class counts without torch.bincount, against torchmetrics and scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix
from torchmetrics.classification import BinaryConfusionMatrix, MulticlassConfusionMatrix, MulticlassStatScores

from breakhis_lit.metrics import (
    BinaryBalancedAccuracy,
    BinaryConfusionCounts,
    MulticlassBalancedAccuracy,
    MulticlassConfusionCounts,
    confusion_counts,
)

C = 8


def _multiclass_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    random = torch.softmax(torch.randn(300, C, generator=g), 1), torch.randint(0, C, (300,), generator=g)
    ties = torch.full((50, C), 1 / C), torch.randint(0, C, (50,), generator=g)  # every row a tie: class 0
    rounded = torch.softmax(torch.randn(200, C, generator=g).round(), 1), torch.randint(0, C, (200,), generator=g)
    empty = torch.softmax(torch.randn(100, C, generator=g), 1)
    empty[:, 5:] = 0  # classes 5-7 are never predicted ...
    sparse = empty, torch.randint(0, 3, (100,), generator=g)  # ... and 3-7 never occur
    return {"random": random, "ties": ties, "rounded ties": rounded, "empty classes": sparse}


MULTICLASS = _multiclass_cases()


def _binary_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    random = torch.rand(300, generator=g), torch.randint(0, 2, (300,), generator=g)
    ties = torch.full((40,), 0.5), torch.randint(0, 2, (40,), generator=g)  # 0.5 is not above the threshold
    benign_only = torch.rand(30, generator=g) * 0.4, torch.zeros(30, dtype=torch.long)
    nothing = torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return {"random": random, "ties": ties, "one class only": benign_only, "nothing seen": nothing}


BINARY = _binary_cases()


@pytest.mark.parametrize("case", MULTICLASS)
def test_multiclass_confusion_matrix(case: str) -> None:
    probs, target = MULTICLASS[case]
    ours, reference = MulticlassConfusionCounts(C), MulticlassConfusionMatrix(C)
    for p, t in zip(probs.split(32), target.split(32), strict=True):
        ours.update(p, t)
        reference.update(p, t)
    assert ours.compute().dtype == torch.int64
    assert torch.equal(ours.compute(), reference.compute())
    expected = confusion_matrix(target.numpy(), probs.argmax(1).numpy(), labels=list(range(C)))
    assert ours.compute().tolist() == expected.tolist()


@pytest.mark.parametrize("case", MULTICLASS)
def test_multiclass_counts_equal_torchmetrics(case: str) -> None:
    probs, target = MULTICLASS[case]
    ours, reference = MulticlassBalancedAccuracy(C), MulticlassStatScores(C, average=None)
    for p, t in zip(probs.split(32), target.split(32), strict=True):
        ours.update(p, t)
        reference.update(p, t)
    for state in ("tp", "fp", "tn", "fn"):
        assert torch.equal(getattr(ours, state), getattr(reference, state)), state


@pytest.mark.parametrize("ignore_index", [2, -1])
def test_ignore_index_equals_torchmetrics(ignore_index: int) -> None:
    probs, target = MULTICLASS["random"]
    target = torch.where(torch.arange(len(target)) % 7 == 0, ignore_index, target)
    ours = MulticlassConfusionCounts(C, ignore_index=ignore_index)
    reference = MulticlassConfusionMatrix(C, ignore_index=ignore_index)
    counts = MulticlassBalancedAccuracy(C, ignore_index=ignore_index)
    stat_scores = MulticlassStatScores(C, average=None, ignore_index=ignore_index)
    for metric in (ours, reference, counts, stat_scores):
        metric.update(probs, target)
    assert torch.equal(ours.compute(), reference.compute())
    for state in ("tp", "fp", "tn", "fn"):
        assert torch.equal(getattr(counts, state), getattr(stat_scores, state)), state


@pytest.mark.parametrize("case", BINARY)
def test_binary_confusion_matrix_from_counts(case: str) -> None:
    probs, target = BINARY[case]
    ours, reference = BinaryConfusionCounts(), BinaryConfusionMatrix()
    if len(target):  # torchmetrics cannot format an empty batch: nothing seen
        ours.update(probs, target)
        reference.update(probs, target)
    assert ours.compute().dtype == torch.int64
    assert torch.equal(ours.compute(), reference.compute())
    if len(target):
        expected = confusion_matrix(target.numpy(), (probs > 0.5).long().numpy(), labels=[0, 1]).tolist()
        assert ours.compute().tolist() == expected
    else:
        assert ours.compute().tolist() == [[0, 0], [0, 0]]


def test_binary_confusion_shares_the_counts_of_a_collection() -> None:
    from torchmetrics import MetricCollection

    probs, target = BINARY["random"]
    collection = MetricCollection(
        {"ba": BinaryBalancedAccuracy(), "cm": BinaryConfusionCounts()}, compute_groups=[["ba", "cm"]]
    )
    collection.update(probs, target)
    expected = confusion_matrix(target.numpy(), (probs > 0.5).long().numpy(), labels=[0, 1])
    assert collection.compute()["cm"].tolist() == expected.tolist()


def test_confusion_counts_is_one_scatter() -> None:
    preds, target = torch.tensor([0, 2, 2, 1]), torch.tensor([0, 2, 1, 1])
    assert confusion_counts(preds, target, 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert confusion_counts(preds, target, 3, ignore_index=1).tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert np.array_equal(confusion_counts(preds[:0], target[:0], 3).numpy(), np.zeros((3, 3)))
