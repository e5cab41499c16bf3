"""Patient-level scores of a test set: patient accuracy and Spanhol et al.'s patient recognition rate."""

from collections.abc import Sequence

import torch
from torch import Tensor

from breakhis_lit.errors import BreakHisError


def patient_level_metrics(
    patient_ids: Sequence[str], probs: Tensor, targets: Tensor, threshold: float = 0.5
) -> dict[str, float]:
    r"""Aggregate image-level predictions per patient.

    * ``patient_accuracy``: each patient's prediction comes from the mean of its images' probability vectors
      (binary: malignant, class 1, when the mean probability of class 1 is ``>= threshold``; multiclass: the
      arg-max of the mean vector) and is compared with the patient's label; the fraction of correct patients.
    * ``patient_recognition_rate`` (Spanhol et al., IEEE TBME 2016): the mean over patients of the patient score
      :math:`N_\text{rec}(P) / N(P)`, the fraction of the patient's images classified correctly. Images are
      classified as in :class:`~breakhis_lit.metrics.ClassificationMetrics` (binary: ``probs[:, 1] > threshold``;
      multiclass: arg-max).
    * ``n_patients``: number of distinct patient ids (an int).

    Args:
        patient_ids: Patient id of every image, length ``N``.
        probs: Class probabilities ``[N, C]``.
        targets: True class indices ``[N]``.
        threshold: Binary task only: the decision threshold on the probability of class 1.

    Returns:
        ``{"patient_accuracy": float, "patient_recognition_rate": float, "n_patients": int}``.

    Raises:
        ValueError: On inconsistent shapes, no images, probabilities outside [0, 1] or out-of-range targets.
        BreakHisError: When a patient id is empty or a patient's images carry different labels (e.g. BreakHis's
            ``14-13412``, filed under both DC and LC: use patient folders, or ``f"{id}/{label}"``, as ids).
    """
    probs = probs.detach().to("cpu", torch.float64)
    targets = targets.detach().to("cpu")
    n = len(patient_ids)
    if probs.ndim != 2 or probs.shape[0] != n or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape [{n}, C>=2] for {n} patient ids, got {tuple(probs.shape)}")
    if targets.shape != (n,) or targets.is_floating_point():
        raise ValueError(f"targets must be integer class indices of shape [{n}], got {tuple(targets.shape)}")
    if n == 0:
        raise ValueError("patient_level_metrics needs at least one image")
    num_classes = probs.shape[1]
    if not bool(((probs >= 0) & (probs <= 1)).all()):
        raise ValueError("probs must be class probabilities in [0, 1]: apply softmax to the logits")
    targets = targets.long()
    if not bool(((targets >= 0) & (targets < num_classes)).all()):
        raise ValueError(f"targets must be class indices in [0, {num_classes - 1}]")
    missing = sum(1 for pid in patient_ids if not pid)
    if missing:
        raise BreakHisError(
            f"patient ids: {missing} of {n} images have no patient id; patient-level metrics need one per image"
        )

    index: dict[str, int] = {}
    codes = torch.tensor([index.setdefault(pid, len(index)) for pid in patient_ids], dtype=torch.long)
    n_patients = len(index)
    images = torch.bincount(codes, minlength=n_patients).to(torch.float64)

    low = torch.full((n_patients,), num_classes, dtype=torch.long).scatter_reduce(0, codes, targets, "amin")
    high = torch.full((n_patients,), -1, dtype=torch.long).scatter_reduce(0, codes, targets, "amax")
    mixed = (low != high).nonzero().flatten().tolist()
    if mixed:
        names = list(index)
        first = names[mixed[0]]
        labels = sorted(set(targets[codes == mixed[0]].tolist()))
        raise BreakHisError(
            f"patient ids: {len(mixed)} patient(s) have images with different labels (first: {first!r} with "
            f"labels {labels}); give each patient one label, e.g. use the patient folder or '<id>/<label>' as id"
        )
    patient_label = low

    mean_probs = torch.zeros(n_patients, num_classes, dtype=torch.float64).index_add_(0, codes, probs)
    mean_probs /= images[:, None]
    if num_classes == 2:
        patient_pred = (mean_probs[:, 1] >= threshold).long()
        image_pred = (probs[:, 1] > threshold).long()
    else:
        patient_pred = mean_probs.argmax(dim=1)
        image_pred = probs.argmax(dim=1)

    correct = torch.zeros(n_patients, dtype=torch.float64).index_add_(0, codes, (image_pred == targets).double())
    return {
        "patient_accuracy": float((patient_pred == patient_label).double().mean()),
        "patient_recognition_rate": float((correct / images).mean()),
        "n_patients": n_patients,
    }
