import json

import numpy as np
import pytest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.runs import group_runs, load_run, load_runs, paper_model_name
from breakhis_lit.rundir import RunDir, find_runs

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
    [run] = load_run(fake_logs / "dalaresnet50_100x" / "version_1")
    assert run.key == ("binary", "DALAResNet50", "100", "patient", "accession", "test")
    assert run.paper_model == "DALA-ResNet50 (proposed)"
    assert run.seed == 1
    assert run.fold is None
    assert run.classes == ["benign", "malignant"]
    assert len(run.history) == 5
    assert run.history[0]["epoch"] == 0.0
    assert run.record.backbone.endswith("DALAResNet50")
    assert [entry.label for entry, _ in run.gradcam()] == ["benign", "malignant"]
    assert all(path.is_file() for _, path in run.gradcam())
    assert run.test_number("accuracy") == pytest.approx(run.evaluation.metrics["accuracy"])
    assert run.split_hash == run.record.split_hash


def test_confusion_matches_predictions(fake_logs):
    [run] = load_run(fake_logs / "resnet50_40x" / "version_0")
    counts = np.zeros((2, 2), dtype=np.int64)
    for row in run.predictions():
        counts[run.classes.index(row.label), run.classes.index(row.prediction)] += 1
    np.testing.assert_array_equal(run.confusion_matrix(), counts)


def test_runs_of_one_seed_share_their_test_split(fake_logs):
    runs = load_runs(fake_logs)
    by_seed = {}
    for run in runs:
        if run.magnification == "40":
            by_seed.setdefault(run.seed, set()).add(run.split_hash)
    assert all(len(hashes) == 1 for hashes in by_seed.values())
    assert len({next(iter(h)) for h in by_seed.values()}) == len(by_seed)


def test_natural_order_and_nested_search(tmp_path):
    for version in (10, 2, 1):
        write_fake_run(tmp_path / "a" / "deep" / f"version_{version}", seed=version, gradcam=False)
    (tmp_path / "a" / ".hidden" / "version_0").mkdir(parents=True)
    (tmp_path / "a" / ".hidden" / "version_0" / "run.json").write_text("{}")
    assert [r.path.name for r in find_runs(tmp_path)] == ["version_1", "version_2", "version_10"]
    assert find_runs(tmp_path / "a" / "deep" / "version_2") == [RunDir(tmp_path / "a" / "deep" / "version_2")]


def test_untested_run_is_loaded_without_an_evaluation(tmp_path):
    write_fake_run(tmp_path / "version_0", evaluate=False)
    [run] = load_runs(tmp_path)
    assert run.evaluation is None
    assert run.test == {}
    assert run.number("fit_time_s") is not None


def test_missing_directory_is_one_line_error(tmp_path):
    with pytest.raises(BreakHisError, match="no such folder") as info:
        load_runs([tmp_path / "nope"])
    assert str(tmp_path / "nope") in str(info.value)
    assert "\n" not in str(info.value)


def test_folder_without_runs_is_one_line_error(tmp_path, fake_logs):
    (tmp_path / "empty" / "version_0").mkdir(parents=True)
    with pytest.raises(BreakHisError, match="no fitted runs") as info:
        load_runs([fake_logs, tmp_path / "empty"])
    assert str(tmp_path / "empty") in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(BreakHisError, match="no run directories"):
        load_runs([])


def test_bad_records_are_one_line_errors(tmp_path):
    run_dir = write_fake_run(tmp_path / "version_0", gradcam=False)
    (run_dir / "run.json").write_text("{not json")
    with pytest.raises(BreakHisError, match="not readable JSON") as info:
        load_runs(tmp_path)
    assert "\n" not in str(info.value)
    (run_dir / "run.json").write_text(json.dumps({"model": "x"}))
    with pytest.raises(BreakHisError, match="not a RunRecord of this breakhis_lit version"):
        load_runs(tmp_path)


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
