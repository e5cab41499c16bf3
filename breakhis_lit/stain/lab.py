"""Batched sRGB <-> CIE L*a*b* (D65, 2° observer) in torch, with scikit-image's constants and branches.

Written here because the libraries that have it are NumPy-only (scikit-image) or not a dependency (kornia).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from breakhis_lit.data.device import to_device

#: sRGB (linear) -> XYZ, as ``skimage.color.colorconv.xyz_from_rgb``.
XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
#: D65 white point, 2° observer.
WHITE_D65 = (0.95047, 1.0, 1.08883)


@functools.cache
def _matrix(inverse: bool, device: torch.device, dtype: torch.dtype) -> Tensor:
    m = torch.tensor(XYZ_FROM_RGB, dtype=torch.float64)
    if inverse:
        m = torch.linalg.inv(m)
    with torch.inference_mode(False):
        return to_device(m.to(dtype), device)


@functools.cache
def _white(device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):
        return to_device(torch.tensor(WHITE_D65, dtype=dtype).view(1, 3, 1, 1), device)


def _mix(x: Tensor, m: Tensor) -> Tensor:
    """Per pixel ``m @ x[:, :, y, x]`` for ``x`` ``[B, 3, H, W]``."""
    return torch.einsum("ij,bjhw->bihw", m, x)


def rgb_to_lab(x: Tensor) -> Tensor:
    """Convert sRGB in [0, 1] ``[B, 3, H, W]`` to L*a*b* (L in [0, 100]), as ``skimage.color.rgb2lab``."""
    lin = torch.where(x > 0.04045, ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4, x / 12.92)
    t = _mix(lin, _matrix(False, x.device, x.dtype)) / _white(x.device, x.dtype)
    f = torch.where(t > 0.008856, t.clamp_min(0.008856) ** (1 / 3), 7.787 * t + 16.0 / 116.0)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """Convert L*a*b* ``[B, 3, H, W]`` to sRGB in [0, 1], as ``skimage.color.lab2rgb`` (Z below 0 set to 0; clipped)."""
    l_, a, b = lab.unbind(1)
    fy = (l_ + 16.0) / 116.0
    f = torch.stack([a / 500.0 + fy, fy, (fy - b / 200.0).clamp_min(0)], dim=1)
    t = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * _white(lab.device, lab.dtype)
    lin = _mix(t, _matrix(True, lab.device, lab.dtype))
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, 12.92 * lin)
    return rgb.clamp_(0, 1)
