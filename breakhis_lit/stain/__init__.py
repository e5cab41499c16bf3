"""Stain handling for H&E images: HED colour space, HED jitter augmentation and stain normalisation."""

from __future__ import annotations

from breakhis_lit.stain.base import StainNormalizer, StainTarget
from breakhis_lit.stain.hed import hed_to_rgb, od_to_rgb, rgb_to_hed, rgb_to_od
from breakhis_lit.stain.hed_jitter import HEDJitter
from breakhis_lit.stain.identity import IdentityNormalizer, IdentityTarget
from breakhis_lit.stain.macenko import MacenkoNormalizer, MacenkoTarget
from breakhis_lit.stain.registry import (
    NORMALIZERS,
    get_normalizer,
    normalize_to,
    target_from_dict,
    target_from_json,
)
from breakhis_lit.stain.reinhard import ReinhardNormalizer, ReinhardTarget
from breakhis_lit.stain.target_file import load_target, save_target

__all__ = [
    "NORMALIZERS",
    "HEDJitter",
    "IdentityNormalizer",
    "IdentityTarget",
    "MacenkoNormalizer",
    "MacenkoTarget",
    "ReinhardNormalizer",
    "ReinhardTarget",
    "StainNormalizer",
    "StainTarget",
    "get_normalizer",
    "hed_to_rgb",
    "load_target",
    "normalize_to",
    "od_to_rgb",
    "rgb_to_hed",
    "rgb_to_od",
    "save_target",
    "target_from_dict",
    "target_from_json",
]
