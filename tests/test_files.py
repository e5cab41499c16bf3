"""Atomic writes: permissions follow the umask, failures keep the old file, stale temporary files are removed."""

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breakhis_lit import files as files_mod
from breakhis_lit.errors import DiskFullError
from breakhis_lit.files import (
    DEAD_WRITER_TEMP_AGE_S,
    STALE_TEMP_AGE_S,
    atomic_write,
    atomic_write_text,
    remove_stale_temps,
)


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

    with pytest.raises(OSError, match="no space left"):
        atomic_write(target, boom)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_killed_write_leaves_a_temp_that_the_next_write_removes(tmp_path):
    code = (
        "import sys, time; from breakhis_lit.files import atomic_write\n"
        "def slow(f):\n"
        "    f.write(b'x' * 1_000_000); f.flush(); print('writing', flush=True); time.sleep(60)\n"
        "atomic_write(sys.argv[1], slow)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "best.ckpt")], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline() == b"writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (leftover,) = tmp_path.glob(".best.ckpt.*.tmp")
    assert leftover.stat().st_size == 1_000_000
    atomic_write_text(tmp_path / "metrics.json", "{}")  # a write right after the kill: the temp may be a live one's
    assert leftover.exists()
    _age(leftover, DEAD_WRITER_TEMP_AGE_S + 5)
    atomic_write_text(tmp_path / "metrics.json", "{}")
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_only_stale_temps_are_removed(tmp_path):
    host = files_mod._HOST
    dead, alive = _dead_pid(), os.getpid()
    names = {
        f".a.ckpt.{host}-{dead}.0123abcd.tmp": (120, True),  # dead writer of this machine
        f".b.ckpt.{host}-{dead}.0123abcd.tmp": (10, False),  # dead, but changed a moment ago
        f".c.ckpt.{host}-{alive}.0123abcd.tmp": (1800, False),  # a live writer
        f".d.ckpt.otherhost-{dead}.0123abcd.tmp": (1800, False),  # another machine's writer: by age only
        f".e.ckpt.otherhost-{dead}.0123abcd.tmp": (STALE_TEMP_AGE_S + 60, True),
        ".f.npy.k3j_x9qa.tmp": (STALE_TEMP_AGE_S + 60, True),  # mkstemp name of an older version
        ".g.npy.k3j_x9qa.tmp": (600, False),
        ".splits.csv.tmp": (STALE_TEMP_AGE_S + 60, False),  # not an atomic_write temporary file
        "notes.tmp": (STALE_TEMP_AGE_S + 60, False),
    }
    for name, (age, _) in names.items():
        (tmp_path / name).write_bytes(b"x")
        _age(tmp_path / name, age)
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, (_, stale) in names.items() if stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, (_, stale) in names.items() if not stale)


def test_concurrent_writers_never_remove_each_others_temps(tmp_path):
    seen: list[list[str]] = []

    def inner(f):
        f.write(b"inner")
        seen.append(sorted(p.name for p in tmp_path.glob(".*.tmp")))

    def outer(f):
        f.write(b"outer")
        atomic_write(tmp_path / "b.json", inner)  # a second writer in the same folder while this one writes

    atomic_write(tmp_path / "a.json", outer)
    assert len(seen[0]) == 2  # both temporary files existed side by side
    assert (tmp_path / "a.json").read_bytes() == b"outer"
    assert (tmp_path / "b.json").read_bytes() == b"inner"


def test_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"previous")

    def write(f: object) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # torch.save's zip writer reports it so, while handling the OSError
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None

    with pytest.raises(DiskFullError) as info:
        atomic_write(target, write)
    assert isinstance(info.value, OSError)  # the image cache tolerates failed writes as OSErrors
    message = str(info.value)
    assert message.startswith(f"{target}: no space left to write it (")
    assert " free of " in message
    assert "\n" not in message
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
