"""G-mean and IBA metrics against imbalanced-learn, including edge cases and DDP-style state merging."""

import warnings

import numpy as np
import pytest
import torch
from imblearn.metrics import geometric_mean_score, make_index_balanced_accuracy
from torchmetrics.utilities.data import dim_zero_sum

from breakhis_lit.metrics import BinaryGMean, BinaryIBA, MulticlassGMean, MulticlassIBA

imblearn_iba = make_index_balanced_accuracy(alpha=0.1, squared=True)(geometric_mean_score)
C = 8


def reference(y_true: np.ndarray, y_pred: np.ndarray, **kwargs) -> tuple[float, float]:
    """imbalanced-learn's G-mean and IBA(alpha=0.1, squared) of hard predictions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(geometric_mean_score(y_true, y_pred, **kwargs)), float(imblearn_iba(y_true, y_pred, **kwargs))


def binary_metrics(y_true: np.ndarray, preds: torch.Tensor, **kwargs) -> tuple[float, float]:
    gmean, iba = BinaryGMean(**kwargs), BinaryIBA(**kwargs)
    target = torch.from_numpy(y_true)
    for chunk_p, chunk_t in zip(preds.split(7), target.split(7), strict=True):  # several updates
        gmean.update(chunk_p, chunk_t)
        iba.update(chunk_p, chunk_t)
    return gmean.compute().item(), iba.compute().item()


def multiclass_metrics(y_true: np.ndarray, preds: torch.Tensor, **kwargs) -> tuple[float, float]:
    gmean, iba = MulticlassGMean(C, **kwargs), MulticlassIBA(C, **kwargs)
    target = torch.from_numpy(y_true)
    for chunk_p, chunk_t in zip(preds.split(9), target.split(9), strict=True):
        gmean.update(chunk_p, chunk_t)
        iba.update(chunk_p, chunk_t)
    return gmean.compute().item(), iba.compute().item()


def random_binary(seed: int) -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 300))
    y_true = (rng.random(n) < 0.68).astype(np.int64)  # BreakHis-like imbalance
    probs = np.clip(0.35 * y_true + rng.random(n) * 0.8, 0, 1)  # informative but imperfect
    return y_true, torch.from_numpy(probs).float()


def random_multiclass(seed: int) -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(60, 400))
    y_true = rng.choice(C, size=n, p=np.array([1, 3, 1, 2, 10, 2, 2, 2]) / 23)
    logits = rng.normal(size=(n, C))
    logits[np.arange(n), y_true] += 1.5
    return y_true, torch.softmax(torch.from_numpy(logits), dim=1).float()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("average", ["multiclass", "binary"])
def test_binary_random_matches_imblearn(seed: int, average: str) -> None:
    y_true, probs = random_binary(seed)
    y_pred = (probs > 0.5).long().numpy()
    expected = reference(y_true, y_pred, average=average)
    assert binary_metrics(y_true, probs, average=average) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    hard = binary_metrics(y_true, torch.from_numpy(y_pred), average=average)
    assert hard == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_binary_default_iba_is_gmean_squared_and_threshold_is_used() -> None:
    y_true, probs = random_binary(11)
    y_pred = (probs > 0.3).long().numpy()
    gmean, iba = binary_metrics(y_true, probs, threshold=0.3)
    assert (gmean, iba) == pytest.approx(reference(y_true, y_pred), rel=1e-6)
    assert iba == pytest.approx(gmean**2, rel=1e-6)  # binary macro sensitivity == macro specificity
    # García's dominance TPR - TNR only with average="binary".
    tpr = (y_pred[y_true == 1] == 1).mean()
    tnr = (y_pred[y_true == 0] == 0).mean()
    _, iba_binary = binary_metrics(y_true, probs, threshold=0.3, average="binary")
    assert iba_binary == pytest.approx((1 + 0.1 * (tpr - tnr)) * tpr * tnr, rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("correction", [0.0, 0.001])
def test_multiclass_random_matches_imblearn(seed: int, correction: float) -> None:
    y_true, probs = random_multiclass(seed)
    y_pred = probs.argmax(dim=1).numpy()
    expected = reference(y_true, y_pred, correction=correction)
    assert multiclass_metrics(y_true, probs, correction=correction) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    indices = multiclass_metrics(y_true, torch.from_numpy(y_pred), correction=correction)
    assert indices == pytest.approx(expected, rel=1e-6, abs=1e-7)


ones, zeros = np.ones(12, dtype=np.int64), np.zeros(12, dtype=np.int64)
mixed = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1])
BINARY_EDGE_CASES = {
    "all benign, perfect": (zeros, zeros),
    "all malignant, perfect": (ones, ones),
    "all benign, all wrong": (zeros, ones),
    "all malignant, all wrong": (ones, zeros),
    "perfect": (mixed, mixed),
    "all wrong": (mixed, 1 - mixed),
    "malignant never predicted": (mixed, zeros),
    "benign never predicted": (mixed, ones),
    "all malignant, mixed predictions": (ones, mixed),
}


@pytest.mark.parametrize("case", BINARY_EDGE_CASES)
@pytest.mark.parametrize("average", ["multiclass", "binary"])
def test_binary_edge_cases_match_imblearn(case: str, average: str) -> None:
    y_true, y_pred = BINARY_EDGE_CASES[case]
    expected = reference(y_true, y_pred, average=average)
    probs = torch.from_numpy(np.where(y_pred == 1, 0.9, 0.1)).float()
    assert binary_metrics(y_true, probs, average=average) == pytest.approx(expected, abs=1e-6)
    assert binary_metrics(y_true, torch.from_numpy(y_pred), average=average) == pytest.approx(expected, abs=1e-6)


def test_binary_single_class_quirk_is_kept() -> None:
    # imbalanced-learn: one present class predicted perfectly -> G-mean 1, specificity 0/0 := 0, IBA 1 + alpha.
    assert binary_metrics(zeros, torch.from_numpy(zeros)) == pytest.approx((1.0, 1.1))


def _multiclass_edge_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    y_all = np.repeat(np.arange(C), 5)
    y_pred_no5 = np.where(y_all == 5, 6, y_all)
    y_pred_no5[::7] = (y_pred_no5[::7] + 1) % C
    y_pred_no5[y_pred_no5 == 5] = 4
    y_sub = rng.choice([0, 2, 3, 7], size=40)
    y_sub_pred = y_sub.copy()
    y_sub_pred[::5] = 1  # class 1 predicted but absent from the targets
    y_sub_pred[1::6] = y_sub[::6][: len(y_sub_pred[1::6])]
    return {
        "one class, perfect": (np.full(20, 3), np.full(20, 3)),
        "one class, all wrong": (np.full(20, 3), np.full(20, 6)),
        "perfect": (y_all, y_all),
        "perfect, classes absent": (y_sub, y_sub),
        "all wrong": (y_all, (y_all + 1) % C),
        "class 5 never predicted": (y_all, y_pred_no5),
        "class predicted but absent from targets": (y_sub, y_sub_pred),
    }


MULTICLASS_EDGE_CASES = _multiclass_edge_cases()


@pytest.mark.parametrize("case", MULTICLASS_EDGE_CASES)
@pytest.mark.parametrize("correction", [0.0, 0.01])
def test_multiclass_edge_cases_match_imblearn(case: str, correction: float) -> None:
    y_true, y_pred = MULTICLASS_EDGE_CASES[case]
    y_true, y_pred = y_true.astype(np.int64), y_pred.astype(np.int64)
    expected = reference(y_true, y_pred, correction=correction)
    probs = torch.nn.functional.one_hot(torch.from_numpy(y_pred), C).float() * 0.9 + 0.1 / C
    got = multiclass_metrics(y_true, probs, correction=correction)
    assert got == pytest.approx(expected, abs=1e-6)
    assert multiclass_metrics(y_true, torch.from_numpy(y_pred), correction=correction) == pytest.approx(got)


@pytest.mark.parametrize(
    "make",
    [
        lambda: BinaryGMean(),
        lambda: BinaryIBA(),
        lambda: BinaryIBA(average="binary"),
        lambda: MulticlassGMean(C),
        lambda: MulticlassIBA(C, correction=0.001),
    ],
)
def test_states_are_sum_reduced_and_merge_like_ddp(make) -> None:
    metric = make()
    binary = isinstance(metric, BinaryGMean)
    y_true, preds = random_binary(5) if binary else random_multiclass(5)
    target = torch.from_numpy(y_true)
    half = len(target) // 2

    full = make()
    full.update(preds, target)
    rank0, rank1 = make(), make()
    rank0.update(preds[:half], target[:half])
    rank1.update(preds[half:], target[half:])

    assert set(metric._reductions) == {"tp", "fp", "tn", "fn"}
    assert all(fx is dim_zero_sum for fx in metric._reductions.values())
    # What a DDP all-reduce does: sum every state across ranks.
    summed = make()
    for name in ("tp", "fp", "tn", "fn"):
        setattr(summed, name, getattr(rank0, name) + getattr(rank1, name))
    summed._update_count = 1
    rank0.merge_state(rank1)
    assert rank0.compute().item() == pytest.approx(full.compute().item(), rel=1e-6)
    assert summed.compute().item() == pytest.approx(full.compute().item(), rel=1e-6)


def test_reset_and_empty() -> None:
    metric = MulticlassIBA(C)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute() before update()
        assert metric.compute().item() == 0.0
    y_true, probs = random_multiclass(0)
    metric.update(probs, torch.from_numpy(y_true))
    first = metric.compute().item()
    metric.reset()
    metric.update(probs, torch.from_numpy(y_true))
    assert metric.compute().item() == pytest.approx(first)
    assert metric.compute().dtype == torch.float32


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="average"):
        BinaryGMean(average="macro")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="correction"):
        MulticlassGMean(C, correction=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        BinaryIBA(alpha="big")  # type: ignore[arg-type]
