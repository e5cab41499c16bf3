"""HED colour space (Ruifrok & Johnston 2001): batched RGB <-> optical density <-> stain concentrations.

Conventions are scikit-image's (``skimage.color.rgb2hed`` / ``hed2rgb``, version 0.19 and later): RGB in
[0, 1] is floored at ``1e-6`` before the logarithm, optical densities are natural-log OD divided by
``ln(1e6)`` (so a pixel at the floor has OD 1 in every channel), and concentrations are OD times
:data:`HED_FROM_RGB`. Images are ``[B, 3, H, W]``; a pixel's OD is a row vector, as in scikit-image.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from breakhis_lit.data.device import to_device

#: Rows: the OD vectors of haematoxylin, eosin and DAB (Ruifrok & Johnston 2001; scikit-image ``rgb_from_hed``).
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))
#: Floor of RGB values before the logarithm.
RGB_FLOOR = 1e-6
#: ``ln(1e6)``: natural-log OD is divided by it (scikit-image's ``log_adjust``).
LOG_ADJUST = -math.log(RGB_FLOOR)


@functools.cache
def stain_matrix(inverse: bool, device: torch.device, dtype: torch.dtype) -> Tensor:
    """:data:`RGB_FROM_HED` (``inverse=False``) or its inverse ``hed_from_rgb`` as ``[3, 3]``, made once per device.

    The inverse comes from NumPy: ``torch.linalg.inv`` checks its errors on the host, an op the host-read probe
    (``tests/host_reads.py``) reports when the first call happens inside a training epoch.
    """
    m = np.linalg.inv(np.array(RGB_FROM_HED)) if inverse else np.array(RGB_FROM_HED)
    m = torch.from_numpy(m)
    with torch.inference_mode(False):  # a normal tensor, usable in autograd even if first made in validation
        return to_device(m.to(dtype), device)


def _apply_matrix(x: Tensor, matrix: Tensor) -> Tensor:
    """Per pixel, the row vector of ``x`` ([B, 3, H, W]) times ``matrix`` ([3, 3] or [B, 3, 3])."""
    b, c, h, w = x.shape
    m = matrix.transpose(-1, -2)
    if m.dim() == 2:
        m = m.expand(b, c, c)
    return torch.bmm(m, x.reshape(b, c, h * w)).view(b, c, h, w)


def rgb_to_od(x: Tensor) -> Tensor:
    """RGB float in [0, 1] ``[B, 3, H, W]`` -> optical density, ``-ln(max(x, 1e-6)) / ln(1e6)`` (in [0, 1])."""
    return x.clamp_min(RGB_FLOOR).log_().div_(-LOG_ADJUST)


def od_to_rgb(od: Tensor) -> Tensor:
    """Optical density -> RGB in [0, 1] (inverse of :func:`rgb_to_od` above the floor, clipped to [0, 1])."""
    return od.mul(-LOG_ADJUST).exp_().clamp_(0, 1)


def rgb_to_hed(x: Tensor, clip: bool = True) -> Tensor:
    """RGB float in [0, 1] ``[B, 3, H, W]`` -> haematoxylin, eosin and DAB concentrations (``skimage.color.rgb2hed``).

    Args:
        x: Float images in [0, 1].
        clip: Clip negative concentrations to 0, as scikit-image does. ``False`` keeps them, so that
            :func:`hed_to_rgb` inverts this function exactly (down to the ``1e-6`` floor).

    Returns:
        Concentrations ``[B, 3, H, W]`` (channels H, E, D) in ``x``'s dtype and device.
    """
    hed = _apply_matrix(rgb_to_od(x), stain_matrix(True, x.device, x.dtype))
    return hed.clamp_min_(0) if clip else hed


def hed_to_rgb(hed: Tensor) -> Tensor:
    """Concentrations ``[B, 3, H, W]`` (H, E, D) -> RGB in [0, 1] (``skimage.color.hed2rgb``)."""
    return od_to_rgb(_apply_matrix(hed, stain_matrix(False, hed.device, hed.dtype)))
