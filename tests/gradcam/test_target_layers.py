"""Grad-CAM target layers and reshape transforms of the package's backbones (small variants, random weights)."""

import numpy as np
import pytest
import torch

from breakhis_lit.gradcam import compute_cams
from breakhis_lit.models import DALAResNet, TimmClassifier, VGG16Inception

CASES = {
    # id: (factory, input side, expected [C, h, w] of the (reshaped) target-layer output)
    "dala_resnet18_after_layer4": (lambda: DALAResNet(arch="resnet18"), 128, (512, 4, 4)),
    "dala_resnet18_each_block": (lambda: DALAResNet(arch="resnet18", gate_position="each_block"), 128, (512, 4, 4)),
    "vgg16_inception": (lambda: VGG16Inception(), 64, (None, 4, 4)),
    "timm_resnet18": (lambda: TimmClassifier("resnet18"), 96, (512, 3, 3)),
    "vit_tiny_patch16_224": (lambda: TimmClassifier("vit_tiny_patch16_224"), 224, (192, 14, 14)),
    "dinov2_vits14_at_224": (lambda: TimmClassifier("vit_small_patch14_dinov2", img_size=224), 224, (384, 16, 16)),
    "swin_tiny_window7_224": (lambda: TimmClassifier("swin_tiny_patch4_window7_224"), 224, (768, 7, 7)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gradcam_layers_and_reshape(case):
    factory, side, (channels, h, w) = CASES[case]
    torch.manual_seed(0)
    model = factory().eval()
    layers = model.gradcam_target_layers()
    assert layers
    assert all(any(layer is m for m in model.modules()) for layer in layers)
    reshape = model.gradcam_reshape_transform()
    seen = []
    handle = layers[-1].register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    images = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    try:
        cams, probs = compute_cams(model, images)
    finally:
        handle.remove()
    grid = reshape(seen[0]) if reshape is not None else seen[0]
    assert grid.shape[0] == 2
    assert grid.shape[2:] == (h, w)
    if channels is not None:
        assert grid.shape[1] == channels
    assert cams.shape == (2, side, side)
    assert np.isfinite(cams).all()
    assert cams.std(axis=(1, 2)).min() > 0.01  # a real spatial map, not a constant
    assert probs.shape == (2, 2)
