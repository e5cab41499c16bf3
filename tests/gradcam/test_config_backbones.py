"""Grad-CAM works on the exact backbone of every shipped config (random weights, training image size)."""

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from breakhis_lit.gradcam import compute_cams

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_backbone_explains(config):
    """The exact backbone of every shipped config (random weights) at its training image size."""
    loaded = yaml.safe_load(config.read_text())
    spec = loaded["model"]["backbone"]
    module, name = spec["class_path"].rsplit(".", 1)
    init_args = {k: v for k, v in spec.get("init_args", {}).items() if k not in ("pretrained", "weights")}
    torch.manual_seed(0)
    model = getattr(importlib.import_module(module), name)(**init_args).eval()
    side = int((loaded.get("data") or {}).get("image_size", 224))
    cams, probs = compute_cams(model, torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0)))
    assert cams.shape == (1, side, side)
    assert np.isfinite(cams).all()
    assert cams.std() > 0.01
    assert probs.shape == (1, model.num_classes)
