"""Grad-CAM explanations: heat maps of a backbone's decision and their rendering."""

from breakhis_lit.gradcam.cam import PredictedClassTarget, compute_cams
from breakhis_lit.gradcam.overlay import caption, captioned, grid, overlay, save_figure, save_png, to_hwc_uint8

__all__ = [
    "PredictedClassTarget",
    "caption",
    "captioned",
    "compute_cams",
    "grid",
    "overlay",
    "save_figure",
    "save_png",
    "to_hwc_uint8",
]
