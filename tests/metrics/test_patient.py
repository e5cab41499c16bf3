"""Patient accuracy and patient recognition rate on hand-computed examples and against a plain loop."""

import random

import pytest
import torch

from breakhis_lit.errors import BreakHisError
from breakhis_lit.metrics import patient_level_metrics


def binary_probs(p_malignant: list[float]) -> torch.Tensor:
    p = torch.tensor(p_malignant)
    return torch.stack([1 - p, p], dim=1)


def test_binary_hand_example() -> None:
    # Images (interleaved on purpose), P(malignant), image decision (> 0.5), correct?
    #   P1 benign:    0.2 -> B ok, 0.7 -> M no, 0.4 -> B ok      score 2/3, mean 1.3/3 = 0.433 -> benign: ok
    #   P2 malignant: 0.75 ok, 0.625 ok, 0.375 no, 0.25 no       score 2/4, mean 2.0/4 = 0.5 -> >= 0.5 malignant: ok
    #   P3 malignant: 0.1 no, 0.45 no                            score 0,   mean 0.275 -> benign: wrong
    #   P4 benign:    0.8 no                                     score 0,   mean 0.8 -> malignant: wrong
    # patient accuracy = 2/4 = 0.5; recognition rate = (2/3 + 1/2 + 0 + 0) / 4 = 7/24
    # (image accuracy would be 4/10 = 0.4)
    ids = ["P1", "P2", "P3", "P1", "P2", "P4", "P2", "P1", "P3", "P2"]
    p = [0.2, 0.75, 0.1, 0.7, 0.625, 0.8, 0.375, 0.4, 0.45, 0.25]
    y = [0, 1, 1, 0, 1, 0, 1, 0, 1, 1]
    result = patient_level_metrics(ids, binary_probs(p), torch.tensor(y))
    assert result == pytest.approx({"patient_accuracy": 0.5, "patient_recognition_rate": 7 / 24, "n_patients": 4})
    assert isinstance(result["n_patients"], int)


def test_multiclass_hand_example() -> None:
    # A (label 2): [.1 .2 .7] -> 2 ok, [.5 .1 .4] -> 0 no   score 1/2, mean [.3 .15 .55] -> 2: ok
    # B (label 0): [.2 .5 .3] -> 1 no                       score 0,   mean -> 1: wrong
    # C (label 1): [.1 .8 .1] ok, [.3 .4 .3] ok, [.6 .3 .1] no   score 2/3, mean [1/3 .5 1/6] -> 1: ok
    # patient accuracy = 2/3; recognition rate = (1/2 + 0 + 2/3) / 3 = 7/18
    probs = torch.tensor(
        [[0.1, 0.2, 0.7], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.5, 0.1, 0.4], [0.3, 0.4, 0.3], [0.6, 0.3, 0.1]]
    )
    ids = ["A", "C", "B", "A", "C", "C"]
    y = torch.tensor([2, 1, 0, 2, 1, 1])
    result = patient_level_metrics(ids, probs, y)
    assert result == pytest.approx({"patient_accuracy": 2 / 3, "patient_recognition_rate": 7 / 18, "n_patients": 3})


@pytest.mark.parametrize("num_classes", [2, 8])
def test_matches_plain_loop(num_classes: int) -> None:
    rng = random.Random(num_classes)
    labels = {f"p{i}": rng.randrange(num_classes) for i in range(30)}
    ids = [rng.choice(list(labels)) for _ in range(500)]
    target = torch.tensor([labels[pid] for pid in ids])
    probs = torch.softmax(torch.randn(500, num_classes) + torch.eye(num_classes)[target], dim=1)

    def decide(p: torch.Tensor, patient: bool) -> int:
        if num_classes == 2:
            return int(p[1] >= 0.5) if patient else int(p[1] > 0.5)
        return int(p.argmax())

    patients = sorted(set(ids))
    correct_patients, scores = 0, []
    for pid in patients:
        rows = [i for i, other in enumerate(ids) if other == pid]
        mean = probs[rows].double().mean(dim=0)
        correct_patients += decide(mean, patient=True) == labels[pid]
        scores.append(sum(decide(probs[i], patient=False) == labels[pid] for i in rows) / len(rows))
    expected = {
        "patient_accuracy": correct_patients / len(patients),
        "patient_recognition_rate": sum(scores) / len(scores),
        "n_patients": len(patients),
    }
    assert patient_level_metrics(ids, probs, target) == pytest.approx(expected)


def test_patient_with_two_labels_is_an_error() -> None:
    with pytest.raises(BreakHisError, match="14-13412"):
        patient_level_metrics(["14-13412", "14-13412", "x"], binary_probs([0.1, 0.9, 0.3]), torch.tensor([0, 1, 0]))


def test_bad_inputs() -> None:
    probs, target = binary_probs([0.1, 0.9]), torch.tensor([0, 1])
    with pytest.raises(BreakHisError, match="no patient id"):
        patient_level_metrics(["a", ""], probs, target)
    with pytest.raises(ValueError, match="shape"):
        patient_level_metrics(["a"], probs, target)
    with pytest.raises(ValueError, match="softmax"):
        patient_level_metrics(["a", "b"], probs * 3, target)
    with pytest.raises(ValueError, match="class indices"):
        patient_level_metrics(["a", "b"], probs, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="at least one"):
        patient_level_metrics([], probs[:0], target[:0])
