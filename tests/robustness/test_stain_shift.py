"""Stain-shift scoring: the shifts, level 0 equal to ``breakhis test``, normalisation after the shift, the files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from breakhis_lit.errors import BreakHisError
from breakhis_lit.robustness import stain_shift
from breakhis_lit.robustness.stain_shift import (
    DEFAULT_LEVELS,
    check_levels,
    data_module,
    read_record,
    record_paths,
    score_run,
    shift_images,
    write_record,
)
from breakhis_lit.rundir import RunDir
from breakhis_lit.stain import hed_jitter
from breakhis_lit.stain.target_file import run_target


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 150 + 80
    return torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear").round().to(torch.uint8)


def test_level_zero_is_the_images_and_shifts_grow_with_the_level():
    x = _images()
    assert shift_images(x, 0.0) is x
    changes = [(shift_images(x, k).float() - x.float()).abs().mean().item() for k in DEFAULT_LEVELS[1:]]
    assert changes == sorted(changes)
    assert changes[0] > 1


def test_every_level_uses_the_same_uniforms():
    p1 = hed_jitter.draw(5, torch.Generator().manual_seed(3), scale=0.05, bias=0.02)
    p2 = hed_jitter.draw(5, torch.Generator().manual_seed(3), scale=0.10, bias=0.04)
    torch.testing.assert_close(
        p2 - torch.tensor([1.0, 0.0]).view(1, 2, 1), 2 * (p1 - torch.tensor([1.0, 0.0]).view(1, 2, 1))
    )
    x = _images()
    by_hand = hed_jitter.apply(
        x.float() / 255, hed_jitter.draw(8, torch.Generator().manual_seed(3), scale=0.10, bias=0.04)
    )
    assert torch.equal(shift_images(x, 2.0, seed=3), by_hand.mul(255).round().to(torch.uint8))


def test_shifts_are_per_image_and_do_not_depend_on_the_batch():
    x = _images(70)
    assert torch.equal(shift_images(x, 1.0)[:10], shift_images(x[:10], 1.0))
    assert not torch.equal(shift_images(x, 1.0, seed=0), shift_images(x, 1.0, seed=1))


def test_levels_are_checked():
    assert check_levels([0, 1, 2.5]) == [0.0, 1.0, 2.5]
    for bad in ([], [-1], [1, 1], [20]):
        with pytest.raises(BreakHisError, match="--levels"):
            check_levels(bad)


@pytest.mark.parametrize("experiment", ["demo_hed", "demo_macenko"])
def test_level_zero_scores_what_breakhis_test_scored(shift_runs: Path, experiment: str):
    run = RunDir(shift_runs / "logs" / experiment / "version_0")
    record = score_run(run, [0.0, 2.0], n_resamples=200, cache_dir=str(shift_runs / "cache"))
    tested = json.loads((run.path / "test" / "metrics.json").read_text())
    zero = record.scores[0]
    assert zero.level == 0
    assert zero.mean_abs_change == 0
    for metric in ("accuracy", "balanced_accuracy", "auroc"):
        assert zero.value(metric) == pytest.approx(tested["metrics"][metric], abs=1e-6), metric
        low, high = zero.value(metric, "low"), zero.value(metric, "high")
        assert low <= zero.value(metric) <= high
    assert zero.metrics["accuracy"]["unit"] == "group"
    assert record.n_images == tested["n_images"]
    assert record.stain_norm == ("macenko" if experiment == "demo_macenko" else "none")
    assert (record.hed_scale, record.hed_bias) == ((0.05, 0.02) if experiment == "demo_hed" else (0.0, 0.0))
    assert record.scores[1].mean_abs_change > 10
    assert record.split_hash == run.record().split_hash


def test_a_normalising_run_normalises_the_shifted_images(shift_runs: Path, monkeypatch: pytest.MonkeyPatch):
    run = RunDir(shift_runs / "logs" / "demo_macenko" / "version_0")
    target = run_target(run.stain_target, "macenko")
    seen = []
    original = stain_shift.normalize_to

    def spy(images, t):
        seen.append((images.clone(), t))
        return original(images, t)

    monkeypatch.setattr(stain_shift, "normalize_to", spy)
    score_run(run, [1.0], n_resamples=50, cache_dir=str(shift_runs / "cache"))
    assert seen
    assert all(t == target for _, t in seen)
    # what was normalised is the shifted raw image, not the cached normalised one
    dm = data_module(run, yaml.safe_load(run.config.read_text()), None, str(shift_runs / "cache"))
    dm.setup("test")
    ds = dm.dataset("test")
    raw = ds.images[ds.rows]
    assert torch.equal(torch.cat([s for s, _ in seen]), shift_images(raw, 1.0))


def test_record_files_round_trip(shift_runs: Path, tmp_path: Path):
    run = RunDir(shift_runs / "logs" / "demo_hed" / "version_0")
    record = score_run(run, [0.0, 1.0], n_resamples=100, cache_dir=str(shift_runs / "cache"))
    json_path, csv_path = write_record(run, record)
    assert (json_path, csv_path) == record_paths(run)
    assert json_path == run.path / "test" / "stain_shift.json"
    assert read_record(json_path) == record
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["level"] for r in rows] == ["0", "1"]
    assert float(rows[0]["accuracy"]) == pytest.approx(record.scores[0].value("accuracy"), abs=1e-6)
    assert record_paths(run, "last")[0].name == "stain_shift_last.json"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(BreakHisError, match="not a stain-shift record"):
        read_record(tmp_path / "bad.json")
    with pytest.raises(BreakHisError, match="no such file"):
        read_record(tmp_path / "missing.json")


def test_bad_runs_are_named(shift_runs: Path, tmp_path: Path):
    with pytest.raises(BreakHisError, match="not a run made by `breakhis fit`"):
        score_run(RunDir(tmp_path), [0.0])
    run = RunDir(shift_runs / "logs" / "demo_hed" / "version_0")
    with pytest.raises(BreakHisError, match="--checkpoint middle"):
        score_run(run, [0.0], checkpoint="middle")
    with pytest.raises(BreakHisError, match="no such file, but the run normalises"):
        run_target(RunDir(tmp_path).stain_target, "macenko")
    assert run_target(RunDir(tmp_path).stain_target, "none").method == "none"
