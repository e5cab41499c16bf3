"""The bootstrap benchmark's target case: 2,000 images x 2,000 patient-bootstrap replicates of every metric < 2 s."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bootstrap_speed.py"


def test_target_case_under_two_seconds_on_one_core() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only-target", "--repeat", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (timing,) = result["timings"]
    print(
        f"\n{result['resamples']} patient-bootstrap replicates of every metric, {result['images']} images, "
        f"{result['groups']} groups, binary, one thread: {timing['seconds']:.3f} s"
    )
    assert (timing["unit"], timing["classes"], timing["method"]) == ("patient", 2, "percentile")
    assert (result["images"], result["resamples"], result["threads"]) == (2000, 2000, 1)
    assert timing["seconds"] < 2.0
    assert result["target_met"]
