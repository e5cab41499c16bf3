"""Stain normalisers by name (``macenko``, ``reinhard``, ``none``) and targets back from their JSON."""

from __future__ import annotations

import inspect
import json
from typing import Any

from torch import Tensor

from breakhis_lit.errors import BreakHisError
from breakhis_lit.stain.base import StainNormalizer, StainTarget
from breakhis_lit.stain.identity import IdentityNormalizer, IdentityTarget
from breakhis_lit.stain.macenko import MacenkoNormalizer, MacenkoTarget
from breakhis_lit.stain.reinhard import ReinhardNormalizer, ReinhardTarget

NORMALIZERS: dict[str, type] = {
    "macenko": MacenkoNormalizer,
    "reinhard": ReinhardNormalizer,
    "none": IdentityNormalizer,
}
TARGETS: dict[str, type[StainTarget]] = {t.method: t for t in (MacenkoTarget, ReinhardTarget, IdentityTarget)}


def _unknown(name: object) -> BreakHisError:
    return BreakHisError(f"stain normalisation {name!r}: unknown; pass one of {', '.join(NORMALIZERS)}")


def get_normalizer(name: str, **options: Any) -> StainNormalizer:
    """Build the normaliser called ``name`` with its options (e.g. ``get_normalizer("macenko", beta=0.15)``).

    Raises:
        BreakHisError: If ``name`` is unknown or an option is not one of its options.
    """
    cls = NORMALIZERS.get(name)
    if cls is None:
        raise _unknown(name)
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise BreakHisError(
            f"stain normalisation {name!r}: unknown option(s) {', '.join(unknown)}; use {', '.join(sorted(accepted))}"
        )
    return cls(**options)


def target_from_dict(data: dict[str, Any]) -> StainTarget:
    """Rebuild a target from :meth:`StainTarget.to_dict` output (its ``method`` picks the class)."""
    cls = TARGETS.get(data.get("method"))
    if cls is None:
        raise _unknown(data.get("method"))
    return cls.from_dict(data)


def target_from_json(text: str) -> StainTarget:
    """Rebuild a target from :meth:`StainTarget.to_json` output.

    Raises:
        BreakHisError: If the text is not a target's JSON.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BreakHisError(f"stain target JSON unreadable ({err}); fit the stain normaliser again") from None
    if not isinstance(data, dict):
        raise BreakHisError("stain target JSON is not an object; fit the stain normaliser again")
    return target_from_dict(data)


def normalize_to(images: Tensor, target: StainTarget, batch_size: int = 64) -> Tensor:
    """Normalise uint8 ``[B, 3, H, W]`` images to ``target`` with the method that made it."""
    return get_normalizer(target.method, batch_size=batch_size).normalize(images, target)
