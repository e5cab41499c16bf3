"""Run commands with file permissions enforced, also as root (CI runs as root, which bypasses mode bits).

As root, commands run under ``setpriv`` without the capabilities that bypass permission checks, so a mode-000
folder or a read-only cache folder fails for them as it does for any user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DROPPED = "-dac_override,-dac_read_search,-fowner"


def unprivileged_prefix() -> list[str]:
    """The command prefix that enforces permissions (empty for a normal user); skips when none exists."""
    if os.name != "posix":
        pytest.skip("file permission bits are a POSIX feature")
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits cannot be enforced")
    prefix = [setpriv, f"--bounding-set={_DROPPED}", f"--inh-caps={_DROPPED}"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("setpriv cannot drop capabilities here: permission bits cannot be enforced")
    return prefix


def run_python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` with this checkout first on the path and permissions enforced."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*unprivileged_prefix(), sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``error:`` lines the command line printed."""
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]
