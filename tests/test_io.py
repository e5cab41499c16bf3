"""Atomic writes: permissions follow the umask, failures keep the old file, stale temporary files are removed."""

import os
import stat
from pathlib import Path

import pytest

from breakhis_lit.io import atomic_write, atomic_write_text


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what any other file written by this process gets
    assert _mode(atomic_write_text(tmp_path / "metrics.json", "{}")) == expected == _mode(plain)
    assert _mode(atomic_write(tmp_path / "last.ckpt", lambda f: f.write(b"\0" * 10), fsync=False)) == expected
    replaced = atomic_write_text(tmp_path / "metrics.json", "{}")  # replacing an existing file too
    assert _mode(replaced) == expected


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = atomic_write_text(tmp_path / "predictions.csv", "old\n")

    def boom(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, boom)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]
