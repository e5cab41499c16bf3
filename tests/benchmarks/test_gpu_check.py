"""``benchmarks/gpu_check.sh``: the one-call GPU check runs end to end (here without CUDA: its tests skip)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def test_usage_error() -> None:
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "usage: bash benchmarks/gpu_check.sh fetch|run" in proc.stderr


def test_run_writes_its_results(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "BENCH_ARGS": "--quick --data-only"}
    proc = subprocess.run(["bash", str(SCRIPT), "run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gpu_tests.log", "nvidia-smi.txt", "speed.json", "speed.log", "versions.txt",
    ]  # fmt: skip
    assert json.loads((tmp_path / "speed.json").read_text())["errors"] == []
    assert "torch" in (tmp_path / "versions.txt").read_text()
    tests = (tmp_path / "gpu_tests.log").read_text()
    assert "passed" in tests or "skipped" in tests
