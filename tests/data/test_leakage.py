"""Patient leakage, measured on the real 40X file structure: why ``split: patient`` is the default.

Every image of a patient gets that patient's colour and nothing else, while labels stay the real per-patient
ones: only *who* the patient is predicts the label. A 1-nearest-neighbour memoriser then scores near 100% on the
paper's random image split (the test patients' other images are in training) and near chance on the patient
split. The same mechanism, weaker, inflates the paper's 94-99% accuracies.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from breakhis_lit.data import BreakHisDataModule


@pytest.fixture(scope="module")
def patient_coloured_tree(tmp_path_factory: pytest.TempPathFactory, breakhis_files) -> Path:
    """The 1,995 real 40X paths as 8x8 PNGs: one random colour per patient, plus per-image noise."""
    root = tmp_path_factory.mktemp("leak")
    rng = np.random.default_rng(0)
    patients = sorted({row["patient_id"] for row in breakhis_files})
    colour = {p: rng.uniform(20, 235, size=3) for p in patients}
    for row in breakhis_files:
        if row["magnification"] != "40":
            continue
        pixels = colour[row["patient_id"]] + rng.normal(0, 4, size=(8, 8, 3))
        buf = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, format="PNG")
        path = root / row["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
    return root


def _memoriser_accuracy(root: Path, split: str, cache: Path) -> tuple[float, float]:
    """1-NN test accuracy on the pixels, and the fraction of test images whose patient is also in training."""
    dm = BreakHisDataModule(root=str(root), magnification=40, split=split, image_size=8, cache_dir=str(cache), seed=0)
    dm.setup("fit")
    dm.setup("test")
    train, test = dm.dataset("train"), dm.dataset("test")
    x_train = train.images[train.rows].flatten(1).float()
    x_test = test.images[test.rows].flatten(1).float()
    nearest = torch.cdist(x_test, x_train).argmin(dim=1)
    accuracy = (train.labels[nearest] == test.labels).float().mean().item()
    shared = torch.isin(test.groups, train.groups).float().mean().item()
    return accuracy, shared


def test_image_split_leaks_patients_and_inflates_accuracy(patient_coloured_tree, tmp_path):
    leaky_acc, leaky_shared = _memoriser_accuracy(patient_coloured_tree, "image", tmp_path / "cache")
    clean_acc, clean_shared = _memoriser_accuracy(patient_coloured_tree, "patient", tmp_path / "cache")
    assert leaky_shared == 1.0  # every test image's patient is also a training patient
    assert clean_shared == 0.0
    assert leaky_acc >= 0.98  # memorising patients is enough
    # Unseen patients: the nearest training patient's label is unrelated to the truth, so this is chance for
    # ~25 test patients (0.66 here; 0.47-0.74 over 3 colour x 4 split seeds, while the image split gave 1.000).
    assert clean_acc <= 0.8
    assert leaky_acc - clean_acc >= 0.2
