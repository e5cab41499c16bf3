"""Small file helpers: atomic writes so a killed process never leaves a half-written file behind."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_TEMP_ATTEMPTS = 100


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create a new, empty temporary file beside ``path``; returns its descriptor and path.

    The file is created with mode ``0o666`` filtered by the process umask (as ``open`` does), so the renamed file
    gets the same permissions as any other file this process writes (``tempfile.mkstemp`` would give ``0o600``).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{os.urandom(4).hex()}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> Path:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``.

    The result has the permissions of a plainly created file (``0o666`` less the umask).

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
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    logger = getattr(trainer, "logger", None)
    path = getattr(logger, "log_dir", None) if logger is not None else None
    if path is None and getattr(trainer, "world_size", 1) == 1:
        path = getattr(trainer, "log_dir", None)
    return Path(path) if path else None
