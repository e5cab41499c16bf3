import numpy as np
import pytest
import torch
from torch import nn

from breakhis_lit.gradcam import PredictedClassTarget, compute_cams


def test_shapes_range_and_probabilities(tiny_net, images):
    cams, probs = compute_cams(tiny_net, images)
    assert cams.shape == (5, 32, 40)
    assert cams.dtype == np.float32
    assert cams.min() >= 0.0
    assert cams.max() <= 1.0
    assert cams.max() > 0.5  # each map is scaled to [0, 1]
    assert probs.shape == (5, 2)
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    tiny_net.eval()
    with torch.no_grad():
        torch.testing.assert_close(probs, tiny_net(images).softmax(1))


def test_default_target_is_the_predicted_class(tiny_net, images):
    cams, probs = compute_cams(tiny_net, images)
    explicit, _ = compute_cams(tiny_net, images, targets=probs.argmax(1).tolist())
    np.testing.assert_allclose(cams, explicit, atol=1e-6)
    other, _ = compute_cams(tiny_net, images, targets=(1 - probs.argmax(1)).tolist())
    assert np.abs(other - cams).max() > 0.1


def test_predicted_class_target():
    target = PredictedClassTarget()
    assert target(torch.tensor([0.1, 3.0, -1.0])) == 3.0
    torch.testing.assert_close(target(torch.tensor([[0.1, 3.0], [2.0, 1.0]])), torch.tensor([3.0, 2.0]))


def test_batches_give_the_same_maps(tiny_net, images):
    whole, p1 = compute_cams(tiny_net, images, batch_size=16)
    chunked, p2 = compute_cams(tiny_net, images, batch_size=2)
    np.testing.assert_allclose(whole, chunked, atol=1e-5)
    torch.testing.assert_close(p1, p2)


def test_restores_modes_flags_and_grads_mid_training(tiny_net, images):
    tiny_net.train()
    tiny_net.features[1].eval()  # a frozen BatchNorm inside a training model stays frozen
    tiny_net.features[0].weight.requires_grad_(False)
    tiny_net(images).sum().backward()  # a half-done training step: grads accumulated
    grads = {n: p.grad.clone() for n, p in tiny_net.named_parameters() if p.grad is not None}
    flags = {n: p.requires_grad for n, p in tiny_net.named_parameters()}
    modes = {n: m.training for n, m in tiny_net.named_modules()}

    compute_cams(tiny_net, images)

    assert {n: m.training for n, m in tiny_net.named_modules()} == modes
    assert {n: p.requires_grad for n, p in tiny_net.named_parameters()} == flags
    assert tiny_net.features[0].weight.grad is None
    for name, param in tiny_net.named_parameters():
        if name in grads:
            torch.testing.assert_close(param.grad, grads[name], rtol=0, atol=0)


def test_accumulates_no_grads(tiny_net, images):
    compute_cams(tiny_net, images)
    assert all(p.grad is None for p in tiny_net.parameters())


def test_releases_hooks(tiny_net, images):
    layer = tiny_net.gradcam_target_layers()[0]
    compute_cams(tiny_net, images)
    assert not layer._forward_hooks
    with pytest.raises(ValueError, match="out of range"):
        compute_cams(tiny_net, images, targets=[0, 1, 2, 0, 0])
    assert not layer._forward_hooks


def test_works_under_inference_mode_with_inference_tensors(tiny_net, images):
    expected, expected_probs = compute_cams(tiny_net, images)
    with torch.inference_mode():
        inference_images = images * 1.0
        assert inference_images.is_inference()
        cams, probs = compute_cams(tiny_net, inference_images)
        assert torch.is_inference_mode_enabled()  # the caller's mode is back
    np.testing.assert_allclose(cams, expected, atol=1e-6)
    torch.testing.assert_close(probs, expected_probs)
    with torch.no_grad():
        np.testing.assert_allclose(compute_cams(tiny_net, images)[0], expected, atol=1e-6)


def test_autocast_is_disabled(tiny_net, images):
    expected, _ = compute_cams(tiny_net, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cams, probs = compute_cams(tiny_net, images)
    np.testing.assert_allclose(cams, expected, atol=1e-6)
    assert probs.dtype == torch.float32


def test_cudnn_autotuning_is_off_inside_and_restored(tiny_net, images, monkeypatch):
    seen = []
    forward = type(tiny_net).forward

    def recording(self, x):
        seen.append(torch.backends.cudnn.benchmark)
        return forward(self, x)

    monkeypatch.setattr(type(tiny_net), "forward", recording)
    for flag in (True, False):
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", flag)
        compute_cams(tiny_net, images, batch_size=2)
        assert torch.backends.cudnn.benchmark is flag
    assert seen
    assert not any(seen)


def test_bfloat16_model(tiny_net, images):
    expected, _ = compute_cams(tiny_net, images)
    cams, probs = compute_cams(tiny_net.to(torch.bfloat16), images)
    assert cams.dtype == np.float32
    assert probs.dtype == torch.float32
    assert np.corrcoef(cams.ravel(), expected.ravel())[0, 1] > 0.9


def test_compiled_model_runs_eagerly(tiny_net, images):
    expected, _ = compute_cams(tiny_net, images)
    tiny_net.compile()
    cams, _ = compute_cams(tiny_net, images)
    np.testing.assert_allclose(cams, expected, atol=1e-5)


def test_token_model_with_reshape_transform():
    class Tokens(nn.Module):
        """A ViT-like toy: a class token plus a 4 x 5 grid of patch tokens."""

        num_classes = 3

        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 6, 8, stride=8)
            self.cls = nn.Parameter(torch.zeros(1, 1, 6))
            self.block = nn.Linear(6, 6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1)
            return self.head(self.block(tokens).relu().mean(1))

        def gradcam_target_layers(self):
            return [self.block]

        def gradcam_reshape_transform(self):
            return lambda t: t[:, 1:].reshape(t.shape[0], 4, 5, t.shape[2]).permute(0, 3, 1, 2)

    torch.manual_seed(0)
    cams, probs = compute_cams(Tokens(), torch.randn(2, 3, 32, 40), targets=[2, 0])
    assert cams.shape == (2, 32, 40)
    assert probs.shape == (2, 3)


def test_rejects_bad_input(tiny_net, images):
    with pytest.raises(TypeError, match="normalised float"):
        compute_cams(tiny_net, (images * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        compute_cams(tiny_net, images[0])
    with pytest.raises(ValueError, match="targets"):
        compute_cams(tiny_net, images, targets=[0])
    cams, probs = compute_cams(tiny_net, images[:0])
    assert cams.shape == (0, 32, 40)
    assert probs.shape == (0, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_under_bf16_autocast_and_inference_mode(tiny_net, images):
    expected, expected_probs = compute_cams(tiny_net, images)
    model = tiny_net.cuda()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        cams, probs = compute_cams(model, images.cuda())
    assert probs.device.type == "cpu"
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs, expected_probs, atol=2e-3, rtol=0)
    assert np.corrcoef(cams.ravel(), expected.ravel())[0, 1] > 0.99
