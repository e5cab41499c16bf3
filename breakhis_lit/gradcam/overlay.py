"""Rendering Grad-CAM heat maps: jet overlays on the image and labelled grids of image/overlay pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from pytorch_grad_cam.utils.image import show_cam_on_image


def to_hwc_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """An RGB image as a ``[H, W, 3]`` uint8 numpy array.

    Args:
        image: ``[3, H, W]`` or ``[H, W, 3]``, uint8 (0-255) or float in ``[0, 1]``; tensor or array.

    Returns:
        A new ``[H, W, 3]`` uint8 array.
    """
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise ValueError(f"expected an RGB image [3, H, W] or [H, W, 3], got shape {array.shape}")
    if array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"expected uint8 or float images, got {array.dtype}")
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(array)


def overlay(image: torch.Tensor | np.ndarray, cam: np.ndarray | torch.Tensor, image_weight: float = 0.5) -> np.ndarray:
    """Blend a heat map, coloured with the jet colour map, onto an image.

    Args:
        image: RGB image, ``[3, H, W]`` or ``[H, W, 3]``, uint8 (or float in ``[0, 1]``).
        cam: Heat map in ``[0, 1]``, ``[H, W]`` (resized bilinearly when its size differs).
        image_weight: Weight of the image in the blend (the heat map gets ``1 - image_weight``).

    Returns:
        The overlay, ``[H, W, 3]`` uint8 RGB.
    """
    rgb = to_hwc_uint8(image)
    heat = cam.detach().cpu().numpy() if isinstance(cam, torch.Tensor) else np.asarray(cam)
    if heat.ndim != 2:
        raise ValueError(f"expected a heat map [H, W], got shape {heat.shape}")
    heat = np.clip(np.nan_to_num(heat.astype(np.float32), nan=0.0), 0.0, 1.0)
    if heat.shape != rgb.shape[:2]:
        heat = cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return show_cam_on_image(rgb.astype(np.float32) / 255.0, heat, use_rgb=True, image_weight=image_weight)


def caption(pred: str, prob: float, true: str | None = None) -> str:
    """The title of one example, e.g. ``"true: malignant / pred: malignant (0.97)"``."""
    predicted = f"pred: {pred} ({prob:.2f})"
    return predicted if true is None else f"true: {true} / {predicted}"


def captioned(image: torch.Tensor | np.ndarray, text: str) -> np.ndarray:
    """The image under a white strip holding ``text``, wrapped to the image's width (font scaled with it).

    Returns:
        ``[H + strip, W, 3]`` uint8 RGB.
    """
    rgb = to_hwc_uint8(image)
    width = rgb.shape[1]
    size = max(10, round(width / 45))
    font = ImageFont.load_default(size)
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width - 8:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    step = size + 4
    strip = Image.new("RGB", (width, step * len(lines) + 4), "white")
    draw = ImageDraw.Draw(strip)
    for k, line in enumerate(lines):
        draw.text((4, 2 + k * step), line, fill="black", font=font)
    return np.concatenate([np.asarray(strip), rgb], axis=0)


def grid(
    images: torch.Tensor | Sequence[np.ndarray],
    cams: np.ndarray | Sequence[np.ndarray],
    titles: Sequence[str],
    pairs_per_row: int = 2,
    panel_inches: float = 2.2,
    suptitle: str | None = None,
) -> Figure:
    """A figure of (image, Grad-CAM overlay) pairs, each pair under its title.

    Args:
        images: RGB images, ``[N, 3, H, W]`` uint8 tensor or a sequence of images accepted by :func:`overlay`.
        cams: Heat maps ``[N, H, W]`` in ``[0, 1]``.
        titles: One title per pair (see :func:`caption`).
        pairs_per_row: Pairs side by side in a row.
        panel_inches: Size of one image panel in inches.
        suptitle: Optional title of the whole figure.

    Returns:
        A matplotlib figure (Agg canvas; ``fig.savefig("grid.png")`` or TensorBoard ``add_figure``).
    """
    if not (len(images) == len(cams) == len(titles)):
        raise ValueError(f"got {len(images)} images, {len(cams)} heat maps and {len(titles)} titles")
    if len(images) == 0:
        raise ValueError("grid() needs at least one image")
    cols = max(1, min(pairs_per_row, len(images)))
    rows = math.ceil(len(images) / cols)
    extra = 0.35 if suptitle else 0.0
    fig = Figure(figsize=(2 * cols * panel_inches, rows * (panel_inches + 0.35) + extra), layout="constrained")
    if suptitle:
        fig.suptitle(suptitle)
    subfigs = np.atleast_1d(fig.subfigures(rows, cols, squeeze=False)).ravel()
    for k, subfig in enumerate(subfigs):
        if k >= len(images):
            break
        rgb = to_hwc_uint8(images[k])
        left, right = subfig.subplots(1, 2)
        left.imshow(rgb)
        right.imshow(overlay(rgb, cams[k]))
        for ax in (left, right):
            ax.set_axis_off()
        subfig.suptitle(titles[k], fontsize=9)
    return fig


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an ``[H, W, 3]`` uint8 RGB array as a PNG (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_hwc_uint8(image)).save(path)
    return path


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure as a PNG (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
