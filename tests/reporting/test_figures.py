import shutil

import pytest
from PIL import Image

from breakhis_lit.reporting.figures import (
    aggregate_series,
    gradcam_label,
    pick_gradcam,
    plot_confusion,
    plot_curves,
    plot_gradcam_pairs,
)
from breakhis_lit.reporting.runs import load_runs

from fake_runs import write_fake_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side=300, max_side=6000):
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) >= min_side
        assert max(image.size) <= max_side


@pytest.fixture(scope="module")
def runs(fake_logs):
    return load_runs(fake_logs)


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_plot_curves(runs, tmp_path, metric):
    out = plot_curves(runs, metric, tmp_path / "sub" / f"curves_{metric}.png")
    assert out == tmp_path / "sub" / f"curves_{metric}.png"
    assert_png(out)


def test_plot_curves_nothing_to_draw(runs, tmp_path):
    assert plot_curves(runs, "no_such_metric", tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_aggregate_series_by_hand():
    epochs, mean, std = aggregate_series([{0: 1.0, 1: 0.5}, {0: 3.0, 1: 0.7, 2: 0.2}])
    assert epochs.tolist() == [0, 1, 2]
    assert mean.tolist() == pytest.approx([2.0, 0.6, 0.2])
    assert std.tolist() == pytest.approx([2**0.5, 0.02**0.5, 0.0])


def test_plot_confusion(runs, tmp_path):
    assert_png(plot_confusion(runs, tmp_path / "confusion.png"))


def test_plot_confusion_subtype(tmp_path):
    write_fake_run(tmp_path / "logs" / "version_0", task="subtype", magnification=None)
    assert_png(plot_confusion(load_runs(tmp_path / "logs"), tmp_path / "confusion.png"), min_side=200)


def test_plot_gradcam_pairs(runs, tmp_path):
    assert_png(plot_gradcam_pairs(runs, tmp_path / "gradcam_pairs.png"))


def test_gradcam_pairs_none_without_pngs(tmp_path):
    run_dir = write_fake_run(tmp_path / "logs" / "version_0", gradcam=False)
    (run_dir / "gradcam").mkdir()
    Image.new("RGB", (8, 8)).save(run_dir / "gradcam" / "test_grid.png")  # no class in the name
    assert plot_gradcam_pairs(load_runs(tmp_path / "logs"), tmp_path / "g.png") is None
    assert not (tmp_path / "g.png").exists()


def test_gradcam_pairs_with_only_malignant(tmp_path):
    run_dir = write_fake_run(tmp_path / "logs" / "version_0")
    (run_dir / "gradcam" / "test_benign_0.png").unlink()
    assert_png(plot_gradcam_pairs(load_runs(tmp_path / "logs"), tmp_path / "g.png"), min_side=200)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("test_benign_0.png", "benign"),
        ("test_malignant_12.png", "malignant"),
        ("epoch3/val_Benign.png", "benign"),
        ("test_benign_pred-malignant_0.png", "benign"),
        ("test_DC_0.png", "malignant"),
        ("test_PT_1.png", "benign"),
        ("test_ductal_carcinoma_1.png", "malignant"),
        ("test_grid.png", None),
        ("test_ADAM_0.png", None),
    ],
)
def test_gradcam_label(name, label):
    assert gradcam_label(name) == label


def test_pick_gradcam_prefers_test_images(tmp_path):
    run_dir = write_fake_run(tmp_path / "version_0")
    shutil.copy(run_dir / "gradcam" / "test_benign_0.png", run_dir / "gradcam" / "a_val_benign_0.png")
    _, path = pick_gradcam(load_runs(tmp_path), "benign")
    assert path.name == "test_benign_0.png"
