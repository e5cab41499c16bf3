"""Fixtures of the stain tests: the 18 real BreakHis PNGs of ``../shared/breakhis/samples`` (skipped if absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="session")
def sample_paths(breakhis_samples: list[Path]) -> list[Path]:
    """The real sample PNGs, sorted by name (``tests/conftest.py`` skips when they are absent)."""
    return breakhis_samples


@pytest.fixture(scope="session")
def sample_arrays(sample_paths: list[Path]) -> list[np.ndarray]:
    """The samples at full size as uint8 ``[H, W, 3]`` arrays (17 are 700 x 460, one is 700 x 456)."""
    out = []
    for path in sample_paths:
        with Image.open(path) as img:
            out.append(np.asarray(img.convert("RGB")).copy())
    return out


@pytest.fixture(scope="session")
def samples_224(sample_arrays: list[np.ndarray]) -> torch.Tensor:
    """The samples squashed to 224 x 224 (bilinear, as the image cache), uint8 ``[18, 3, 224, 224]``."""
    small = [np.asarray(Image.fromarray(a).resize((224, 224), Image.Resampling.BILINEAR)) for a in sample_arrays]
    return torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2).contiguous()
