import warnings

import numpy as np
import torch
from skimage import color

from breakhis_lit.stain.lab import lab_to_rgb, rgb_to_lab


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def test_rgb_to_lab_matches_skimage():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[:, :, 0, :4] = torch.tensor([0.0, 0.01, 0.04045, 1.0]).view(1, 1, 4)  # both branches and the ends
    ref = np.stack([color.rgb2lab(i) for i in _hwc(x)])
    np.testing.assert_allclose(_hwc(rgb_to_lab(x)), ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(_hwc(rgb_to_lab(x.float())), ref, rtol=0, atol=5e-4)


def test_rgb_to_lab_matches_skimage_on_real_samples(samples_224):
    x = samples_224[:3].double() / 255
    ref = np.stack([color.rgb2lab(i) for i in _hwc(x)])
    np.testing.assert_allclose(_hwc(rgb_to_lab(x)), ref, rtol=0, atol=1e-10)


def test_lab_to_rgb_matches_skimage_also_out_of_gamut():
    g = torch.Generator().manual_seed(1)
    lab = torch.stack(
        [torch.rand(2, 16, 16, generator=g) * 110 - 5, *(torch.rand(2, 2, 16, 16, generator=g) * 260 - 130).unbind(1)],
        dim=1,
    ).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about its Z < 0 clipping, which is under test
        ref = np.stack([color.lab2rgb(i) for i in _hwc(lab)])
    np.testing.assert_allclose(_hwc(lab_to_rgb(lab)), ref, rtol=0, atol=1e-10)


def test_round_trip():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(x)), x, rtol=0, atol=1e-5)
