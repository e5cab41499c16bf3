"""Small file helpers: atomic writes so a killed process never leaves a half-written file behind.

A write goes to ``.<name>.<host>-<pid>.<random>.tmp`` beside the destination and is renamed into place. A process
killed mid-write leaves that temporary file; the next atomic write into the same folder removes it once it is
certainly stale: its writer ran on this machine and is gone, or nobody has touched it for an hour (writers on
other machines sharing the folder, temporary files named by ``tempfile.mkstemp``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from breakhis_lit.errors import BreakHisError, DiskFullError

log = logging.getLogger(__name__)

_TEMP_ATTEMPTS = 100
#: A temporary file untouched this long is stale whoever wrote it (a live writer keeps writing into it).
STALE_TEMP_AGE_S = 3600.0
#: A temporary file of a dead writer on this machine is stale once untouched this long (a safety margin for
#: PID namespaces: a process in another container of the same host may look dead from here).
DEAD_WRITER_TEMP_AGE_S = 60.0
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname().split(".")[0]) or "host"
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
_LEGACY_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # tempfile.mkstemp-style names (no host or pid)


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (``True`` when it cannot be told)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def remove_stale_temps(folder: str | Path, *, now: float | None = None) -> list[Path]:
    """Remove the temporary files that killed :func:`atomic_write` calls left in ``folder``.

    A temporary file is stale when its writer ran on this machine, is no longer running and the file has not
    changed for :data:`DEAD_WRITER_TEMP_AGE_S`, or when it has not changed for :data:`STALE_TEMP_AGE_S`
    (writers on other machines, names without a writer). Live writers' files are never touched.

    Args:
        folder: The folder to clean (not recursive).
        now: The current time (``time.time()``), for tests.

    Returns:
        The removed files.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    freed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        match = _TEMP_NAME.match(name)
        if match is None and not _LEGACY_TEMP_NAME.match(name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - st.st_mtime
            dead = match is not None and match["host"] == _HOST and not _pid_alive(int(match["pid"]))
            if age > STALE_TEMP_AGE_S or (dead and age > DEAD_WRITER_TEMP_AGE_S):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
                freed += st.st_size
        except OSError:  # gone meanwhile (another cleaner), or not ours to remove
            continue
    if removed:
        log.warning(
            "removed %d stale temporary file(s) of interrupted writes (%.1f MB) in %s, e.g. %s",
            len(removed),
            freed / 2**20,
            folder,
            removed[0].name,
        )
    return removed


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create a new, empty temporary file beside ``path``; returns its descriptor and path.

    The file is created with mode ``0o666`` filtered by the process umask (as ``open`` does), so the renamed file
    gets the same permissions as any other file this process writes (``tempfile.mkstemp`` would give ``0o600``).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{_HOST}-{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free temporary file name for {path.name}")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> Path:
    """Write ``path`` through a temporary file in the same folder and ``os.replace``.

    The result has the permissions of a plainly created file (``0o666`` less the umask). Stale temporary files
    of earlier, interrupted writes in the folder are removed first (:func:`remove_stale_temps`).

    Args:
        path: Destination file; its folder is created when missing.
        write: Writes the content into the (binary) temporary file.
        fsync: Flush the file to the disk before the rename (``False``: still atomic against a killed process,
            not against a power cut, and much cheaper for large files).

    Returns:
        The destination path.

    Raises:
        DiskFullError: When the disk (or quota) is full; the partial file is removed first, so the previous
            ``path`` and every other file stay as they were.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if _out_of_space(err):
            raise DiskFullError(disk_full_message(path)) from None
        raise
    return path


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _out_of_space(err: BaseException | None) -> bool:
    """Whether ``err``, or an exception it was raised from or while handling, is a full disk or quota.

    ``torch.save`` reports a full disk as a ``RuntimeError`` of its zip writer raised while handling the ``OSError``.
    """
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def disk_full_message(path: str | Path) -> str:
    """One line naming ``path``, the space left on its disk, and what to do."""
    path = Path(path)
    try:
        usage = shutil.disk_usage(path.parent)
        space = f"{_size(usage.free)} free of {_size(usage.total)} on the disk of {path.parent}"
    except OSError:
        space = f"the disk of {path.parent} is full"
    return (
        f"{path}: no space left to write it ({space}); free some space there or write to another disk; the files "
        "written before are intact"
    )


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, see :func:`atomic_write`."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def read_json(path: Path, written_by: str) -> Any:
    """The JSON value in ``path``, a file that ``written_by`` (a verb, e.g. ```breakhis fit```) writes.

    Raises:
        BreakHisError: When the file is missing or not readable JSON, naming the verb that writes it.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BreakHisError(f"{path}: no such file; it is written by {written_by}") from None
    except (OSError, ValueError) as err:  # ValueError: not UTF-8 or not JSON
        raise BreakHisError(f"{path}: not readable JSON ({err}); rerun {written_by}") from None


def run_dir(trainer: Any) -> Path | None:
    """The run directory (the logger's ``log_dir``) of ``trainer``, or ``None`` when there is none.

    ``Trainer.log_dir`` broadcasts from rank zero, so calling it on rank zero alone deadlocks a DDP run; this
    reads the logger's directory locally and is safe inside ``if trainer.is_global_zero:`` blocks.
    """
    path = trainer.logger.log_dir if trainer.logger is not None else None
    if path is None and trainer.world_size == 1:
        path = trainer.log_dir
    return Path(path) if path else None
