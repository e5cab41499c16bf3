"""Macenko et al. (2009) stain normalisation, batched in torch.

Follows the reference code of the method (M. Macenko's MATLAB code and its port ``HEnorm_python``, which the
NumPy backend of torchstain reproduces): OD ``-ln((I + 1) / io)`` with ``io = 240``; tissue pixels have OD at
least ``beta = 0.15`` in every channel; the plane of the two main eigenvectors of their OD covariance; the
``alpha = 1`` and ``99`` percentiles of the pixels' angles in that plane give the two stain vectors, the one
with the larger red OD being haematoxylin; concentrations of every pixel by least squares; each stain's
concentrations scaled so that their 99th percentile matches the target's; the image rebuilt with the target's
stain vectors. Output is rounded to the nearest grey level (the reference truncates).

Everything is batched over images, including each image's own pixel count in the percentiles. Images with less
than ``min_tissue`` of their pixels tissue, or whose two stain vectors are (nearly) parallel, are returned
unchanged, so background-only images never give NaN.

Fitting on several images (the training split) fits each image as above and averages the stain vectors
(renormalised to unit length) and the 99th-percentile concentrations over the images with tissue: the
``avg-post`` multi-target scheme of Ivanov et al. (2024, arXiv 2406.02077); on one image it is the
reference fit.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import Tensor

from breakhis_lit.stain.base import StainTarget, check_options, check_target, fit_mean, normalize_chunks
from breakhis_lit.stain.percentile import masked_percentile
from breakhis_lit.stain.tissue import (
    DEFAULT_BETA,
    DEFAULT_IO,
    DEFAULT_MIN_TISSUE,
    optical_density,
    tissue_mask,
)

#: Percentile of the concentrations that is matched to the target's.
MAX_CONCENTRATION_PERCENTILE = 99.0
#: Below this ``det(HE^T HE)`` (sin² of the angle between unit stain vectors) an image is left unchanged.
_MIN_DET = 1e-4
_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class MacenkoTarget(StainTarget):
    """A fitted Macenko target.

    Attributes:
        stain_vectors: Unit OD vectors (R, G, B) of haematoxylin and eosin.
        max_concentrations: 99th percentile of the haematoxylin and eosin concentrations.
        io: Transmitted light intensity of the OD.
        alpha: Angle percentile (and 100 - alpha) that picks the stain vectors.
        beta: OD threshold of the tissue mask.
        min_tissue: Fraction of tissue pixels below which an image is left unchanged.
    """

    method = "macenko"

    stain_vectors: tuple[tuple[float, float, float], tuple[float, float, float]]
    max_concentrations: tuple[float, float]
    io: float = DEFAULT_IO
    alpha: float = 1.0
    beta: float = DEFAULT_BETA
    min_tissue: float = DEFAULT_MIN_TISSUE


class _Analysis(NamedTuple):
    stains: Tensor  # [B, 3, 2], columns H and E
    concentrations: Tensor  # [B, 2, N]
    max_concentrations: Tensor  # [B, 2]
    valid: Tensor  # [B] bool


def _pseudo_inverse(he: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares solver ``(HE^T HE)^-1 HE^T`` of ``[B, 3, 2]`` stain matrices, and ``det(HE^T HE)``.

    Closed form of the 2 x 2 normal equations: batched, and without the error checks of ``torch.linalg``
    solvers (which make the host wait for a GPU).
    """
    g = he.transpose(1, 2) @ he
    det = g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0]
    adj = torch.stack([torch.stack([g[:, 1, 1], -g[:, 0, 1]], -1), torch.stack([-g[:, 1, 0], g[:, 0, 0]], -1)], 1)
    safe = torch.where(det.abs() > _EPS * _EPS, det, torch.ones_like(det))
    return (adj / safe[:, None, None]) @ he.transpose(1, 2), det


