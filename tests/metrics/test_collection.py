"""ClassificationMetrics: keys, values against scikit-learn/imbalanced-learn, input checks, merging and cloning."""

import math
import warnings

import numpy as np
import pytest
import torch
from imblearn.metrics import geometric_mean_score, make_index_balanced_accuracy, specificity_score
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from breakhis_lit.metrics import ClassificationMetrics

from host_reads import HostReads

BINARY = ["benign", "malignant"]
SUBTYPES = ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"]
imblearn_iba = make_index_balanced_accuracy(alpha=0.1, squared=True)(geometric_mean_score)


def reference(class_names: list[str], probs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Every metric computed with scikit-learn / imbalanced-learn on the same decisions."""
    c = len(class_names)
    p, y = probs.double().numpy(), target.numpy()
    y_pred = (p[:, 1] > 0.5).astype(np.int64) if c == 2 else p.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        average = "binary" if c == 2 else "macro"
        if c == 2:
            cm = confusion_matrix(y, y_pred, labels=[0, 1])
            tn, fp = cm[0, 0], cm[0, 1]
            specificity = tn / (tn + fp) if tn + fp else 0.0
        else:
            specificity = specificity_score(y, y_pred, average="macro")
        ref = {
            "accuracy": accuracy_score(y, y_pred),
            "balanced_accuracy": balanced_accuracy_score(y, y_pred),
            "precision": precision_score(y, y_pred, average=average, zero_division=0),
            "recall": recall_score(y, y_pred, average=average, zero_division=0),
            "specificity": specificity,
        }
        f1 = f1_score(y, y_pred, average=None, labels=list(range(c)), zero_division=0)
        ref.update({f"f1_{name}": f1[i] for i, name in enumerate(class_names)})
        ref["f1_macro"] = f1_score(y, y_pred, average="macro", zero_division=0)
        ref["gmean"] = geometric_mean_score(y, y_pred)
        ref["iba"] = imblearn_iba(y, y_pred)
        present = [k for k in range(c) if 0 < (y == k).sum() < len(y)]
        if c == 2:
            ref["auroc"] = roc_auc_score(y, p[:, 1]) if len(present) == 2 else math.nan
        elif len(present) == c:
            ref["auroc"] = roc_auc_score(y, p, multi_class="ovr", average="macro")
        else:  # ROC AUC of the classes that occur in the targets
            ref["auroc"] = float(np.mean([roc_auc_score(y == k, p[:, k]) for k in present]))
    return {key: float(value) for key, value in ref.items()}


def random_batch(num_classes: int, seed: int, n: int = 257) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, (n,), generator=g)
    logits = torch.randn(n, num_classes, generator=g) + 1.2 * torch.nn.functional.one_hot(target, num_classes)
    return torch.softmax(logits, dim=1), target


def check(metrics: ClassificationMetrics, probs: torch.Tensor, target: torch.Tensor) -> None:
    got = {key: value.item() for key, value in metrics.compute().items()}
    expected = {metrics.prefix + key: value for key, value in reference(metrics.class_names, probs, target).items()}
    assert list(got) == list(expected) == metrics.keys()
    assert got == pytest.approx(expected, abs=1e-6, nan_ok=True)
    cm = confusion_matrix(target.numpy(), _decisions(probs), labels=list(range(len(metrics.class_names))))
    assert metrics.confusion_matrix().tolist() == cm.tolist()


def _decisions(probs: torch.Tensor) -> np.ndarray:
    return (probs[:, 1] > 0.5).long().numpy() if probs.shape[1] == 2 else probs.argmax(dim=1).numpy()


def update_in_batches(metrics: ClassificationMetrics, probs: torch.Tensor, target: torch.Tensor) -> None:
    for p, t in zip(probs.split(32), target.split(32), strict=True):
        metrics.update(p, t)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("class_names", [BINARY, SUBTYPES], ids=["binary", "subtype"])
def test_random_inputs_match_sklearn(class_names: list[str], seed: int) -> None:
    probs, target = random_batch(len(class_names), seed)
    metrics = ClassificationMetrics(class_names, prefix="test/")
    update_in_batches(metrics, probs, target)
    check(metrics, probs, target)
    assert metrics.keys()[:7] == [
        "test/accuracy",
        "test/balanced_accuracy",
        "test/precision",
        "test/recall",
        "test/specificity",
        f"test/f1_{class_names[0]}",
        f"test/f1_{class_names[1]}",
    ]
    assert metrics.keys()[-4:] == ["test/f1_macro", "test/gmean", "test/iba", "test/auroc"]


def test_binary_positive_class_is_malignant() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]])
    target = torch.tensor([0, 1, 0, 1, 1])
    metrics = ClassificationMetrics(BINARY)
    metrics.update(probs, target)
    values = metrics.compute()
    # predictions 0 1 1 0 1: TP=2 FP=1 TN=1 FN=1
    assert values["precision"].item() == pytest.approx(2 / 3)
    assert values["recall"].item() == pytest.approx(2 / 3)
    assert values["specificity"].item() == pytest.approx(1 / 2)
    assert values["f1_malignant"].item() == pytest.approx(2 / 3)
    assert values["f1_benign"].item() == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert metrics.confusion_matrix().tolist() == [[1, 1], [1, 2]]


def _one_hot_probs(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(pred, num_classes).float() * 0.8 + 0.2 / num_classes


_SEQ = torch.arange(40) % 8
EDGE_CASES = {
    "binary, all benign, perfect": (BINARY, torch.zeros(20, dtype=torch.long), torch.zeros(20, dtype=torch.long)),
    "binary, perfect": (BINARY, torch.arange(20) % 2, torch.arange(20) % 2),
    "binary, all wrong": (BINARY, torch.arange(20) % 2, 1 - torch.arange(20) % 2),
    "binary, malignant never predicted": (BINARY, torch.arange(20) % 3 % 2, torch.zeros(20, dtype=torch.long)),
    "subtype, perfect": (SUBTYPES, _SEQ, _SEQ),
    "subtype, all wrong": (SUBTYPES, _SEQ, (_SEQ + 3) % 8),
    "subtype, DC never predicted": (SUBTYPES, _SEQ, torch.where(_SEQ == 4, 5, _SEQ)),
    "subtype, PT absent from targets but predicted": (
        SUBTYPES,
        torch.tensor([0, 1, 3, 4, 4, 5, 6, 7] * 4),
        torch.tensor([0, 1, 2, 4, 4, 5, 6, 2] * 4),
    ),
    "subtype, one class only": (SUBTYPES, torch.full((10,), 4), torch.full((10,), 4)),
}


@pytest.mark.parametrize("case", EDGE_CASES)
def test_edge_cases_match_sklearn(case: str) -> None:
    class_names, target, pred = EDGE_CASES[case]
    probs = _one_hot_probs(pred, len(class_names))
    metrics = ClassificationMetrics(class_names)
    update_in_batches(metrics, probs, target)
    check(metrics, probs, target)


@pytest.mark.parametrize("class_names", [BINARY, SUBTYPES], ids=["binary", "subtype"])
def test_merged_halves_equal_one_pass(class_names: list[str]) -> None:
    """What DDP does: each rank accumulates its shard, states are reduced (sum / cat), then computed."""
    probs, target = random_batch(len(class_names), seed=7, n=301)
    rank0, rank1, full = (ClassificationMetrics(class_names) for _ in range(3))
    update_in_batches(rank0, probs[:150], target[:150])
    update_in_batches(rank1, probs[150:], target[150:])
    update_in_batches(full, probs, target)
    for name, metric in rank0.metrics.items(keep_base=True, copy_state=False):
        metric.merge_state(rank1.metrics[name])
    expected = {key: value.item() for key, value in full.compute().items()}
    assert {key: value.item() for key, value in rank0.compute().items()} == pytest.approx(expected, abs=1e-6)
    assert torch.equal(rank0.confusion_matrix(), full.confusion_matrix())


def test_reset_clone_and_accumulation() -> None:
    probs, target = random_batch(8, seed=1)
    metrics = ClassificationMetrics(SUBTYPES, prefix="val/")
    metrics.update(probs, target)
    first = {key: value.item() for key, value in metrics.compute().items()}
    metrics.update(probs, target)  # same data twice: ratios unchanged, counts doubled
    assert {key: value.item() for key, value in metrics.compute().items()} == pytest.approx(first)
    assert metrics.confusion_matrix().sum().item() == 2 * len(target)
    metrics.reset()
    metrics.update(probs[:50], target[:50])
    check(metrics, probs[:50], target[:50])

    test = metrics.clone("test/")
    assert test.keys()[0] == "test/accuracy"
    assert test.class_names == SUBTYPES
    test.update(probs, target)
    check(test, probs, target)
    check(metrics, probs[:50], target[:50])  # the original is untouched
    assert metrics.clone().prefix == "val/"


def test_accepts_other_float_and_int_dtypes() -> None:
    probs, target = random_batch(2, seed=3)
    metrics = ClassificationMetrics(BINARY)
    metrics.update(probs.double(), target.int())
    check(metrics, probs, target)
    half = ClassificationMetrics(BINARY)
    half.update(probs.half(), target)
    check(half, probs.half().float(), target)
    metrics.update(probs[:0], target[:0])  # an empty batch is a no-op
    check(metrics, probs, target)


def test_rejects_non_probabilities() -> None:
    metrics = ClassificationMetrics(BINARY, validate="every")
    logits = torch.randn(8, 2) * 3
    target = torch.randint(0, 2, (8,))
    with pytest.raises(ValueError, match="softmax"):
        metrics.update(logits, target)
    with pytest.raises(ValueError, match="softmax"):
        metrics.update(torch.sigmoid(logits), target)  # per-class sigmoids do not sum to 1
    with pytest.raises(ValueError, match="class indices"):
        metrics.update(torch.softmax(logits, 1), target + 1)
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        metrics.update(torch.softmax(torch.randn(8, 3), 1), target)
    with pytest.raises(ValueError, match="shape"):
        metrics.update(torch.softmax(logits, 1), target[:4])
    with pytest.raises(ValueError, match="integer"):
        metrics.update(torch.softmax(logits, 1), target.float())
    unchecked = ClassificationMetrics(BINARY, validate="none")
    unchecked.update(logits, target)  # values are not checked ...
    with pytest.raises(ValueError, match="shape"):
        unchecked.update(torch.softmax(logits, 1), target[:4])  # ... shapes still are


def test_validate_first_and_every() -> None:
    probs, target = random_batch(2, seed=0, n=16)
    first = ClassificationMetrics(BINARY)  # default: values of the first batch after each reset
    first.update(probs, target)
    first.update(probs * 3, target)  # not checked any more this epoch
    first.reset()
    with pytest.raises(ValueError, match="softmax"):
        first.update(probs * 3, target)
    every = ClassificationMetrics(BINARY, validate="every")
    every.update(probs, target)
    with pytest.raises(ValueError, match="softmax"):
        every.update(probs * 3, target)
    assert every.clone().validate == "every"
    with pytest.raises(ValueError, match="validate"):
        ClassificationMetrics(BINARY, validate="sometimes")  # type: ignore[arg-type]


def test_invalid_class_names() -> None:
    with pytest.raises(ValueError, match="two"):
        ClassificationMetrics(["benign"])
    with pytest.raises(ValueError, match="unique"):
        ClassificationMetrics(["A", "A", "B"])
    with pytest.raises(ValueError, match="f1_macro"):
        ClassificationMetrics(["A", "macro"])


def test_compute_groups_share_counts() -> None:
    binary = ClassificationMetrics(BINARY)
    assert sorted(map(len, binary.metrics.compute_groups.values())) == [1, 10]  # the confusion matrix included
    subtype = ClassificationMetrics(SUBTYPES)
    assert sorted(map(len, subtype.metrics.compute_groups.values())) == [1, 1, 1, 8]
    probs, target = random_batch(2, seed=0)
    binary.update(probs, target)
    members = dict(binary.metrics.items(keep_base=True, copy_state=False))
    assert members["gmean"].tp is members["accuracy"].tp  # one set of counts for the whole group
    assert members["confusion_matrix"].tp is members["accuracy"].tp


def test_per_class_counts_are_updated_without_bincount() -> None:
    # A group is updated through its first member only: for the per-class counts, this package's (scatter_add_).
    subtype = ClassificationMetrics(SUBTYPES).metrics
    leaders = {type(subtype[group[0]]).__name__ for group in subtype.compute_groups.values()}
    assert leaders == {"MulticlassAccuracy", "MulticlassBalancedAccuracy", "MulticlassExactAUROC",
                       "MulticlassConfusionCounts"}  # fmt: skip
    for names in (BINARY, SUBTYPES):
        metrics = ClassificationMetrics(names)
        probs, target = random_batch(len(names), seed=0)
        with HostReads() as mode:
            metrics.update(probs, target)  # the first update after a reset also checks the values
            metrics.update(probs, target)
        assert mode.seen == [], mode.seen  # the value check's .tolist() is a host read only on a GPU
        assert mode.cpu_only  # torchmetrics' logits check: a host read on a CPU only


@pytest.mark.parametrize("class_names", [BINARY, SUBTYPES], ids=["binary", "subtype"])
def test_ties_and_empty_classes_match_sklearn(class_names: list[str]) -> None:
    c = len(class_names)
    g = torch.Generator().manual_seed(5)
    target = torch.randint(0, c // 2 + 1, (120,), generator=g)  # the upper classes never occur ...
    probs = torch.full((120, c), 1 / c)  # ... every row a tie at first (binary: 0.5, not above the threshold)
    probs[60:] = torch.softmax(torch.randn(60, c, generator=g).round(), 1)  # rounded logits: more ties
    metrics = ClassificationMetrics(class_names)
    update_in_batches(metrics, probs, target)
    check(metrics, probs, target)
