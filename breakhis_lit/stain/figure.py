"""A figure for people: images before and after Macenko and Reinhard normalisation, and HED-jitter draws."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor

from breakhis_lit.stain.hed_jitter import HEDJitter
from breakhis_lit.stain.macenko import MacenkoNormalizer
from breakhis_lit.stain.reinhard import ReinhardNormalizer


def stain_figure(
    images: Tensor,
    reference: Tensor | None = None,
    *,
    jitter: HEDJitter | None = None,
    n_jitter: int = 3,
    seed: int = 0,
    labels: Sequence[str] | None = None,
    panel_inches: float = 1.8,
) -> Figure:
    """One row per image: the original, Macenko, Reinhard and ``n_jitter`` HED-jitter draws.

    Args:
        images: uint8 ``[N, 3, H, W]`` images to show (a few).
        reference: uint8 ``[M, 3, H', W']`` images both normalisers are fitted to (default: ``images[:1]``).
        jitter: The HED jitter to draw from (default: :class:`HEDJitter` at its default strength).
        n_jitter: Jitter draws per image.
        seed: Seed of the jitter draws.
        labels: One label per row (default: the row number).
        panel_inches: Side of one panel.

    Returns:
        A matplotlib figure (not attached to pyplot; save it with ``fig.savefig(path)``).
    """
    reference = images[:1] if reference is None else reference
    jitter = jitter or HEDJitter()
    columns: list[tuple[str, Tensor]] = [("original", images.float() / 255)]
    for name, normalizer in (("Macenko", MacenkoNormalizer()), ("Reinhard", ReinhardNormalizer())):
        columns.append((name, normalizer.normalize(images, normalizer.fit(reference)).float() / 255))
    generator = torch.Generator().manual_seed(seed)
    for k in range(n_jitter):
        columns.append((f"HED jitter {k + 1}", jitter(images, generator=generator)))
    n = images.shape[0]
    fig = Figure(figsize=(panel_inches * len(columns), panel_inches * n + 0.4), layout="constrained")
    axes = fig.subplots(n, len(columns), squeeze=False)
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    for c, (title, batch) in enumerate(columns):
        for r in range(n):
            ax = axes[r][c]
            ax.imshow(batch[r].permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(labels[r], fontsize=7)
    fitted = f"{reference.shape[0]} image" + ("s" if reference.shape[0] > 1 else "")
    fig.suptitle(f"stain normalisation fitted to {fitted}; HED jitter {jitter.extra_repr()}")
    return fig
