"""The ``none`` stain normaliser: images are left as they are."""

from __future__ import annotations

import dataclasses

from torch import Tensor

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.base import StainTarget
from breakhis_lit.stain.tissue import check_uint8_images


@dataclasses.dataclass(frozen=True)
class IdentityTarget(StainTarget):
    """The target of the ``none`` normaliser (nothing fitted)."""

    method = "none"


class IdentityNormalizer:
    """No stain normalisation: :meth:`normalize` returns its input.

    Args:
        batch_size: Accepted for the same interface as the other normalisers; unused.
    """

    name = "none"

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    def fit(self, images: Tensor) -> IdentityTarget:
        """Return the (empty) target; ``images`` are only checked."""
        check_uint8_images(images)
        return IdentityTarget()

    def normalize(self, images: Tensor, target: StainTarget) -> Tensor:
        """Return ``images`` unchanged (the same tensor)."""
        check_uint8_images(images)
        if not isinstance(target, IdentityTarget):
            raise BreakHisError(f"stain target {target.method!r} given to the 'none' normaliser; fit it with none")
        return images
