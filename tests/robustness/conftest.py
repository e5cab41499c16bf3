"""Fixtures of the robustness tests: two short fitted and tested demo runs (HED, Macenko), and fake records."""

from __future__ import annotations

from pathlib import Path

import pytest

from breakhis_lit.robustness.stain_shift import ShiftScore, StainShiftRecord

from stain_runs import fit_and_test


@pytest.fixture(scope="session")
def shift_runs(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``logs/`` holding ``demo_hed/version_0`` and ``demo_macenko/version_0``, fitted and tested; ``cache/`` beside."""
    tmp = tmp_path_factory.mktemp("shift_runs")
    fit_and_test(demo_root, tmp, "configs/demo_hed.yaml")
    fit_and_test(demo_root, tmp, "configs/demo_macenko.yaml")
    return tmp


def _fake_record(experiment: str, version: int, slope: float, levels=(0.0, 1.0, 2.0)) -> StainShiftRecord:
    """A record whose accuracy and AUROC fall by ``slope`` per level, with +-0.05 intervals."""
    scores = []
    for k in levels:
        value = 0.9 - slope * k
        metrics = {
            m: {"estimate": value, "low": value - 0.05, "high": value + 0.05, "unit": "group"}
            for m in ("accuracy", "auroc")
        }
        scores.append(ShiftScore(level=k, scale=0.05 * k, bias=0.02 * k, mean_abs_change=20 * k, metrics=metrics))
    return StainShiftRecord(
        run=f"logs/{experiment}/version_{version}", experiment=experiment, version=version, model="DALAResNet",
        checkpoint="best.ckpt", checkpoint_epoch=3, stain_norm="macenko" if "macenko" in experiment else "none",
        hed_scale=0.05 if "hed" in experiment else 0.0, hed_bias=0.02 if "hed" in experiment else 0.0,
        classes=["benign", "malignant"], split_hash="abc", n_images=100, n_patients=10, n_groups=10,
        data_seed=version, seed=0, n_resamples=100, scores=scores,
    )  # fmt: skip


@pytest.fixture
def fake_record():
    """``fake_record(experiment, version, slope)``: a record without a run (see ``_fake_record``)."""
    return _fake_record
