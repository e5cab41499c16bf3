"""``benchmarks/gpu_check.sh run --smoke``: the one-call GPU check runs end to end on a CPU (CUDA parts skipped)."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
FILES = [
    "compile.log", "cuda_tests.log", "gpu_util.csv", "runs.tar.gz", "speed.json", "speed.log", "summary.txt",
    "versions.txt",
]  # fmt: skip


def _run(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env}
    return subprocess.run(
        ["bash", str(SCRIPT), "run", "--smoke"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_usage_error() -> None:
    for args in ([], ["run", "--fast"]):
        proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2
        assert "usage: bash benchmarks/gpu_check.sh fetch|run [--smoke]" in proc.stderr


def test_smoke_run_writes_every_file(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == FILES  # at most 8 flat files come back from the GPU
    summary = (tmp_path / "summary.txt").read_text()
    for stage in ("cuda tests: ok", "benchmark: ok", "compile tests: ok", "compile cost: skipped"):
        assert stage in summary, summary
    assert json.loads((tmp_path / "speed.json").read_text())["errors"] == []
    versions = (tmp_path / "versions.txt").read_text()
    for name in ("torch", "cuDNN", "lightning", "timm", "torchmetrics", "jsonargparse", "driver"):
        assert name in versions, name
    assert "skipped" in (tmp_path / "cuda_tests.log").read_text()  # no CUDA here
    with tarfile.open(tmp_path / "runs.tar.gz") as tar:
        assert tar.getnames() == []  # --data-only: no timed runs
    assert all(p.stat().st_size < 16 << 20 for p in tmp_path.iterdir())


def test_stages_stop_at_the_budget(tmp_path: Path) -> None:
    proc = _run(tmp_path, BUDGET_S="24")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert "cuda tests: skipped" in summary
    assert "benchmark: skipped" in summary
