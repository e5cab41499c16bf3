import torch

from breakhis_lit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchAugmentation,
    color_jitter,
    denormalize,
    normalize,
    random_dihedral,
    random_resized_crop,
)


def _batch(b=6, h=32, w=32):
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_normalize_values_and_inverse():
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    y = normalize(x)
    assert y.dtype == torch.float32
    for c in range(3):
        assert torch.allclose(y[:, c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
    img = _batch()
    assert torch.allclose(denormalize(normalize(img)), img.float() / 255, atol=1e-6)


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
    assert a.min() >= 0
    assert a.max() <= 1


def test_augmentation_is_per_sample():
    x = _batch(1).expand(16, -1, -1, -1).contiguous()
    out = BatchAugmentation()(x, generator=torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) > 8


def test_dihedral_is_a_permutation_of_pixels():
    x = _batch(8).float()
    y = random_dihedral(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.sort(x.flatten(1))[0], torch.sort(y.flatten(1))[0])
    assert not torch.equal(x, y)


def test_full_crop_is_identity_like():
    x = _batch(4).float() / 255
    y = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x[:, :, 2:-2, 2:-2], y[:, :, 2:-2, 2:-2], atol=1e-5)


def test_crop_handles_non_square():
    y = BatchAugmentation()(_batch(3, 24, 40), generator=torch.Generator().manual_seed(0))
    assert y.shape == (3, 3, 24, 40)


def test_color_jitter_zero_is_identity():
    x = _batch().float() / 255
    assert torch.allclose(color_jitter(x.clone(), 0, 0, 0), x, atol=1e-6)


def test_color_jitter_equals_the_three_steps_one_after_another():
    x = _batch().float() / 255
    b, c, s = 0.3, 0.4, 0.5
    out = color_jitter(x, b, c, s, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    fb, fc, fs = ((torch.rand(6, generator=g) * 2 * v + 1 - v).view(-1, 1, 1, 1) for v in (b, c, s))
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    y = x * fb  # brightness
    mean = (y * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    y = (y - mean) * fc + mean  # contrast around the mean grey level
    gray = (y * w).sum(1, keepdim=True)
    y = ((y - gray) * fs + gray).clamp(0, 1)  # saturation around each pixel's grey value
    assert torch.allclose(out, y, atol=1e-6)


def test_dihedral_output_is_contiguous():
    y = random_dihedral(_batch(8).float(), generator=torch.Generator().manual_seed(0))
    assert y.is_contiguous()


def test_empty_batch():
    assert BatchAugmentation()(torch.zeros((0, 3, 8, 8), dtype=torch.uint8)).shape == (0, 3, 8, 8)
