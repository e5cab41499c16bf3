"""The ``--quick`` stain benchmark runs on the CPU and ends with one JSON line of the promised shape."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "stain_speed.py"
AUGMENTATIONS = (
    "batch_augmentation",
    "batch_augmentation_hed",
    "batch_augmentation_apply",
    "batch_augmentation_hed_apply",
    "hed_jitter_module",
    "hed_jitter_apply",
    "batch_augmentation_then_hed_apply",
)


def test_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "stain.json"
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
    assert result["images"] in ("samples", "synthetic")
    assert (result["batch"], result["size"], result["threads"]) == (4, 64, 1)
    for table in ("augmentation_ms", "augmentation_ms_median"):
        assert set(result[table]) == set(AUGMENTATIONS)
        assert all(v > 0 for v in result[table].values())
    assert result["hed_apply_relative_to_batch_augmentation"] > 0
    assert result["hed_step_relative_cost"] > -1
    assert set(result["normalization"]) == {"macenko", "reinhard"}
    for numbers in result["normalization"].values():
        assert set(numbers) == {"normalize_img_s", "normalize_img_s_median", "fit_img_s"}
        assert all(v > 0 for v in numbers.values())
