"""Reinhard et al. (2001) colour transfer as stain normalisation, batched in torch.

Each image's per-channel mean and standard deviation are matched to the target's in CIE L*a*b* (as in
torchstain and StainTools; the paper used Ruderman's l-alpha-beta space): ``(lab - mean) / std * std_t + mean_t``
over all pixels, then back to sRGB, clipped and rounded to the nearest grey level (torchstain truncates).
Images with less than ``min_tissue`` of their pixels tissue (the OD mask of :mod:`breakhis_lit.stain.tissue`)
or a flat channel are returned unchanged, so background-only images never give NaN.

Fitting on several images (the training split) averages the per-image means and standard deviations over the
images with tissue (like the Macenko fit); on one image it is the paper's fit.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from breakhis_lit.stain.base import StainTarget, check_options, check_target, fit_mean, normalize_chunks
from breakhis_lit.stain.lab import lab_to_rgb, rgb_to_lab
from breakhis_lit.stain.tissue import (
    DEFAULT_BETA,
    DEFAULT_IO,
    DEFAULT_MIN_TISSUE,
    optical_density,
    tissue_mask,
)

#: A channel with a smaller standard deviation (L*a*b* units) is flat: the image is left unchanged.
_MIN_STD = 1e-3


@dataclasses.dataclass(frozen=True)
class ReinhardTarget(StainTarget):
    """A fitted Reinhard target.

    Attributes:
        means: Mean L*, a*, b*.
        stds: Standard deviations of L*, a*, b* (population, as ``numpy.std``).
        io: Transmitted light intensity of the OD of the tissue mask.
        beta: OD threshold of the tissue mask.
        min_tissue: Fraction of tissue pixels below which an image is left unchanged.
    """

    method = "reinhard"

    means: tuple[float, float, float]
    stds: tuple[float, float, float]
    io: float = DEFAULT_IO
    beta: float = DEFAULT_BETA
    min_tissue: float = DEFAULT_MIN_TISSUE


def _statistics(images: Tensor, io: float, beta: float, min_tissue: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """L*a*b* images, their per-channel means and standard deviations ``[B, 3]``, and which images are valid."""
    lab = rgb_to_lab(images.float().div_(255.0))
    mean = lab.mean((2, 3))
    std = lab.std((2, 3), correction=0)
    tissue = tissue_mask(optical_density(images, io), beta).float().mean(-1)
    valid = (tissue >= min_tissue) & (tissue > 0) & (std > _MIN_STD).all(-1)
    return lab, mean, std, valid


class ReinhardNormalizer:
    """Reinhard colour transfer in L*a*b* (see the module docstring).

    Args:
        io: Transmitted light intensity of the OD of the tissue mask.
        beta: OD threshold of the tissue mask.
        min_tissue: Images with a smaller fraction of tissue pixels are left unchanged.
        batch_size: Images processed at once by :meth:`fit` and :meth:`normalize`.
    """

    name = "reinhard"

    def __init__(
        self,
        io: float = DEFAULT_IO,
        beta: float = DEFAULT_BETA,
        min_tissue: float = DEFAULT_MIN_TISSUE,
        batch_size: int = 64,
    ) -> None:
        check_options(
            "Reinhard",
            (
                ("io", io, io > 0, "240"),
                ("beta", beta, beta > 0, "0.15"),
                ("min_tissue", min_tissue, 0 <= min_tissue <= 1, "0.01"),
                ("batch_size", batch_size, batch_size >= 1, "64"),
            ),
        )
        self.io = io
        self.beta = beta
        self.min_tissue = min_tissue
        self.batch_size = batch_size

    def fit(self, images: Tensor) -> ReinhardTarget:
        """Fit a target to uint8 ``[N, 3, H, W]`` training images (on any device).

        Raises:
            BreakHisError: If no image has enough tissue.
        """

        def statistics(chunk: Tensor) -> tuple[Tensor, list[Tensor]]:
            _, mean, std, valid = _statistics(chunk, self.io, self.beta, self.min_tissue)
            return valid, [mean, std]

        mean, std = fit_mean(self, images, statistics)
        return ReinhardTarget(
            means=tuple(mean.tolist()),
            stds=tuple(std.tolist()),
            io=float(self.io),
            beta=float(self.beta),
            min_tissue=float(self.min_tissue),
        )

    def normalize(self, images: Tensor, target: StainTarget) -> Tensor:
        """Normalise uint8 ``[B, 3, H, W]`` images to ``target`` with the options stored in it.

        Returns:
            uint8 ``[B, 3, H, W]`` on the input's device; images without enough tissue are returned unchanged.
        """
        check_target("Reinhard", images, target, ReinhardTarget)
        t_mean = torch.tensor(target.means, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        t_std = torch.tensor(target.stds, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)

        def rebuild(chunk: Tensor) -> tuple[Tensor, Tensor]:
            lab, mean, std, valid = _statistics(chunk, target.io, target.beta, target.min_tissue)
            gain = t_std / std.clamp_min(_MIN_STD)[:, :, None, None]
            moved = (lab - mean[:, :, None, None]) * gain + t_mean
            return lab_to_rgb(moved).mul_(255.0).round_().to(torch.uint8), valid

        return normalize_chunks(images, self.batch_size, rebuild)
