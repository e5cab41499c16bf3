"""The validation choice is the statistics library's threshold and temperature on the epoch's predictions."""

import numpy as np
import pytest
import torch

from breakhis_lit.evaluation.validation import apply_temperature, choose_on_validation, log_probs
from breakhis_lit.stats import choose_threshold, fit_temperature


def _validation(n: int = 80, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = torch.tensor(rng.integers(0, 2, n))
    logits = torch.tensor(rng.normal(size=(n, 2)), dtype=torch.float32)
    logits[torch.arange(n), labels] += 1.5
    return (3 * logits).softmax(dim=1), labels


def test_choice_is_choose_threshold_and_fit_temperature() -> None:
    probs, labels = _validation()
    choice = choose_on_validation(probs, labels, epoch=4)
    expected = choose_threshold(probs.numpy(), labels.numpy())
    assert (choice.epoch, choice.n_images) == (4, 80)
    assert choice.threshold == expected.threshold
    assert choice.val_balanced_accuracy == expected.balanced_accuracy
    assert choice.temperature == pytest.approx(fit_temperature(np.log(probs.double().numpy()), labels.numpy()))
    assert choice.temperature > 1  # the logits were sharpened 3-fold


def test_one_class_gives_no_threshold_and_multiclass_none() -> None:
    probs, labels = _validation()
    choice = choose_on_validation(probs, torch.zeros_like(labels), epoch=1)
    assert choice.threshold is None
    assert choice.val_balanced_accuracy is None
    three = torch.softmax(torch.randn(30, 3), dim=1)
    choice = choose_on_validation(three, torch.arange(30) % 3, epoch=1)
    assert choice.threshold is None
    assert choice.temperature is not None


def test_temperature_scaling() -> None:
    probs, _ = _validation()
    p = probs.double().numpy()
    assert np.allclose(apply_temperature(p, 1.0), p)
    flat = apply_temperature(p, 1e6)
    assert np.allclose(flat, 0.5, atol=1e-5)
    assert np.isfinite(log_probs(np.array([[0.0, 1.0]]))).all()
