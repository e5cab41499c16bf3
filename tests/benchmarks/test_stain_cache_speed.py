"""The ``--quick`` stain cache benchmark runs on the CPU and ends with one JSON line of the promised shape."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "stain_cache_speed.py"


def test_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "cache.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == result
    demo = result["demo"]
    for method in ("none", "macenko", "reinhard"):
        assert demo[method]["cold_s"] > demo[method]["warm_s"] > 0
        assert demo[method]["bound_warm_s"] > 0
        assert demo[method]["images"] == 144
    if result["samples"] is not None:
        for method in ("macenko", "reinhard"):
            assert set(result["samples"][method]) == {"fit_s", "normalise_and_write_s", "warm_load_s"}
