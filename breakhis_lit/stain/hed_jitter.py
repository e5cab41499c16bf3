"""HED stain jitter (Tellez et al. 2018): per-sample random scale and shift of the H, E and DAB concentrations.

Each sample ``b`` and stain ``s`` (haematoxylin, eosin, DAB) gets a factor ``alpha[b, s] ~ U(1 - scale, 1 + scale)``
and a shift ``beta[b, s] ~ U(-bias, bias)``; every pixel's concentration becomes ``alpha * c + beta``, in the units
of :func:`breakhis_lit.stain.hed.rgb_to_hed` (scikit-image 0.19 and later, unclipped: OD / ln(1e6)).

Defaults: ``scale = 0.05`` is the "HED-light" factor range of Tellez et al. (IEEE TMI 37(9), 2018; Medical Image
Analysis 58, 2019). Their shift, also 0.05, was applied in the HED space of scikit-image before 0.19
(``-ln(rgb + 2) @ hed_from_rgb``, the transform of their released augmenter), not in OD: there a shift ``b``
multiplies ``rgb + 2`` by ``exp(-b * v)`` (``v`` the stain's OD vector), about ``3 * b * v`` in intensity near
white; here 0.05 would add ``0.05 * ln(1e6) = 0.69`` to the natural-log OD and turn white background blue or green.
``bias = 0.02`` is the shift that, with ``scale = 0.05``, changes the 18 real sample images by the same mean
absolute amount as their HED-light does (about 21 grey levels; ``tests/stain/test_hed_jitter.py``).

HED conversion, jitter and conversion back are all linear in the logarithm of the image, so :func:`apply` folds
them into one ``3 x 3`` matrix and one offset per sample: one logarithm, one batched matrix product and one
exponential over the batch, and exactly the identity (to float rounding) when ``alpha = 1`` and ``beta = 0``.

Random draws and their application are separate: :func:`draw` makes every parameter of a batch (or of an epoch)
on the CPU in one tensor, which reaches the GPU in one copy; :func:`apply` is pure tensor work on the device,
with nothing that makes the host wait for the GPU.
"""

from __future__ import annotations

import torch
from torch import Tensor

from breakhis_lit.data.device import to_device
from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.hed import LOG_ADJUST, RGB_FLOOR, stain_matrix

#: Half-width of the uniform range of the concentration factors (Tellez et al. 2018, "HED-light").
DEFAULT_SCALE = 0.05
#: Half-width of the uniform range of the concentration shifts (Tellez et al.'s "HED-light" strength, in OD units).
DEFAULT_BIAS = 0.02


def check_strength(scale: float, bias: float) -> None:
    """Raise :class:`BreakHisError` unless ``0 <= scale < 1`` and ``bias >= 0``."""
    if not 0.0 <= scale < 1.0:
        raise BreakHisError(f"HED jitter scale={scale}: must be in [0, 1); pass e.g. scale={DEFAULT_SCALE}")
    if not bias >= 0.0:
        raise BreakHisError(f"HED jitter bias={bias}: must be >= 0; pass e.g. bias={DEFAULT_BIAS}")


def draw(
    n: int,
    generator: torch.Generator | None = None,
    scale: float = DEFAULT_SCALE,
    bias: float = DEFAULT_BIAS,
) -> Tensor:
    """Draw the jitter parameters of ``n`` samples on the CPU.

    Args:
        n: Number of samples (a batch, or a whole epoch to be sliced into batches).
        generator: CPU generator (default: torch's global RNG).
        scale: Half-width of the factor range around 1.
        bias: Half-width of the shift range around 0.

    Returns:
        Float32 ``[n, 2, 3]`` CPU tensor: ``[:, 0]`` the factors ``alpha`` and ``[:, 1]`` the shifts ``beta``, for
        the H, E and DAB channels.
    """
    check_strength(scale, bias)
    u = torch.rand(n, 2, 3, generator=generator).mul_(2).sub_(1)
    return u.mul_(torch.tensor([scale, bias]).view(1, 2, 1)).add_(torch.tensor([1.0, 0.0]).view(1, 2, 1))


def apply(x: Tensor, params: Tensor) -> Tensor:
    """Jitter a batch with parameters from :func:`draw`.

    Args:
        x: Float images in [0, 1], ``[B, 3, H, W]``, on any device.
        params: ``[B, 2, 3]`` from :func:`draw`, on ``x``'s device (or the CPU: then copied, without a wait).

    Returns:
        Jittered images in [0, 1], ``[B, 3, H, W]``, in ``x``'s dtype (float32 for half-precision input).
    """
    b, c, h, w = x.shape
    if params.shape != (b, 2, 3) or c != 3:
        raise ValueError(f"images {tuple(x.shape)} and params {tuple(params.shape)}: expected [B, 3, H, W], [B, 2, 3]")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    mix, offset = log_affine(to_device(params, x.device).to(x.dtype))
    log_x = x.clamp_min(RGB_FLOOR).log_().reshape(b, c, h * w)
    return torch.baddbmm(offset.unsqueeze(-1), mix.transpose(1, 2), log_x).exp_().clamp_(0, 1).view(b, c, h, w)


def log_affine(params: Tensor) -> tuple[Tensor, Tensor]:
    """The jitter as an affine map of the natural-log RGB: ``log x' = log x @ mix + offset`` per sample.

    ``mix = hed_from_rgb diag(alpha) rgb_from_hed`` and ``offset = -ln(1e6) * beta @ rgb_from_hed``, pixels as row
    vectors (identity and zero, to float rounding, for ``alpha = 1`` and ``beta = 0``). :func:`apply` and the
    training augmentation's HED step (:class:`breakhis_lit.data.transforms.HEDStain`, which makes them on the CPU
    when it draws an epoch's parameters) both use it.

    Args:
        params: ``[B, 2, 3]`` from :func:`draw`, on any device, in the dtype wanted.

    Returns:
        ``mix`` ``[B, 3, 3]`` and ``offset`` ``[B, 3]`` on ``params``' device and in its dtype.
    """
    alpha, beta = params[:, 0], params[:, 1]
    rgb_from_hed = stain_matrix(False, params.device, params.dtype)
    hed_from_rgb = stain_matrix(True, params.device, params.dtype)
    mix = (hed_from_rgb * alpha[:, None, :]) @ rgb_from_hed
    offset = (beta @ rgb_from_hed).mul_(-LOG_ADJUST)
    return mix, offset


class HEDJitter(torch.nn.Module):
    """HED stain jitter as a batch transform, like :class:`breakhis_lit.data.transforms.BatchAugmentation`.

    Args:
        scale: Half-width of the range of the per-stain concentration factors around 1 (0 disables them).
        bias: Half-width of the range of the per-stain concentration shifts around 0 (0 disables them).
    """

    def __init__(self, scale: float = DEFAULT_SCALE, bias: float = DEFAULT_BIAS) -> None:
        super().__init__()
        check_strength(scale, bias)
        self.scale = scale
        self.bias = bias

    def draw(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Parameters of ``n`` samples at this transform's strength (see :func:`draw`)."""
        return draw(n, generator, self.scale, self.bias)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Jitter a batch.

        Args:
            images: uint8 (or float in [0, 1]) ``[B, 3, H, W]`` on any device.
            generator: CPU generator for the random draws (default: torch's global RNG).

        Returns:
            Float images in [0, 1] on the input's device.
        """
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images
        return apply(x, self.draw(x.shape[0], generator))

    def extra_repr(self) -> str:
        """Strength, for ``repr``."""
        return f"scale={self.scale}, bias={self.bias}"
