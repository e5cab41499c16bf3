"""The decision threshold and temperature chosen on one epoch's validation predictions."""

import contextlib
import math

import numpy as np
import torch

from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import ValidationChoice
from breakhis_lit.stats.calibration import choose_threshold, fit_temperature

_TINY = float(torch.finfo(torch.float32).tiny)


def log_probs(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """``log(probs)`` with probabilities that underflowed to 0 clipped to float32's smallest normal number.

    Softmax of these log-probabilities gives the probabilities back, so they stand in for the logits (which the
    classifier does not keep) when fitting and applying a temperature; the clipping only moves probabilities
    below 1e-38.
    """
    p = probs.detach().cpu().double().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs, np.float64)
    return np.log(np.clip(p, _TINY, None))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)``: the probabilities after temperature scaling."""
    z = log_probs(probs) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def choose_on_validation(probs: torch.Tensor, labels: torch.Tensor, epoch: int) -> ValidationChoice:
    """Threshold (binary tasks) and temperature from the validation predictions of one epoch.

    The threshold maximises validation balanced accuracy (:func:`~breakhis_lit.stats.choose_threshold`); the
    temperature minimises the validation negative log-likelihood (:func:`~breakhis_lit.stats.fit_temperature`).
    Either is ``None`` where it cannot be chosen (a validation split of one class; a multiclass task for the
    threshold), so a fit never fails here.

    Args:
        probs: Validation probabilities ``[N, C]``.
        labels: Validation labels ``[N]``.
        epoch: The epoch, counted from 1.

    Returns:
        The :class:`~breakhis_lit.rundir.ValidationChoice`.
    """
    p = probs.detach().cpu().float().numpy()
    y = labels.detach().cpu().long().numpy()
    threshold = balanced = temperature = None
    if p.shape[1] == 2:
        with contextlib.suppress(BreakHisError):
            choice = choose_threshold(p, y)
            threshold, balanced = choice.threshold, choice.balanced_accuracy
    with contextlib.suppress(BreakHisError):
        temperature = fit_temperature(log_probs(p), y)
    if temperature is not None and not math.isfinite(temperature):
        temperature = None
    return ValidationChoice(
        epoch=int(epoch),
        n_images=len(y),
        threshold=threshold,
        val_balanced_accuracy=balanced,
        temperature=temperature,
    )
