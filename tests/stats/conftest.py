"""Random clustered test-set predictions shared by the statistics tests."""

from collections.abc import Callable

import numpy as np
import pytest
import torch

from breakhis_lit.stats import Predictions

BINARY = ("benign", "malignant")
SUBTYPES = ("A", "F", "PT", "TA", "DC", "LC", "MC", "PC")

MakePredictions = Callable[..., Predictions]


def class_names(num_classes: int) -> tuple[str, ...]:
    return BINARY if num_classes == 2 else SUBTYPES[:num_classes]


@pytest.fixture
def make_predictions() -> MakePredictions:
    """Factory: predictions of ``n_patients`` patients in groups of ~2 patients, each patient with its own skill."""

    def make(
        num_classes: int = 2,
        n_images: int = 400,
        n_patients: int = 20,
        seed: int = 0,
        signal: float = 1.0,
        decimals: int | None = None,
        name: str = "run",
        threshold: float = 0.5,
    ) -> Predictions:
        rng = np.random.default_rng(seed)
        patient_label = np.arange(n_patients) % num_classes  # every class gets patients
        rng.shuffle(patient_label)
        patient = np.sort(rng.integers(0, n_patients, n_images))
        patient[:n_patients] = np.arange(n_patients)  # every patient has an image
        rng.shuffle(patient)
        labels = patient_label[patient]
        skill = rng.normal(signal, 1.0, n_patients)[patient]
        logits = rng.normal(size=(n_images, num_classes))
        logits[np.arange(n_images), labels] += skill
        probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=1).numpy()
        if decimals is not None:  # coarse probabilities: many ties, as predictions.csv rounding makes them
            probs = np.round(probs, decimals)
            top = probs.argmax(axis=1)
            probs[np.arange(n_images), top] += 1 - probs.sum(axis=1)  # the largest entry absorbs the rounding
        groups = [f"acc{p // 2}" for p in patient]
        patients = [f"{p}/{patient_label[p]}" for p in patient]
        images = [f"img{i}.png" for i in range(n_images)]
        return Predictions(
            probs,
            labels,
            groups,
            patients,
            class_names=class_names(num_classes),
            images=images,
            name=name,
            threshold=threshold,
        )

    return make
