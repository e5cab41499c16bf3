"""``breakhis gradcam``: predict through the run's checkpoint with :class:`GradCAMWriter` writing overlays and a CSV."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breakhis_lit.callbacks.cam_writer import class_index
from breakhis_lit.cli import main
from breakhis_lit.data.naming import SUBTYPE_CODES
from breakhis_lit.errors import BreakHisError


@pytest.fixture(scope="module")
def run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A one-epoch demo fit at 32 pixels, and the options that name it."""
    tmp = tmp_path_factory.mktemp("cam_run")
    common = [
        "--config", "configs/demo.yaml", "--experiment", "cam",
        "--data.root", str(demo_root), "--data.cache_dir", str(tmp / "cache"), "--log_root", str(tmp / "logs"),
        "--data.magnification", "40", "--data.image_size", "32",
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--gradcam.every_n_epochs", "0",
    ]  # fmt: skip
    main(["fit", *common])
    return tmp / "logs" / "cam" / "version_0", common


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (30, 46, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / "sub" / "b.JPG")
    Image.fromarray(rng.integers(0, 255, (24, 40), dtype=np.uint8)).save(root / "sub" / "c.tif")  # grayscale
    (root / "notes.txt").write_text("not an image")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(["gradcam", *args])
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0]


def test_writes_overlays_and_csv_into_the_run_and_never_over_them(
    run: tuple[Path, list[str]], images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, common = run
    main(["gradcam", *common, "--data.predict_root", str(images)])
    assert f"gradcam: using checkpoint {folder / 'checkpoints' / 'best.ckpt'}" in capsys.readouterr().err
    out = folder / "gradcam" / "images"
    cams = sorted(p.name for p in out.iterdir() if p.suffix in (".png", ".csv"))
    assert cams == ["a_gradcam.png", "b_gradcam.png", "c_gradcam.png", "gradcam.csv"]
    assert "predict_root:" in (out / "config.yaml").read_text()  # the config that made them, beside them
    with Image.open(out / "a_gradcam.png") as png:
        width, height = png.size
        assert width == 46  # over the original image, not the 32x32 model input
        assert height > 30  # under a caption
        assert png.mode == "RGB"
        assert (np.asarray(png)[: height - 30] == 255).mean() > 0.5  # the caption's white strip on top
    rows = _rows(out / "gradcam.csv")
    assert list(rows[0]) == ["path", "label", "prediction", "prob_benign", "prob_malignant", "target"]
    assert {r["label"] for r in rows} == {""}  # these file names tell no class
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.JPG", "c.tif"]
    for row in rows:
        probs = [float(row["prob_benign"]), float(row["prob_malignant"])]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row["prediction"] == row["target"] == ("benign", "malignant")[int(np.argmax(probs))]
    assert not list((folder / "predict").glob("predictions-*.csv"))  # the Grad-CAM writer instead of the CSV one
    written = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    message = _error(capsys, *common, "--data.predict_root", str(images))
    assert message == f"error: {out / 'gradcam.csv'} already exists (and 3 more); pass --cam.out OTHER_DIR or delete it"
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == written  # refused before any file


def test_predict_writes_its_own_folder_and_refuses_another_image_size(
    run: tuple[Path, list[str]], images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, common = run
    main(["predict", *common, "--data.predict_root", str(images)])
    assert (folder / "predict" / "predictions-images.csv").is_file()
    assert not (folder / "predict" / "gradcam.csv").exists()  # gradcam and predict keep their own folders
    with pytest.raises(SystemExit) as info:
        main(["predict", *common, "--data.predict_root", str(images), "--data.image_size", "48"])
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: --data.image_size 48 differs from the run's 32 ({folder / 'run.json'}): a run predicts on images "
        "prepared as it was trained; drop the option"
    ]


def test_target_class(run: tuple[Path, list[str]], images: Path, tmp_path: Path) -> None:
    _, common = run
    out = tmp_path / "cams"
    main(["gradcam", *common, "--data.predict_root", str(images), "--cam.out", str(out), "--cam.target_class", "1"])
    assert {r["target"] for r in _rows(out / "gradcam.csv")} == {"malignant"}
    assert len(list(out.glob("*_gradcam.png"))) == 3


def test_unknown_class_and_foreign_checkpoint_are_one_line_errors(
    run: tuple[Path, list[str]], images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, common = run
    args = [*common, "--data.predict_root", str(images), "--cam.out", str(tmp_path / "o")]
    assert _error(capsys, *args, "--cam.target_class", "DC") == (
        "error: --cam.target_class DC: not a class of this model; use one of benign, malignant or an index 0-1"
    )
    assert not (tmp_path / "o" / "gradcam.csv").exists()
    loose = tmp_path / "best.ckpt"
    shutil.copy(folder / "checkpoints" / "best.ckpt", loose)
    assert "not in the checkpoints/ folder of a run" in _error(capsys, *args, "--ckpt_path", str(loose))


def test_equal_file_names_are_refused(
    run: tuple[Path, list[str]], images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, common = run
    shutil.copy(images / "a.png", images / "sub" / "a.png")
    message = _error(capsys, *common, "--data.predict_root", str(images), "--cam.out", str(tmp_path / "o"))
    assert "same overlay name a_gradcam.png as" in message


def test_help_names_the_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["gradcam", "--help"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: breakhis gradcam")
    assert "--cam.target_class" in printed
    assert "--prediction_writer" not in printed


def test_class_index() -> None:
    assert class_index("Malignant", ["benign", "malignant"]) == 1
    assert class_index("0", ["benign", "malignant"]) == 0
    assert class_index("dc", list(SUBTYPE_CODES)) == 4
    with pytest.raises(BreakHisError, match="index 0-1"):
        class_index("2", ["benign", "malignant"])