def _analyse(images: Tensor, io: float, alpha: float, beta: float, min_tissue: float, fallback: Tensor) -> _Analysis:
    """Stain vectors, concentrations and their 99th percentiles of each image (``fallback`` [3, 2] if invalid)."""
    od = optical_density(images, io)
    n_pix = od.shape[-1]
    mask = tissue_mask(od, beta)
    count = mask.sum(-1)
    weight = mask.to(od.dtype).unsqueeze(1)
    mean = (od * weight).sum(-1, keepdim=True) / count.clamp_min(1)[:, None, None]
    centred = (od - mean) * weight
    cov = centred @ centred.transpose(1, 2) / (count - 1).clamp_min(1)[:, None, None]
    plane = torch.linalg.eigh(cov).eigenvectors[:, :, 1:]  # columns: second and first principal axes
    proj = plane.transpose(1, 2) @ od  # [B, 2, N]
    phi = torch.atan2(proj[:, 1], proj[:, 0])
    angles = masked_percentile(phi, (alpha, 100.0 - alpha), mask)  # [B, 2]: min, max
    v = plane @ torch.stack([angles.cos(), angles.sin()], 1)  # [B, 3, 2]: v_min, v_max
    h_first = (v[:, 0, 0] > v[:, 0, 1])[:, None, None]
    stains = torch.where(h_first, v, v.flip(-1))
    _, det = _pseudo_inverse(stains)
    valid = (count >= max(2.0, min_tissue * n_pix)) & (det > _MIN_DET)
    stains = torch.where(valid[:, None, None], stains, fallback.to(stains))
    solver, _ = _pseudo_inverse(stains)
    conc = solver @ od
    max_c = masked_percentile(conc, (MAX_CONCENTRATION_PERCENTILE,))[..., 0]
    valid = valid & (max_c > _EPS).all(-1)
    return _Analysis(stains, conc, max_c, valid)


class MacenkoNormalizer:
    """Macenko stain normalisation (see the module docstring).

    Args:
        io: Transmitted light intensity of the OD (Macenko's reference code: 240).
        alpha: Percentile of the pixel angles that picks the stain vectors (the paper: 1).
        beta: OD threshold of the tissue mask (the paper: 0.15).
        min_tissue: Images with a smaller fraction of tissue pixels are left unchanged.
        batch_size: Images processed at once by :meth:`fit` and :meth:`normalize` (memory: about 4 MB per
            224 x 224 image).
    """

    name = "macenko"

    def __init__(
        self,
        io: float = DEFAULT_IO,
        alpha: float = 1.0,
        beta: float = DEFAULT_BETA,
        min_tissue: float = DEFAULT_MIN_TISSUE,
        batch_size: int = 64,
    ) -> None:
        check_options(
            "Macenko",
            (
                ("io", io, io > 0, "240"),
                ("alpha", alpha, 0 <= alpha < 50, "1"),
                ("beta", beta, beta > 0, "0.15"),
                ("min_tissue", min_tissue, 0 <= min_tissue <= 1, "0.01"),
                ("batch_size", batch_size, batch_size >= 1, "64"),
            ),
        )
        self.io = io
        self.alpha = alpha
        self.beta = beta
        self.min_tissue = min_tissue
        self.batch_size = batch_size

    def fit(self, images: Tensor) -> MacenkoTarget:
        """Fit a target to uint8 ``[N, 3, H, W]`` training images (on any device).

        Raises:
            BreakHisError: If no image has enough tissue.
        """
        fallback = torch.eye(3, 2, device=images.device)

        def statistics(chunk: Tensor) -> tuple[Tensor, list[Tensor]]:
            a = _analyse(chunk, self.io, self.alpha, self.beta, self.min_tissue, fallback)
            return a.valid, [a.stains, a.max_concentrations]

        mean_stains, mean_max_c = fit_mean(self, images, statistics)
        mean_stains = mean_stains / mean_stains.norm(dim=0, keepdim=True)
        return MacenkoTarget(
            stain_vectors=tuple(tuple(row) for row in mean_stains.T.tolist()),
            max_concentrations=tuple(mean_max_c.tolist()),
            io=float(self.io),
            alpha=float(self.alpha),
            beta=float(self.beta),
            min_tissue=float(self.min_tissue),
        )

    def normalize(self, images: Tensor, target: StainTarget) -> Tensor:
        """Normalise uint8 ``[B, 3, H, W]`` images to ``target`` with the options stored in it.

        Returns:
            uint8 ``[B, 3, H, W]`` on the input's device; images without enough tissue are returned unchanged.
        """
        check_target("Macenko", images, target, MacenkoTarget)
        ref = torch.tensor(target.stain_vectors, dtype=torch.float32).T.to(images.device)  # [3, 2]
        ref_max_c = torch.tensor(target.max_concentrations, dtype=torch.float32).to(images.device)

        def rebuild(chunk: Tensor) -> tuple[Tensor, Tensor]:
            a = _analyse(chunk, target.io, target.alpha, target.beta, target.min_tissue, ref)
            scale = ref_max_c / a.max_concentrations.clamp_min(_EPS)
            od = ref @ (a.concentrations * scale[:, :, None])
            rebuilt = od.neg_().exp_().mul_(target.io).clamp_(max=255.0).round_().to(torch.uint8)
            return rebuilt.view(chunk.shape), a.valid

        return normalize_chunks(images, self.batch_size, rebuild)
