"""Batched transforms: normalisation, and the augmentation against a step-by-step reference of the same maths.

The reference applies the crop (``roi_align``), the flips and the transpose (``flip``/``transpose``), the HED
jitter (RGB to HED, scale and shift, HED to RGB with :mod:`breakhis_lit.stain.hed`), the three colour jitters one
after another, the clamp and the normalisation separately, as the package did before the steps were fused. On
the same uniforms both give the same images (up to float rounding); drawn independently, their parameters and
outputs have the same distributions.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.ops import roi_align

from breakhis_lit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchAugmentation,
    ColourNormalise,
    CropDihedral,
    HEDStain,
    denormalize,
    normalize,
)
from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain import hed_jitter
from breakhis_lit.stain.hed import LOG_ADJUST, hed_to_rgb, rgb_to_hed, stain_matrix

GRAY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _batch(b=6, h=32, w=32, seed=0):
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _smooth_batch(b=6, h=32, w=32, seed=0):
    """Smooth images (bilinear interpolation of a coarse grid), closer to histology than pixel noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, h // 4, w // 4, generator=g) * 255
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear").round().to(torch.uint8)


NO_HED = {"hed_scale": 0.0, "hed_bias": 0.0}
HED = (hed_jitter.DEFAULT_SCALE, hed_jitter.DEFAULT_BIAS)


