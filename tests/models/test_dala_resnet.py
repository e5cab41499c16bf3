"""DALAResNet: the paper's parameter count, every option, Grad-CAM target."""

import inspect

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models import DALAResNet, DALAResNet50, LightweightAttentionGate


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_backward(model: torch.nn.Module, num_classes: int, size: int = 64) -> None:
    model.train()
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, num_classes)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, num_classes - 1])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def assert_gradcam_ok(model: torch.nn.Module, size: int = 64) -> None:
    """The cam has the input's spatial size, is finite and varies for at least one class."""
    x = torch.randn(2, 3, size, size)
    cam = GradCAM(model, model.gradcam_target_layers(), reshape_transform=model.gradcam_reshape_transform())
    for c in range(model.num_classes):  # a random-init class score can be negative everywhere: try the next
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * 2)
        assert maps.shape == (2, size, size)
        assert np.isfinite(maps).all()
        if all(m.max() > m.min() for m in maps):
            return
    raise AssertionError("Grad-CAM map is constant for every class")


@pytest.fixture(scope="module")
def dala50() -> DALAResNet50:
    torch.manual_seed(0)
    return DALAResNet50()


def test_default_matches_paper_parameter_count(dala50):
    assert n_params(dala50) == 25_611_842
    assert n_params(dala50.attention) == 2_099_712
    assert n_params(dala50.head) == 4_098
    trunk = sum(n_params(getattr(dala50, n)) for n in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"))
    assert trunk == 23_508_032
    assert dala50.channels_last is True
    assert dala50.num_classes == 2
    assert dala50.arch == "resnet50"
    assert "arch" not in inspect.signature(DALAResNet50).parameters


def test_default_forward_backward_and_gradcam(dala50):
    torch.manual_seed(0)
    forward_backward(dala50, 2)
    assert dala50.gradcam_target_layers() == [dala50.attention]
    assert dala50.gradcam_reshape_transform() is None
    assert_gradcam_ok(dala50)


def test_target_layer_outputs_the_gated_map(dala50):
    dala50.eval()
    seen = []
    handle = dala50.gradcam_target_layers()[0].register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        features = dala50.forward_features(x)
    handle.remove()
    assert torch.equal(seen[0], features)
    assert features.shape == (1, 2048, 2, 2)


@pytest.mark.parametrize(
    "options",
    [
        {"gate_position": "each_block"},
        {"head": "two_layer"},
        {"head": "two_layer", "head_logit_relu": False, "head_hidden": 64},
        {"gate_activation": "relu"},
        {"gate_activation": "gelu"},
        {"gate_activation": "silu"},
        {"gate_output": "relu"},
        {"reduction": 16},
        {"dropout": 0.0},
        {"gate_position": "each_block", "head": "two_layer", "reduction": 8, "gate_activation": "tanh"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_build_and_train(options):
    torch.manual_seed(0)
    model = DALAResNet("resnet18", num_classes=3, **options)
    forward_backward(model, 3)


def test_each_block_gates_every_residual_branch():
    model = DALAResNet("resnet18", gate_position="each_block")
    gates = [m for m in model.modules() if isinstance(m, LightweightAttentionGate)]
    assert len(gates) == 8  # 2+2+2+2 BasicBlocks, no extra gate after layer4
    assert isinstance(model.attention, torch.nn.Identity)
    assert model.gradcam_target_layers() == [model.layer4[-1]]
    torch.manual_seed(0)
    assert_gradcam_ok(model)
    # trunk tensor names stay torchvision's, so ImageNet checkpoints still load
    assert "layer1.0.conv1.weight" in model.state_dict()
    assert "layer1.0.gate.fc1.weight" in model.state_dict()


def test_resnet50_each_block_and_two_layer_counts():
    each = DALAResNet50(gate_position="each_block")
    # every bottleneck output (256/512/1024/2048 channels) gets a reduction-4 gate; no layer4 gate
    gates = sum(2 * c * c // 4 + c // 4 + c for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3)) for _ in range(n))
    assert n_params(each) == 23_508_032 + gates + 4_098
    two = DALAResNet50(head="two_layer")
    assert n_params(two) == 25_611_842 - 4_098 + (2048 * 512 + 512) + (512 * 2 + 2)


def test_small_archs_and_channels_last():
    torch.manual_seed(0)
    model = DALAResNet("resnet34", num_classes=2).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    assert model(x).shape == (2, 2)
    assert model.num_features == 512


def test_gate_scales_channels():
    gate = LightweightAttentionGate(8, reduction=2)
    x = torch.rand(2, 8, 3, 3)
    y = gate(x)
    ratio = y / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio))  # one weight per channel
    assert ((ratio > 0) & (ratio < 1)).all()  # sigmoid weights


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"arch": "resnet101"}, "arch"),
        ({"reduction": 3}, "reduction=3"),
        ({"gate_position": "before_layer4"}, "gate_position"),
        ({"head": "mlp"}, "head="),
        ({"gate_activation": "swish"}, "swish"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_options_are_user_errors(options, needle):
    with pytest.raises(BreakHisError, match=needle) as info:
        DALAResNet(**{"arch": "resnet18", **options})
    assert "\n" not in str(info.value)
