import csv
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from lightning.pytorch.cli import instantiate_module
from PIL import Image

from breakhis_lit.commands.gradcam import _data, _target_index, collect_images, main
from breakhis_lit.data.naming import SUBTYPE_CODES
from breakhis_lit.errors import BreakHisError
from breakhis_lit.models.classifier import BreakHisClassifier

BACKBONE = {
    "class_path": "breakhis_lit.models.dala_resnet.DALAResNet",
    "init_args": {"arch": "resnet18", "num_classes": 2},
}


def write_checkpoint(path: Path, datamodule_hparams: dict | None = None) -> Path:
    """A checkpoint shaped like LightningCLI writes it: the config as plain hyper-parameters."""
    torch.manual_seed(0)
    config = {"backbone": BACKBONE, "lr": 1e-3}
    model = instantiate_module(BreakHisClassifier, config)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": {**config, "_instantiator": "lightning.pytorch.cli.instantiate_module"},
        "pytorch-lightning_version": lightning.__version__,
    }
    if datamodule_hparams is not None:
        checkpoint["datamodule_hyper_parameters"] = datamodule_hparams
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.ckpt", {"image_size": 64, "task": "binary"})


@pytest.fixture
def image_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (30, 46, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / "sub" / "b.JPG")
    Image.fromarray(rng.integers(0, 255, (24, 40), dtype=np.uint8)).save(root / "sub" / "c.tif")  # grayscale
    (root / "notes.txt").write_text("not an image")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_writes_overlays_and_csv(ckpt, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--ckpt_path", str(ckpt), str(image_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_gradcam.png", "b_gradcam.png", "c_gradcam.png", "gradcam.csv"]
    with Image.open(out / "a_gradcam.png") as png:
        assert png.size == (46, 30)  # the heat map is laid over the original image, not the squashed one
        assert png.mode == "RGB"
    rows = read_csv(out / "gradcam.csv")
    assert list(rows[0]) == ["path", "prediction", "prob_benign", "prob_malignant", "target"]
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.JPG", "c.tif"]
    for row in rows:
        probs = [float(row["prob_benign"]), float(row["prob_malignant"])]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row["prediction"] == ("benign", "malignant")[int(np.argmax(probs))]
        assert row["target"] == row["prediction"]
    assert "input 64x64" in capsys.readouterr().err


def test_target_class(ckpt, image_dir, tmp_path):
    out = tmp_path / "o1"
    main(["--ckpt_path", str(ckpt), str(image_dir / "a.png"), "--out", str(out), "--target-class", "Malignant"])
    assert read_csv(out / "gradcam.csv")[0]["target"] == "malignant"
    with pytest.raises(BreakHisError, match="--target-class DC: not a class of this model; use one of benign"):
        main(["--ckpt_path", str(ckpt), str(image_dir), "--out", str(tmp_path / "o3"), "--target-class", "DC"])


def test_target_index():
    assert _target_index(None, ["benign", "malignant"]) is None
    assert _target_index("1", ["benign", "malignant"]) == 1
    assert _target_index("dc", list(SUBTYPE_CODES)) == 4
    with pytest.raises(BreakHisError, match="index 0-1"):
        _target_index("2", ["benign", "malignant"])


def test_refuses_to_overwrite_unless_forced(ckpt, image_dir, tmp_path):
    out = image_dir / "gradcam"  # inside the input folder: its overlays must not be read back as inputs
    main(["--ckpt_path", str(ckpt), str(image_dir), "--out", str(out)])
    before = (out / "gradcam.csv").read_text()
    with pytest.raises(BreakHisError, match=r"a_gradcam.png exists \(and 3 more\); pass another --out or --force"):
        main(["--ckpt_path", str(ckpt), str(image_dir), "--out", str(out)])
    assert main(["--ckpt_path", str(ckpt), str(image_dir), "--out", str(out), "--force"]) == 0
    assert (out / "gradcam.csv").read_text() == before
    assert len(list(out.iterdir())) == 4


def test_checkpoint_without_datamodule_hparams(tmp_path, image_dir, capsys):
    bare = write_checkpoint(tmp_path / "bare.ckpt")
    main(["--ckpt_path", str(bare), str(image_dir / "a.png"), "--out", str(tmp_path / "o1"), "--image-size", "48"])
    err = capsys.readouterr().err
    assert "input 48x48" in err
    assert "classes benign, malignant" in err


def test_image_size_precedence(capsys):
    assert _data(None, {"image_size": 64}).image_size == 64
    assert _data(None, {}).image_size == 224
    assert _data(None, {"image_size": [32, 32]}).image_size == 32
    assert _data(48, {}).image_size == 48
    assert _data(48, {"image_size": 64}).image_size == 48
    assert "--image-size 48 differs from the training image size 64" in capsys.readouterr().err
    with pytest.raises(BreakHisError, match=r"data\.image_size=0"):
        _data(None, {"image_size": 0})


