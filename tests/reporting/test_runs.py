import json

import numpy as np
import pytest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.runs import (
    find_run_dirs,
    group_runs,
    load_run,
    load_runs,
    normalize_magnification,
    paper_model_name,
    read_history,
)

from fake_runs import write_fake_run


def test_load_runs_from_root_experiment_and_run_dir(fake_logs):
    runs = load_runs(fake_logs)
    assert len(runs) == 12
    assert {run.model for run in runs} == {"DALAResNet50", "resnet50", "vit_small_patch14_dinov2"}
    experiment = fake_logs / "resnet50_40x"
    assert [run.path for run in load_runs([experiment])] == [experiment / "version_0", experiment / "version_1"]
    assert len(load_runs(experiment / "version_1")) == 1
    # overlapping paths load each run once
    assert len(load_runs([fake_logs, experiment, experiment / "version_0"])) == 12


def test_run_fields(fake_logs):
    run = load_run(fake_logs / "dalaresnet50_100x" / "version_1")
    assert run.key == ("binary", "DALAResNet50", "100", "patient", "accession")
    assert run.paper_model == "DALA-ResNet50 (proposed)"
    assert run.seed == 1
    assert run.fold is None
    assert run.classes == ["benign", "malignant"]
    assert len(run.history) == 5
    assert run.history[0]["epoch"] == 0.0
    assert run.config["model"]["backbone"]["class_path"].endswith("DALAResNet50")
    assert [p.name for p in run.gradcam_images()] == ["test_benign_0.png", "test_malignant_0.png"]
    assert run.test_number("accuracy") == pytest.approx(run.metrics["test"]["accuracy"])


def test_confusion_from_predictions_matches_metrics(fake_logs):
    run = load_run(fake_logs / "resnet50_40x" / "version_0")
    from_json = run.confusion_matrix()
    del run.metrics["test"]["confusion_matrix"]
    np.testing.assert_array_equal(run.confusion_matrix(), from_json)


def test_natural_order_and_nested_search(tmp_path):
    for version in (10, 2, 1):
        write_fake_run(tmp_path / "a" / "deep" / f"version_{version}", seed=version, gradcam=False)
    (tmp_path / "a" / ".hidden" / "version_0").mkdir(parents=True)
    (tmp_path / "a" / ".hidden" / "version_0" / "metrics.json").write_text("{}")
    assert [p.name for p in find_run_dirs(tmp_path)] == ["version_1", "version_2", "version_10"]
    assert find_run_dirs(tmp_path / "a" / "deep" / "version_2" / "metrics.json") == [
        tmp_path / "a" / "deep" / "version_2"
    ]


def test_missing_directory_is_one_line_error(tmp_path):
    with pytest.raises(BreakHisError, match="no such directory") as info:
        load_runs([tmp_path / "nope"])
    assert str(tmp_path / "nope") in str(info.value)
    assert "\n" not in str(info.value)


def test_folder_without_runs_is_one_line_error(tmp_path, fake_logs):
    (tmp_path / "empty" / "version_0").mkdir(parents=True)
    with pytest.raises(BreakHisError, match="no finished runs") as info:
        load_runs([fake_logs, tmp_path / "empty"])
    assert str(tmp_path / "empty") in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(BreakHisError, match="no run directories"):
        load_runs([])


def test_bad_metrics_json(tmp_path):
    run_dir = tmp_path / "version_0"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{not json")
    with pytest.raises(BreakHisError, match="not valid JSON"):
        load_runs(tmp_path)
    (run_dir / "metrics.json").write_text(json.dumps({"test": {}}))
    with pytest.raises(BreakHisError, match='"model"'):
        load_runs(tmp_path)


def test_history_merges_rows_of_one_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,train/loss,val/loss,elapsed_s\n1,,0.5,\n0,0.9,0.8,1.0\n1,0.6,,2.0\n")
    assert read_history(path) == [
        {"epoch": 0.0, "train/loss": 0.9, "val/loss": 0.8, "elapsed_s": 1.0},
        {"epoch": 1.0, "train/loss": 0.6, "val/loss": 0.5, "elapsed_s": 2.0},
    ]
    assert read_history(tmp_path / "missing.csv") == []


@pytest.mark.parametrize(
    ("model", "paper"),
    [
        ("DALAResNet50", "DALA-ResNet50 (proposed)"),
        ("resnet50", "ResNet50"),
        ("seresnet50", "SEResNet50"),
        ("densenet121", "DenseNet121"),
        ("vgg16", "VGG16"),
        ("VGG16Inception", "VGG16Inception"),
        ("vit_base_patch16_224", "ViT"),
        ("vit_base_patch16_224.augreg2_in21k_ft_in1k", "ViT"),
        ("swin_base_patch4_window7_224", "Swin-Transformer"),
        ("timm/vit_small_patch14_dinov2.lvd142m", "DINOv2-ViT-S/14"),
        ("vit_base_patch14_dinov2", "DINOv2-ViT-B/14"),
        ("convnext_tiny", None),
        ("DALAResNet", None),
    ],
)
def test_paper_model_name(model, paper):
    assert paper_model_name(model) == paper


def test_wrapper_model_resolved_from_config(tmp_path):
    run_dir = write_fake_run(tmp_path / "version_0", model="densenet121", gradcam=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["model"] = "TimmClassifier"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert load_run(run_dir).model == "densenet121"


@pytest.mark.parametrize(
    ("value", "expected"), [("40", "40"), (40, "40"), ("100X", "100"), (None, "all"), ("None", "all")]
)
def test_normalize_magnification(value, expected):
    assert normalize_magnification(value) == expected


def test_group_order(fake_logs):
    keys = list(group_runs(load_runs(fake_logs)))
    assert [(k[1], k[2]) for k in keys] == [
        ("DALAResNet50", "40"),
        ("resnet50", "40"),
        ("vit_small_patch14_dinov2", "40"),
        ("DALAResNet50", "100"),
        ("resnet50", "100"),
        ("vit_small_patch14_dinov2", "100"),
    ]
