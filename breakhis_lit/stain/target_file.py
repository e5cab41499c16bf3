"""A stain target as a file: the JSON a run saves (``stain_target.json``) and every later verb reads back."""

from __future__ import annotations

import json
from pathlib import Path

from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import atomic_write_text
from breakhis_lit.stain.base import StainTarget
from breakhis_lit.stain.registry import target_from_dict


def save_target(path: str | Path, target: StainTarget) -> Path:
    """Write ``target`` as indented JSON (:meth:`StainTarget.to_dict`), atomically."""
    return atomic_write_text(path, json.dumps(target.to_dict(), indent=2, sort_keys=True) + "\n")


def load_target(path: str | Path) -> StainTarget:
    """Read a target written by :func:`save_target` (or any :meth:`StainTarget.to_dict` JSON).

    Raises:
        BreakHisError: When the file is missing, not JSON, or not a stain target of this version.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BreakHisError(f"{path}: no such stain target file; it is written by `breakhis fit`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BreakHisError(f"{path}: not a readable stain target ({err}); fit the run again") from None
    if not isinstance(data, dict):
        raise BreakHisError(f"{path}: not a stain target (a JSON object); fit the run again")
    try:
        return target_from_dict(data)
    except BreakHisError as err:
        raise BreakHisError(f"{path}: {err}") from None
