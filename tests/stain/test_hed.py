import numpy as np
import pytest
import torch
from skimage import color

from breakhis_lit.stain.hed import RGB_FROM_HED, hed_to_rgb, od_to_rgb, rgb_to_hed, rgb_to_od, stain_matrix


def _random(b=4, h=16, w=16, dtype=torch.float64):
    x = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(0), dtype=dtype)
    x[:, :, 0, 0] = 0.0  # the 1e-6 floor
    x[:, :, 0, 1] = 1.0  # white: zero OD
    return x


def _skimage(fn, x: torch.Tensor) -> np.ndarray:
    return np.stack([fn(i.permute(1, 2, 0).numpy()) for i in x]).transpose(0, 3, 1, 2)


def test_stain_matrices_are_skimages():
    np.testing.assert_array_equal(np.array(RGB_FROM_HED), color.rgb_from_hed)
    inv = stain_matrix(True, torch.device("cpu"), torch.float64).numpy()
    np.testing.assert_allclose(inv, color.hed_from_rgb, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_rgb_to_hed_matches_skimage(dtype, atol):
    x = _random(dtype=dtype)
    ref = _skimage(color.rgb2hed, x.double())
    np.testing.assert_allclose(rgb_to_hed(x).double().numpy(), ref, rtol=0, atol=atol)


def test_rgb_to_hed_matches_skimage_on_real_samples(samples_224):
    x = samples_224[:4].double() / 255
    np.testing.assert_allclose(rgb_to_hed(x).numpy(), _skimage(color.rgb2hed, x), rtol=0, atol=1e-12)


def test_hed_to_rgb_matches_skimage():
    hed = _skimage(color.rgb2hed, _random()) * 1.3 - 0.01  # off the RGB gamut too: clipped like skimage
    ref = _skimage(color.hed2rgb, torch.from_numpy(hed))
    np.testing.assert_allclose(hed_to_rgb(torch.from_numpy(hed)).numpy(), ref, rtol=0, atol=1e-12)


def test_unclipped_round_trip_is_exact_above_the_floor():
    x = _random(dtype=torch.float32)
    back = hed_to_rgb(rgb_to_hed(x, clip=False))
    torch.testing.assert_close(back, x.clamp_min(1e-6), rtol=0, atol=2e-6)
    assert (rgb_to_hed(x) >= 0).all()
    assert (rgb_to_hed(x, clip=False) < 0).any()  # clipping loses information: why jitter works unclipped


def test_od_values():
    x = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)
    expected = torch.tensor([0.0, float(np.log(2) / np.log(1e6)), 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(rgb_to_od(x), expected)
    torch.testing.assert_close(od_to_rgb(expected), torch.tensor([1.0, 0.5, 1e-6]).view(1, 3, 1, 1))