def reference(images, u, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), f=(0.1, 0.1, 0.1), crop=True, flips=True, hed=HED):
    """The augmentation step by step from uniforms ``u`` ``[B, 16]`` (crop 4, flips 3, HED 6, jitter 3).

    With ``hed=None`` there is no HED step and the jitter takes columns 7-9 (``u`` ``[B, 10]`` is enough).
    """
    x = images.float() / 255
    b, _, h, w = x.shape
    if crop:
        area = u[:, 0] * (scale[1] - scale[0]) + scale[0]
        aspect = torch.exp(u[:, 1] * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0]))
        cw = (torch.sqrt(area * aspect) * w).clamp(max=w)
        ch = (torch.sqrt(area / aspect) * h).clamp(max=h)
        x0, y0 = u[:, 2] * (w - cw), u[:, 3] * (h - ch)
        boxes = torch.stack([torch.arange(b, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], dim=1)
        x = roi_align(x, boxes, output_size=(h, w), sampling_ratio=1, aligned=True)
    if flips:
        hflip, vflip, turn = (u[:, i].view(-1, 1, 1, 1) < 0.5 for i in (4, 5, 6))
        x = torch.where(hflip, x.flip(-1), x)
        x = torch.where(vflip, x.flip(-2), x)
        if h == w:
            x = torch.where(turn, x.transpose(-1, -2), x)
    if hed is not None:  # concentrations scaled by U(1 +- scale) and shifted by U(+-bias), per sample and stain
        alpha = (u[:, 7:10] * 2 - 1) * hed[0] + 1
        beta = (u[:, 10:13] * 2 - 1) * hed[1]
        x = hed_to_rgb(rgb_to_hed(x, clip=False) * alpha.view(-1, 3, 1, 1) + beta.view(-1, 3, 1, 1))
    first = 7 if hed is None else 13
    fb, fc, fs = ((u[:, first + i] * 2 * v + 1 - v).view(-1, 1, 1, 1) for i, v in enumerate(f))
    y = x * fb  # brightness
    mean = (y * GRAY).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    y = (y - mean) * fc + mean  # contrast around the mean grey level
    gray = (y * GRAY).sum(1, keepdim=True)
    y = ((y - gray) * fs + gray).clamp(0, 1)  # saturation around each pixel's grey value
    return normalize(y)


def _uniforms(n, seed, k=16):
    return torch.rand(n, k, generator=torch.Generator().manual_seed(seed))


def test_normalize_values_and_inverse():
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    y = normalize(x)
    assert y.dtype == torch.float32
    for c in range(3):
        assert torch.allclose(y[:, c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
    img = _batch()
    assert torch.allclose(denormalize(normalize(img)), img.float() / 255, atol=1e-6)


@pytest.mark.parametrize("shape", [(32, 32), (24, 40)], ids=["square", "non-square"])
@pytest.mark.parametrize("seed", range(3))
def test_same_images_as_the_step_by_step_reference(shape, seed):
    images, u = _smooth_batch(16, *shape, seed=seed), _uniforms(16, seed)
    aug = BatchAugmentation(brightness=0.3, contrast=0.4, saturation=0.5)
    out = aug(images, aug.parameters(u, *shape))
    expected = reference(images, u, f=(0.3, 0.4, 0.5))
    assert out.shape == expected.shape == (16, 3, *shape)
    assert (out - expected).abs().max() < 2e-4  # the same sampling points, rounded differently


@pytest.mark.parametrize("seed", range(3))
def test_same_images_as_the_reference_with_strong_hed_jitter(seed):
    images, u = _smooth_batch(16, seed=seed), _uniforms(16, seed)
    aug = BatchAugmentation(hed_scale=0.3, hed_bias=0.1)
    expected = reference(images, u, hed=(0.3, 0.1))
    assert (aug(images, aug.parameters(u, 32, 32)) - expected).abs().max() < 2e-4
    assert (expected - reference(images, u, hed=None)).abs().max() > 0.5  # the jitter shows


def test_same_images_as_the_reference_without_hed_jitter():
    images, u = _smooth_batch(16, seed=4), _uniforms(16, 4, k=10)
    aug = BatchAugmentation(brightness=0.3, contrast=0.4, saturation=0.5, **NO_HED)
    assert not any(isinstance(step, HEDStain) for step in aug.steps)
    assert aug.width == 24
    expected = reference(images, u, f=(0.3, 0.4, 0.5), hed=None)
    assert (aug(images, aug.parameters(u, 32, 32)) - expected).abs().max() < 2e-4


def test_hed_step_is_the_stain_librarys_apply_on_the_0_255_scale():
    x = _smooth_batch(8, seed=3).float()
    u = _uniforms(8, 3, k=6)
    step = HEDStain(scale=0.2, bias=0.05)
    params = ((u * 2 - 1).view(-1, 2, 3) * torch.tensor([0.2, 0.05]).view(1, 2, 1)).add(
        torch.tensor([1.0, 0.0]).view(1, 2, 1)
    )
    expected = hed_jitter.apply(x / 255, params) * 255
    assert (step.apply(x, step.parameters(u, 32, 32)) - expected).abs().max() < 1e-3  # of 255


def test_hed_step_at_zero_strength_is_the_identity():
    x = _smooth_batch(8, seed=5).float().clamp_min(1)  # above the 1e-6 floor of the logarithm
    step = HEDStain(scale=0.0, bias=0.0)
    params = step.parameters(torch.rand(8, 6), 32, 32)
    torch.testing.assert_close(params[:, :9], torch.eye(3).flatten().expand(8, 9), rtol=0, atol=1e-6)
    assert params[:, 9:].abs().max() < 1e-5
    assert (step.apply(x, params) - x).abs().max() < 1e-3  # float rounding of exp(log x), of 255
    images, u = _batch(8), _uniforms(8, 6, k=10)
    plain = BatchAugmentation(**NO_HED)
    zero = BatchAugmentation(hed_scale=0, hed_bias=0)
    assert torch.equal(plain(images, plain.parameters(u, 32, 32)), zero(images, zero.parameters(u, 32, 32)))


def test_hed_strength_is_checked():
    with pytest.raises(BreakHisError, match="scale"):
        BatchAugmentation(hed_scale=1.5)
    with pytest.raises(BreakHisError, match="bias"):
        BatchAugmentation(hed_bias=-0.1)


def test_flips_and_turns_alone_permute_pixels_exactly_enough():
    images, u = _batch(16), _uniforms(16, 5)
    aug = BatchAugmentation(crop_scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0, **NO_HED)
    out = aug(images, aug.parameters(u[:, :10], 32, 32))
    expected = reference(images, u, f=(0, 0, 0), crop=False, hed=None)
    assert (out - expected).abs().max() < 1e-4


def test_colour_and_normalisation_alone_equal_the_three_jitters_then_normalize():
    images, u = _batch(8), _uniforms(8, 7)
    aug = BatchAugmentation(crop_scale=(1.0, 1.0), flips=False, brightness=0.3, contrast=0.4, saturation=0.5, **NO_HED)
    assert [type(step) for step in aug.steps] == [ColourNormalise]
    out = aug(images, aug.parameters(u[:, 7:10], 32, 32))
    expected = reference(images, u, f=(0.3, 0.4, 0.5), crop=False, flips=False, hed=None)
    assert (out - expected).abs().max() < 2e-5
    plain = BatchAugmentation(crop_scale=(1.0, 1.0), flips=False, brightness=0, contrast=0, saturation=0, **NO_HED)
    assert (plain(images, plain.draw(8, 32, 32)) - normalize(images)).abs().max() < 2e-5


def _decoded(params, h, w):
    """Crop area fraction, aspect, flips, turn, HED factors and shifts and jitter factors back from the rows."""
    theta, hed, colour = params[:, :6].view(-1, 2, 3), params[:, 6:18].double(), params[:, 18:]
    # M = (hed_from_rgb diag(alpha) rgb_from_hed)^T; offset = -ln(1e6) beta rgb_from_hed + ln(255) (1 - M 1).
    rgb_from_hed = stain_matrix(False, torch.device("cpu"), torch.float64)
    hed_from_rgb = stain_matrix(True, torch.device("cpu"), torch.float64)
    m = hed[:, :9].view(-1, 3, 3)
    alpha = torch.diagonal(rgb_from_hed @ m.transpose(1, 2) @ hed_from_rgb, dim1=1, dim2=2)
    shift = hed[:, 9:] - math.log(255.0) * (1 - m.sum(-1))
    beta = (shift / -LOG_ADJUST) @ hed_from_rgb
    turn = theta[:, 0, 0] == 0
    sx = torch.where(turn, theta[:, 0, 1], theta[:, 0, 0])
    sy = torch.where(turn, theta[:, 1, 0], theta[:, 1, 1])
    m = colour[:, :9].view(-1, 3, 3) * 255 * torch.tensor(IMAGENET_STD).view(1, 3, 1)
    q = colour[:, 9:].view(-1, 3, 3) * 255 * torch.tensor(IMAGENET_STD).view(1, 3, 1)
    b = m[:, 0, 1] / 0.587  # off-diagonal: (1 - fs) fc fb times the grey weight
    a = m[:, 0, 0] - b * 0.299
    c = q[:, 0, 0] / 0.299  # (1 - fc) fb
    fb = a + b + c
    return {
        "area": sx.abs() * sy.abs(),
        "aspect": (sx.abs() * w) / (sy.abs() * h),
        "hflip": (sx < 0).float(),
        "vflip": (sy < 0).float(),
        "turn": turn.float(),
        "cx": theta[:, 0, 2],
        "fb": fb,
        "fc": (a + b) / fb,
        "fs": a / (a + b),
        **{f"alpha_{s}": alpha[:, i].float() for i, s in enumerate("HED")},
        **{f"beta_{s}": beta[:, i].float() for i, s in enumerate("HED")},
    }


def _reference_draws(n, h, w, seed):
    """The same quantities drawn as the package drew them before (separate torch.rand calls per quantity)."""
    g = torch.Generator().manual_seed(seed)
    area = torch.rand(n, generator=g) * 0.5 + 0.5
    aspect = torch.exp(torch.rand(n, generator=g) * (math.log(4 / 3) - math.log(3 / 4)) + math.log(3 / 4))
    cw = (torch.sqrt(area * aspect) * w).clamp(max=w)
    ch = (torch.sqrt(area / aspect) * h).clamp(max=h)
    x0 = torch.rand(n, generator=g) * (w - cw)
    torch.rand(n, generator=g)  # y0
    flips = [(torch.rand(n, generator=g) < 0.5).float() for _ in range(3)]
    alpha = [torch.rand(n, generator=g) * 0.1 + 0.95 for _ in range(3)]  # U(1 +- 0.05)
    beta = [torch.rand(n, generator=g) * 0.04 - 0.02 for _ in range(3)]  # U(+-0.02)
    jitter = [torch.rand(n, generator=g) * 0.2 + 0.9 for _ in range(3)]
    return {
        "area": cw * ch / (w * h),
        "aspect": cw / ch,
        "hflip": flips[0],
        "vflip": flips[1],
        "turn": flips[2] if h == w else torch.zeros(n),
        "cx": (2 * x0 + cw) / w - 1,
        "fb": jitter[0],
        "fc": jitter[1],
        "fs": jitter[2],
        **{f"alpha_{s}": alpha[i] for i, s in enumerate("HED")},
        **{f"beta_{s}": beta[i] for i, s in enumerate("HED")},
    }


@pytest.mark.parametrize("shape", [(64, 64), (48, 80)], ids=["square", "non-square"])
def test_parameters_have_the_reference_distribution(shape):
    n = 20000
    ours = _decoded(BatchAugmentation().draw(n, *shape, torch.Generator().manual_seed(1)), *shape)
    ref = _reference_draws(n, *shape, seed=2)
    hed_keys = [f"{p}_{s}" for p in ("alpha", "beta") for s in "HED"]
    for key in ("area", "aspect", "cx", "fb", "fc", "fs", *hed_keys):
        assert stats.ks_2samp(ours[key].numpy(), ref[key].numpy()).pvalue > 1e-3, key
    for key in ("hflip", "vflip", "turn"):
        assert abs(ours[key].mean().item() - ref[key].mean().item()) < 6 * math.sqrt(0.25 / n), key
    assert ours["turn"].sum() == 0 if shape[0] != shape[1] else ours["turn"].mean() > 0.4
    for key in ("fb", "fc", "fs"):  # U(0.9, 1.1): mean 1, variance 0.2**2 / 12
        assert ours[key].mean().item() == pytest.approx(1.0, abs=4 * math.sqrt(0.04 / 12 / n))
        assert ours[key].var().item() == pytest.approx(0.04 / 12, rel=0.05)
        assert ours[key].min() >= 0.9 - 1e-5
        assert ours[key].max() <= 1.1 + 1e-5
    for key, (low, high) in {
        **{f"alpha_{s}": (0.95, 1.05) for s in "HED"},
        **{f"beta_{s}": (-0.02, 0.02) for s in "HED"},
    }.items():
        assert ours[key].min() >= low - 1e-4, key
        assert ours[key].max() <= high + 1e-4, key
        assert ours[key].min() < low + 0.001, key  # fills its range
        assert ours[key].max() > high - 0.001, key


def test_outputs_have_the_reference_distribution():
    n = 3000
    images = _smooth_batch(1, 32, 32).expand(n, -1, -1, -1)
    aug = BatchAugmentation()
    ours = aug(images, aug.draw(n, 32, 32, torch.Generator().manual_seed(3)))
    ref = reference(images, _uniforms(n, 4))
    for stat in (lambda t: t.mean((2, 3)), lambda t: t.std((2, 3)), lambda t: t[:, :, :8, :8].mean((2, 3))):
        a, b = stat(ours), stat(ref)
        for c in range(3):
            assert stats.ks_2samp(a[:, c].numpy(), b[:, c].numpy()).pvalue > 1e-3


def test_draw_is_one_draw_of_the_generator():
    aug = BatchAugmentation()
    g = torch.Generator().manual_seed(11)
    params = aug.draw(40, 32, 32, g)
    u = torch.rand(40, 16, generator=torch.Generator().manual_seed(11))
    assert torch.equal(params, aug.parameters(u, 32, 32))
    assert params.shape == (40, aug.width) == (40, 36)
    assert torch.equal(aug.draw(40, 32, 32, torch.Generator().manual_seed(11))[:10], params[:10])


def test_augmentation_deterministic_with_generator():
    x = _batch()
    aug = BatchAugmentation()
    a = aug(x, generator=torch.Generator().manual_seed(1))
    b = aug(x, generator=torch.Generator().manual_seed(1))
    c = aug(x, generator=torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, 32, 32)
    assert a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    denorm = denormalize(a.clone())
    assert torch.allclose(denorm, denormalize(a.clone()).clamp(0, 1))  # within the normalised images of [0, 1]


def test_augmentation_is_per_sample():
    x = _batch(1).expand(16, -1, -1, -1).contiguous()
    out = BatchAugmentation()(x, generator=torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) > 8


def test_crop_handles_non_square():
    y = BatchAugmentation()(_batch(3, 24, 40), generator=torch.Generator().manual_seed(0))
    assert y.shape == (3, 3, 24, 40)


def test_float_input_in_unit_range():
    x = _batch()
    params = BatchAugmentation().draw(6, 32, 32, torch.Generator().manual_seed(0))
    aug = BatchAugmentation()
    assert (aug(x.float() / 255, params) - aug(x, params)).abs().max() < 1e-4


def test_steps_own_their_blocks():
    crop = CropDihedral()
    colour = ColourNormalise()
    hed = HEDStain()
    assert (crop.uniforms, crop.width, colour.uniforms, colour.width) == (7, 6, 3, 18)
    assert (hed.uniforms, hed.width) == (6, 12)
    assert [type(step) for step in BatchAugmentation().steps] == [CropDihedral, HEDStain, ColourNormalise]
    u = torch.rand(5, 7)
    assert crop.parameters(u, 32, 32).shape == (5, 6)
    assert np.isfinite(colour.parameters(torch.rand(5, 3), 32, 32).numpy()).all()


def test_empty_batch():
    out = BatchAugmentation()(torch.zeros((0, 3, 8, 8), dtype=torch.uint8))
    assert out.shape == (0, 3, 8, 8)
    assert out.dtype == torch.float32
