import numpy as np
import pytest
import torch

from breakhis_lit.stain.percentile import masked_percentile


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_numpy_row_by_row(dtype):
    g = torch.Generator().manual_seed(0)
    values = torch.randn(6, 2, 101, generator=g, dtype=dtype)
    mask = torch.rand(6, 2, 101, generator=g) < torch.linspace(0.05, 1.0, 6).view(6, 1, 1)
    mask[0, 0] = False
    mask[0, 0, 7] = True  # one entry
    mask[0, 1, :2] = True  # two entries
    q = (0.0, 1.0, 37.5, 99.0, 100.0)
    got = masked_percentile(values, q, mask)
    assert got.shape == (6, 2, 5)
    assert got.dtype == dtype
    for i in range(6):
        for j in range(2):
            ref = np.percentile(values[i, j][mask[i, j]].double().numpy(), q)
            np.testing.assert_allclose(got[i, j].double().numpy(), ref, rtol=0, atol=1e-6)


def test_without_mask_matches_numpy():
    values = torch.randn(3, 1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = np.percentile(values.numpy(), [1, 99], axis=-1).T
    np.testing.assert_allclose(masked_percentile(values, (1, 99)).numpy(), ref, rtol=0, atol=1e-12)


def test_empty_rows_give_zero():
    values = torch.randn(2, 10)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[1, 3] = True
    got = masked_percentile(values, (50.0,), mask)
    assert got[0, 0] == 0
    assert got[1, 0] == values[1, 3]
