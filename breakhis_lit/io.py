"""Small file helpers: atomic writes so a killed process never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> Path:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``.

    Args:
        path: Destination file; its folder is created when missing.
        write: Writes the content into the (binary) temporary file.
        fsync: Flush the file to the disk before the rename (``False``: still atomic against a killed process,
            not against a power cut, and much cheaper for large files).

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, see :func:`atomic_write`."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def run_dir(trainer: Any) -> Path | None:
    """The run directory (the logger's ``log_dir``) of ``trainer``, or ``None`` when there is none.

    ``Trainer.log_dir`` broadcasts from rank zero, so calling it on rank zero alone deadlocks a DDP run; this
    reads the logger's directory locally and is safe inside ``if trainer.is_global_zero:`` blocks.
    """
    path = trainer.logger.log_dir if trainer.logger is not None else None
    if path is None and trainer.world_size == 1:
        path = trainer.log_dir
    return Path(path) if path else None
