"""``test`` writes intervals equal to the patient bootstrap of its predictions.csv, and the validation threshold."""

import json

import numpy as np
import pytest
import torch

from breakhis_lit.cli import main
from breakhis_lit.data.demo import generate_demo
from breakhis_lit.models.classifier import VALIDATION_CHOICE_KEY
from breakhis_lit.rundir import EvalRecord, RunDir, ValidationChoice
from breakhis_lit.stats import brier_score, expected_calibration_error, image_bootstrap, patient_bootstrap

FAST = [
    "--trainer.max_epochs", "2",
    "--data.image_size", "32",
    "--data.batch_size", "16",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--gradcam.every_n_epochs", "0",
    "--gradcam.on_test", "false",
    "--figures.every_n_epochs", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], RunDir]:
    """A 2-epoch demo fit and its test."""
    root = generate_demo(tmp_path_factory.mktemp("demo") / "data")
    logs = tmp_path_factory.mktemp("logs")
    common = ["--config", "configs/demo.yaml", "--data.root", str(root), "--data.cache_dir", str(logs / "cache"),
              "--log_root", str(logs), *FAST]  # fmt: skip
    main(["fit", *common])
    main(["test", *common])
    return common, RunDir(logs / "demo" / "version_0")


def _csv(run: RunDir, name: str = "test") -> dict[str, np.ndarray]:
    """The columns of an evaluation's predictions.csv as the bootstrap functions take them."""
    rows = run.evaluation(name).predictions(["benign", "malignant"])
    return {
        "probs": np.array([row.probs for row in rows]),
        "labels": np.array([["benign", "malignant"].index(row.label) for row in rows]),
        "groups": [row.group for row in rows],
        "patients": [row.patient_id for row in rows],
    }


def _record(run: RunDir) -> EvalRecord:
    return run.evaluation().record()


def test_intervals_equal_patient_bootstrap_of_predictions_csv(run) -> None:
    _, run_dir = run
    record, data = _record(run_dir), _csv(run_dir)
    spec = record.bootstrap
    assert (spec.method, spec.n_resamples, spec.seed, spec.level, spec.unit) == ("bca", 2000, 0, 0.95, "group")
    assert spec.n_groups == record.n_groups
    assert spec.seconds > 0
    options = {"class_names": record.classes, "n_resamples": 2000, "seed": 0, "method": "bca"}
    expected = patient_bootstrap(**data, **options)
    for name, interval in expected.items():
        assert record.intervals[name] == interval.to_dict(), name
    assert (
        record.image_intervals["accuracy"]
        == image_bootstrap(**data, **options, metrics=["accuracy"])["accuracy"].to_dict()
    )
    for name in ("ece", "brier", "ece_calibrated", "brier_calibrated", "recall", "specificity"):
        assert record.intervals[name]["low"] <= record.intervals[name]["high"]
    assert record.metrics["ece"] == pytest.approx(expected_calibration_error(data["probs"], data["labels"]))
    assert record.metrics["brier"] == pytest.approx(brier_score(data["probs"], data["labels"]))
    assert record.metrics["accuracy"] == pytest.approx(record.intervals["accuracy"]["estimate"], abs=1e-6)


def test_validation_threshold_comes_from_the_checkpoints_epoch(run) -> None:
    _, run_dir = run
    record = _record(run_dir)
    saved = torch.load(run_dir.checkpoint("best"), weights_only=True, map_location="cpu")[VALIDATION_CHOICE_KEY]
    assert record.validation == ValidationChoice(**saved)
    assert record.validation.epoch == record.checkpoint_epoch
    assert 0 < record.validation.threshold < 1
    assert record.validation.temperature > 0
    at = patient_bootstrap(**_csv(run_dir), class_names=record.classes, threshold=record.validation.threshold,
                           n_resamples=2000, seed=0, method="bca")  # fmt: skip
    assert set(record.metrics_at_val_threshold) == set(at) - {"auroc"}
    for name, value in record.metrics_at_val_threshold.items():
        assert value == at[name].estimate
        assert record.intervals_at_val_threshold[name] == at[name].to_dict()
    raw = json.loads((run_dir.evaluation().path / "metrics.json").read_text())
    assert raw["validation"]["threshold"] == record.validation.threshold
    assert raw["tta"] == "none"


def test_tta_and_bootstrap_options(run, capsys) -> None:
    common, run_dir = run
    main(["test", *common, "--model.tta", "d4", "--evaluation.bootstrap_method", "percentile",
          "--evaluation.n_resamples", "500", "--eval_name", "tta"])  # fmt: skip
    record = run_dir.evaluation("tta").record()
    assert record.tta == "d4"
    assert (record.bootstrap.method, record.bootstrap.n_resamples) == ("percentile", 500)
    data = _csv(run_dir, "tta")
    expected = patient_bootstrap(**data, class_names=record.classes, n_resamples=500, seed=0, method="percentile")
    assert record.intervals["accuracy"] == expected["accuracy"].to_dict()
    plain = _csv(run_dir)
    assert not np.allclose(data["probs"], plain["probs"])  # the views were averaged
    printed = capsys.readouterr().out
    assert "tta: accuracy" in printed
    assert "patient bootstrap, percentile, 500 resamples" in printed


def test_bad_bootstrap_option_is_one_line(run, capsys) -> None:
    common, _ = run
    with pytest.raises(SystemExit) as info:
        main(["test", *common, "--evaluation.n_resamples", "10"])
    assert info.value.code == 2
    assert "error: --evaluation.n_resamples 10: use at least 100" in capsys.readouterr().err