def test_class_names_come_from_the_data_options():
    assert _data(None, {"task": "binary"}).classes == ["benign", "malignant"]
    assert _data(None, {"task": "subtype"}).classes == ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"]
    assert _data(None, {}).classes == ["benign", "malignant"]  # the data module's default task


def test_config_finds_the_experiment_checkpoint(ckpt, image_dir, tmp_path):
    run = tmp_path / "logs" / "exp" / "version_3" / "checkpoints"
    run.mkdir(parents=True)
    (run / "best.ckpt").write_bytes(ckpt.read_bytes())
    config = tmp_path / "cfg.yaml"
    config.write_text(f"experiment: exp\nlog_root: {tmp_path / 'logs'}\ndata:\n  image_size: 32\n")
    assert main(["--config", str(config), str(image_dir / "a.png"), "--out", str(tmp_path / "o")]) == 0
    with pytest.raises(BreakHisError, match=r"checkpoints/last\.ckpt"):
        main(["--config", str(config), "--ckpt_path", "last", str(image_dir), "--out", str(tmp_path / "o2")])
    with pytest.raises(BreakHisError, match=r"experiment 'other' has checkpoints/best\.ckpt"):
        main(["--config", str(config), "--experiment", "other", str(image_dir), "--out", str(tmp_path / "o2")])
    with pytest.raises(BreakHisError, match="only used with --config"):
        main(["--ckpt_path", str(ckpt), "--log_root", "x", str(image_dir), "--out", str(tmp_path / "o2")])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing_ckpt", r"--ckpt_path .*nope.ckpt: no such file"),
        ("text_ckpt", r"is not a readable PyTorch checkpoint"),
        ("no_ckpt", r"--ckpt_path: missing"),
        ("empty_dir", r"no images found"),
        ("missing_input", r"no such file or folder"),
        ("bad_image", r"bad.png: cannot read the image \("),
    ],
)
def test_user_errors_are_one_line(ckpt, tmp_path, setup, message):
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "ok.png")
    args = ["--ckpt_path", str(ckpt), str(images), "--out", str(tmp_path / "out")]
    if setup == "missing_ckpt":
        args[1] = str(tmp_path / "nope.ckpt")
    elif setup == "text_ckpt":
        (tmp_path / "x.ckpt").write_text("hello")
        args[1] = str(tmp_path / "x.ckpt")
    elif setup == "no_ckpt":
        args = args[2:]
    elif setup == "empty_dir":
        (images / "ok.png").unlink()
    elif setup == "missing_input":
        args[2] = str(tmp_path / "nothing")
    elif setup == "bad_image":
        (images / "bad.png").write_bytes((images / "ok.png").read_bytes()[:40])
    with pytest.raises(BreakHisError, match=message) as info:
        main(args)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "gradcam.csv").exists()


def test_cli_dispatch_prints_the_error(tmp_path, capsys):
    from breakhis_lit.cli import main as cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(["gradcam", "--ckpt_path", str(tmp_path / "none.ckpt"), str(tmp_path), "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    missing = tmp_path / "none.ckpt"
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --ckpt_path {missing}: no such file; pass an existing .ckpt file written by `breakhis fit`"
    ]


def test_collect_images_dedups_and_orders(image_dir):
    found = collect_images([str(image_dir / "sub" / "c.tif"), str(image_dir)])
    assert [p.name for p in found] == ["c.tif", "a.png", "b.JPG"]


def test_collect_images_takes_every_supported_type_and_reports_the_rest(tmp_path, capsys):
    from breakhis_lit.data.image_folder import IMAGE_EXTENSIONS

    folder = tmp_path / "mixed"
    folder.mkdir()
    img = Image.new("RGB", (12, 10), (120, 40, 200))
    for i, ext in enumerate(IMAGE_EXTENSIONS):
        img.save(folder / f"{i}{ext.upper() if i % 2 else ext}")
    (folder / "x.svg").write_text("<svg/>")
    (folder / "y.heic").write_bytes(b"\0")
    found = collect_images([str(folder)])
    assert sorted(p.suffix.lower() for p in found) == sorted(IMAGE_EXTENSIONS)  # the one definition, gif and webp too
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: 2 file(s) below {folder} skipped: not an image of a supported type "
                   f"({' '.join(IMAGE_EXTENSIONS)}) or hidden, e.g. x.svg"]  # fmt: skip
    from breakhis_lit.data.cache import decode_image

    assert all(decode_image(p, 8).shape == (3, 8, 8) for p in found)  # and each one decodes
