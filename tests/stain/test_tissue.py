import numpy as np
import pytest
import torch

from breakhis_lit.stain.tissue import check_uint8_images, optical_density, tissue_mask


def test_optical_density_and_mask_match_macenkos_formula():
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    od = optical_density(images, io=240)
    ref = -np.log((images.double().numpy().reshape(2, 3, 35) + 1) / 240)
    np.testing.assert_allclose(od.numpy(), ref, rtol=1e-6, atol=1e-6)
    mask = tissue_mask(od, beta=0.15)
    np.testing.assert_array_equal(mask.numpy(), ~np.any(ref < 0.15, axis=1))


def test_white_is_not_tissue():
    white = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert not tissue_mask(optical_density(white)).any()


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(1, 3, 4, 4), torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(1, 4, 4, 4, dtype=torch.uint8)],
)
def test_check_uint8_images(bad):
    with pytest.raises(ValueError, match="expected uint8 images"):
        check_uint8_images(bad)
