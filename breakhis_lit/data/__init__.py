"""BreakHis data layer: index, splits, decode-once cache, demo data and ``BreakHisDataModule``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from breakhis_lit.data.datamodule import BreakHisDataModule
    from breakhis_lit.data.dataset import SampleRecord
    from breakhis_lit.data.naming import BreakHisImage

__all__ = ["BreakHisDataModule", "BreakHisImage", "SampleRecord"]

_LAZY = {
    "BreakHisDataModule": "breakhis_lit.data.datamodule",
    "SampleRecord": "breakhis_lit.data.dataset",
    "BreakHisImage": "breakhis_lit.data.naming",
}


def __getattr__(name: str) -> Any:
    # Lazy: the command line's data commands must not import Lightning.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'breakhis_lit.data' has no attribute {name!r}")
