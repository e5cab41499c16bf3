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


def test_empty_batch():
    assert BatchAugmentation()(torch.zeros((0, 3, 8, 8), dtype=torch.uint8)).shape == (0, 3, 8, 8)
