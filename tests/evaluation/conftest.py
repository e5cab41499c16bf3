"""Random clustered test-set predictions for the evaluation tests."""

from collections.abc import Callable

import numpy as np
import pytest
import torch

from breakhis_lit.stats import Predictions

SUBTYPES = ("A", "F", "PT", "TA", "DC", "LC", "MC", "PC")

MakePredictions = Callable[..., Predictions]


def random_predictions(
    num_classes: int = 2, n_images: int = 300, n_patients: int = 16, seed: int = 0, decimals: int | None = 6
) -> Predictions:
    """Predictions of ``n_patients`` patients (two per group), probabilities rounded as ``predictions.csv``."""
    rng = np.random.default_rng(seed)
    patient_label = np.arange(n_patients) % num_classes
    rng.shuffle(patient_label)
    patient = np.sort(rng.integers(0, n_patients, n_images))
    patient[:n_patients] = np.arange(n_patients)
    rng.shuffle(patient)
    labels = patient_label[patient]
    logits = rng.normal(size=(n_images, num_classes))
    logits[np.arange(n_images), labels] += rng.normal(1.0, 1.0, n_patients)[patient]
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=1).double().numpy()
    if decimals is not None:
        probs = np.round(probs, decimals)
    names = ("benign", "malignant") if num_classes == 2 else SUBTYPES[:num_classes]
    return Predictions(
        probs,
        labels,
        [f"acc{p // 2}" for p in patient],
        [f"p{p}" for p in patient],
        class_names=names,
        images=[f"img{i}.png" for i in range(n_images)],
        name="run",
    )


@pytest.fixture
def make_predictions() -> MakePredictions:
    """Factory of :func:`random_predictions`."""
    return random_predictions
