"""The ``--quick`` training-speed benchmark runs on the CPU and ends with one JSON line of the promised shape."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "train_speed.py"

NUMBERS = (
    "reference_s", "pipeline_s", "pipeline_cold_s", "pipeline_warm_s", "ratio", "ratio_warm",
    "train_img_s_bs256", "infer_img_s_bs256", "decode_img_s_1core", "decode_img_s_all_cores", "warm_cache_load_s",
)  # fmt: skip
INTEGERS = ("cpu_count", "n_train", "n_val", "epochs", "image_size", "ops_per_step_reference", "ops_per_step_pipeline")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path_factory.mktemp("speed") / "speed.json"
    proc = subprocess.run(
        # One thread: the shape, not the speed, is under test, and one thread keeps a busy 2-core runner fast.
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr tail:\n{proc.stderr[-3000:]}"
    return proc, json.loads(lines[-1]), out


def test_quick_run_succeeds(quick: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    proc, result, _ = quick
    assert proc.returncode == 0, f"errors: {result.get('errors')}\nstderr tail:\n{proc.stderr[-3000:]}"
    assert result["errors"] == []


def test_last_line_has_the_promised_keys_and_types(quick: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    _, result, _ = quick
    for key in NUMBERS:
        assert type(result[key]) in (int, float), key
        assert result[key] >= 0, key
    for key in INTEGERS:
        assert type(result[key]) is int, key
        assert result[key] > 0, key
    assert result["train_img_s_bs256_compile"] is None or isinstance(result["train_img_s_bs256_compile"], float)
    assert result["quick"] is True
    assert result["torch_threads"] == 1
    assert isinstance(result["device"], str)
    assert isinstance(result["torch"], str)
    assert isinstance(result["lightning"], str)
    assert result["pipeline_s"] == result["pipeline_cold_s"]
    assert result["ratio"] == pytest.approx(result["pipeline_s"] / result["reference_s"], rel=0.01)
    assert result["ratio_warm"] == pytest.approx(result["pipeline_warm_s"] / result["reference_s"], rel=0.01)
    assert result["n_train"] > result["n_val"] > 0
    assert set(result["checks"]) >= {"ratio_le_1.3", "quick_ratio_le_1.5"}
    assert all(v is None or isinstance(v, bool) for v in result["checks"].values())
    assert set(result["targets"]) == set(result["checks"])


def test_ops_per_step_within_15_percent_of_the_hand_loop(quick: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    _, result, _ = quick  # a count, not a time: the same on every machine and load
    assert result["ops_ratio"] == pytest.approx(
        result["ops_per_step_pipeline"] / result["ops_per_step_reference"], abs=1e-3
    )
    assert result["checks"]["ops_ratio_le_1.15"] is True, (
        result["ops_per_step_pipeline"],
        result["ops_per_step_reference"],
    )


def test_out_file_holds_the_same_result(quick: tuple[subprocess.CompletedProcess, dict, Path]) -> None:
    _, result, out = quick
    assert json.loads(out.read_text()) == result
