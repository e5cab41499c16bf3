"""TimmClassifier: every baseline of the paper builds, trains one step and gives a Grad-CAM map."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models import ChannelsLastToFirst, TimmClassifier, TokensToGrid

# (timm name, img_size given to the model, input side): the smallest input each model allows
# (Swin-B window 7 needs 224; DINOv2 ViT-S runs at 224 to check the 16x16 grid the configs use).
BASELINES = [
    ("resnet50", None, 64),
    ("seresnet50", None, 64),
    ("densenet121", None, 64),
    ("vgg16", None, 64),
    ("vit_base_patch16_224", 64, 64),
    ("swin_base_patch4_window7_224", 224, 224),
    ("vit_small_patch14_dinov2", 224, 224),
    ("vit_base_patch14_dinov2", 56, 56),
]
TRANSFORMERS = {
    "vit_base_patch16_224",
    "swin_base_patch4_window7_224",
    "vit_small_patch14_dinov2",
    "vit_base_patch14_dinov2",
}


@pytest.fixture(scope="module", params=BASELINES, ids=[b[0] for b in BASELINES])
def baseline(request):
    """Each baseline is built once per test module (the big ones take seconds)."""
    name, img_size, side = request.param
    torch.manual_seed(0)
    return TimmClassifier(name, num_classes=2, img_size=img_size), side


def test_forward_backward_and_gradcam(baseline):
    """One training step (train mode), then Grad-CAM (eval mode) on the same model."""
    model, side = baseline
    assert model.channels_last is (model.model_name not in TRANSFORMERS)
    torch.manual_seed(0)
    x = torch.randn(2, 3, side, side)
    model.train()
    logits = model(x)
    assert logits.shape == (2, 2)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)

    # Grad-CAM needs activation gradients only: freezing the weights spares e.g. VGG16's 400 MB fc6 gradient
    model.requires_grad_(False)
    x.requires_grad_(True)
    cam = GradCAM(model, model.gradcam_target_layers(), reshape_transform=model.gradcam_reshape_transform())
    for c in range(2):  # a random-init class score can be negative everywhere: then try the other class
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * 2)
        assert maps.shape == (2, side, side)
        assert np.isfinite(maps).all()
        if all(m.max() > m.min() for m in maps):
            break
    else:
        raise AssertionError(f"{model.model_name}: Grad-CAM map is constant for every class")
    model.requires_grad_(True)


def test_gradcam_layers_and_reshape(baseline):
    model, side = baseline
    name, m = model.model_name, model.model
    (layer,) = model.gradcam_target_layers()
    reshape = model.gradcam_reshape_transform()
    if name in ("resnet50", "seresnet50"):
        assert layer is m.layer4[-1]
        assert reshape is None
    elif name == "densenet121":
        assert layer is m.features.norm5
        assert reshape is None
    elif name == "vgg16":
        assert isinstance(layer, torch.nn.ReLU)
        assert layer is list(m.features)[-2]
        assert reshape is None
    elif name.startswith("swin"):
        assert layer is m.layers[-1].blocks[-1].norm1
        assert isinstance(reshape, ChannelsLastToFirst)
        assert reshape(torch.zeros(2, 7, 7, 1024)).shape == (2, 1024, 7, 7)
    else:
        assert layer is m.blocks[-1].norm1
        assert isinstance(reshape, TokensToGrid)
        patch = 16 if "patch16" in name else 14
        assert reshape.grid_size == (side // patch, side // patch)
        assert reshape.num_prefix_tokens == m.num_prefix_tokens == 1
        tokens = torch.zeros(2, 1 + (side // patch) ** 2, m.embed_dim)
        assert reshape(tokens).shape == (2, m.embed_dim, side // patch, side // patch)
        if name == "vit_small_patch14_dinov2":  # built with img_size=224 instead of DINOv2's 518
            assert reshape.grid_size == (16, 16)
            assert m.pos_embed.shape == (1, 1 + 16 * 16, 384)


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(BreakHisError, match=r"model_name='resnet5O'.*close matches:.*resnet50") as info:
        TimmClassifier("resnet5O")
    assert "\n" not in str(info.value)
    with pytest.raises(BreakHisError, match="close matches: none"):
        TimmClassifier("zzzz_not_a_model_qqqq")


def test_img_size_only_for_fixed_size_models():
    conv = TimmClassifier("resnet18", num_classes=3, img_size=48, drop_rate=0.1)
    assert "img_size" not in conv._create_kwargs
    assert conv(torch.randn(1, 3, 48, 48)).shape == (1, 3)
    vit = TimmClassifier("vit_tiny_patch16_224", img_size=32, drop_path_rate=0.1)
    assert tuple(vit.model.patch_embed.grid_size) == (2, 2)
    with pytest.raises(BreakHisError, match="rejected the options"):
        TimmClassifier("resnet18", model_kwargs={"no_such_option": 1})
