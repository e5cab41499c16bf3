"""VGG16Inception: layout, parameter count, forward/backward, Grad-CAM, torchvision VGG16 weights."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models import NaiveInceptionBlock, VGG16Inception, save_weights


@pytest.fixture(scope="module")
def model() -> VGG16Inception:
    torch.manual_seed(0)
    return VGG16Inception()


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_layout_and_parameter_count(model):
    assert len(model.features) == 24  # torchvision vgg16().features[:24], block 4 max-pool last
    assert isinstance(model.features[23], torch.nn.MaxPool2d)
    assert n_params(model.features) == 7_635_264
    assert n_params(model.inception) == 1_032_416
    assert model.num_features == 64 + 128 + 32 + 512
    assert n_params(model) == 8_670_626
    assert model.channels_last is True


def test_forward_backward(model):
    model.train()
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 2)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_gradcam(model):
    assert model.gradcam_target_layers() == [model.norm]
    assert model.gradcam_reshape_transform() is None
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    cam = GradCAM(model, model.gradcam_target_layers())
    for c in range(2):
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * 2)
        assert maps.shape == (2, 64, 64)
        assert np.isfinite(maps).all()
        if all(m.max() > m.min() for m in maps):
            return
    raise AssertionError("Grad-CAM map is constant for every class")


def test_pool_projection_and_classes():
    block = NaiveInceptionBlock(16, c1=4, c3=8, c5=2, pool_projection=6)
    assert block(torch.randn(1, 16, 5, 5)).shape == (1, 4 + 8 + 2 + 6, 5, 5)
    model = VGG16Inception(num_classes=8, pool_projection=64, dropout=0.0)
    assert model.num_features == 64 + 128 + 32 + 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 8)
    with pytest.raises(BreakHisError, match="dropout"):
        VGG16Inception(dropout=1.5)


def test_loads_a_torchvision_vgg16_checkpoint(model, tmp_path):
    """Block 1-4 convolutions load; block 5 and the 1000-class classifier are ignored and reported."""
    torch.manual_seed(1)
    tv = {f"features.{k}": torch.randn_like(v) for k, v in model.features.state_dict().items()}
    tv["features.24.weight"] = torch.randn(512, 512, 3, 3)
    tv["features.28.bias"] = torch.randn(512)
    tv["classifier.6.weight"] = torch.randn(1000, 64)  # shape irrelevant: not part of this network
    tv["classifier.6.bias"] = torch.randn(1000)
    path = tmp_path / "vgg16.pth"
    torch.save(tv, path)
    target = VGG16Inception(weights=str(path))
    before = {k: v.clone() for k, v in target.state_dict().items() if not k.startswith("features.")}
    target.load_pretrained()
    for k, v in target.features.state_dict().items():
        assert torch.equal(v, tv[f"features.{k}"])
    for k, v in target.state_dict().items():
        if k in before:
            assert torch.equal(v, before[k])
    report = target.load_report
    assert sorted(report.skipped_head) == ["classifier.6.bias", "classifier.6.weight"]
    assert sorted(report.ignored) == ["features.24.weight", "features.28.bias"]
    assert any(k.startswith("inception.") for k in report.left_initialised)


def test_round_trip(model, tmp_path):
    path = save_weights(model, tmp_path / "vgg_inception.safetensors")
    other = VGG16Inception(weights=path)
    other.load_pretrained()
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
