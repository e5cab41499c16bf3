import json
import logging
import os
import shutil
from collections import Counter
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from PIL import Image

from breakhis_lit.data import BreakHisDataModule
from breakhis_lit.data.datamodule import epoch_seed
from breakhis_lit.data.splits import write_split_csv
from breakhis_lit.data.transforms import BatchAugmentation, normalize
from breakhis_lit.errors import BreakHisError


def _dm(root, **kwargs):
    kwargs = {"magnification": 40, "image_size": 32, "batch_size": 8, "eval_batch_size": 16, **kwargs}
    return BreakHisDataModule(root=str(root), **kwargs)


def _fake_trainer(training=False, log_dir=None):
    strategy = SimpleNamespace(root_device=torch.device("cpu"), barrier=lambda *a, **k: None)
    logger = SimpleNamespace(log_dir=log_dir)  # the DataModule reads the logger's folder (no DDP broadcast)
    return SimpleNamespace(
        training=training, world_size=1, global_rank=0, is_global_zero=True, logger=logger, strategy=strategy,
        current_epoch=0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fitted(demo_root):
    dm = _dm(demo_root)
    dm.setup("fit")
    return dm


def test_classes_known_after_init():
    dm = BreakHisDataModule(root="does/not/matter")
    assert dm.classes == ["benign", "malignant"]
    assert dm.num_classes == 2
    dm = BreakHisDataModule(root="x", task="subtype", magnification="40X")
    assert dm.classes == ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"]
    assert dm.num_classes == 8
    assert dm.magnification == "40X"


def test_setup_fit_batches(fitted):
    dm = fitted
    train, val, test = dm.records("train"), dm.records("val"), dm.records("test")
    assert len(train) + len(val) + len(test) == 144
    groups = [{r.group for r in recs} for recs in (train, val, test)]
    assert not (groups[0] & groups[1])
    assert not (groups[0] & groups[2])
    assert not (groups[1] & groups[2])
    assert all(r.magnification == 40 and r.path.startswith("BreaKHis_v1/") for r in train)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "group", "index"}
    assert batch["image"].shape == (8, 3, 32, 32)
    assert batch["image"].dtype == torch.uint8
    for key in ("label", "group", "index"):
        assert batch[key].dtype == torch.int64
        assert batch[key].shape == (8,)
    for i, label, group in zip(batch["index"], batch["label"], batch["group"], strict=True):
        assert train[i].label == label
        assert dm.group_names[group] == train[i].group
    val_batches = list(dm.val_dataloader())
    assert sum(len(b["index"]) for b in val_batches) == len(val)
    assert torch.equal(torch.cat([b["index"] for b in val_batches]), torch.arange(len(val)))


def test_on_after_batch_transfer_augments_only_in_training(fitted):
    dm = fitted
    batch = next(iter(dm.val_dataloader()))
    dm.trainer = _fake_trainer(training=False)
    try:
        out = dm.on_after_batch_transfer(dict(batch), 0)
        assert out["image"].dtype == torch.float32
        assert torch.equal(out["image"], normalize(batch["image"]))
        assert torch.equal(out["image"], dm.normalize(batch["image"]))
        assert torch.equal(out["label"], batch["label"])
        dm.trainer = _fake_trainer(training=True)
        aug = dm.on_after_batch_transfer(dict(batch), 0)["image"]
        assert aug.shape == out["image"].shape
        assert not torch.allclose(aug, out["image"])
        dm.augment = False
        assert torch.equal(dm.on_after_batch_transfer(dict(batch), 0)["image"], out["image"])
    finally:
        dm.trainer = None
        dm.augment = True


def test_augmentation_draws_each_epoch_once_from_seed_epoch_and_rank(demo_root, fitted, monkeypatch):
    draws = []
    draw = BatchAugmentation.draw

    def counted(self, n, height, width, generator=None):
        draws.append(n)
        return draw(self, n, height, width, generator)

    monkeypatch.setattr(BatchAugmentation, "draw", counted)
    fitted.train_dataloader()  # the epoch's sampler
    images = next(iter(fitted.val_dataloader()))["image"][:8]
    trainer = _fake_trainer(training=True)

    def epoch(dm, number, rank=0, batches=3):
        trainer.current_epoch, trainer.global_rank, dm.trainer = number, rank, trainer
        try:
            return [dm.on_after_batch_transfer({"image": images}, 0)["image"] for _ in range(batches)]
        finally:
            dm.trainer = None

    first = epoch(fitted, 0)
    assert draws == [len(fitted.records("train"))]  # one draw for the whole epoch, at its first batch
    n = draws[0]
    rows = draw(BatchAugmentation(), n, 32, 32, torch.Generator().manual_seed(epoch_seed(0, 0, 0)))
    assert torch.equal(first[1], BatchAugmentation()(images, rows[8:16]))  # consecutive rows per batch
    assert not torch.equal(first[0], first[1])
    again = _dm(demo_root)
    again.setup("fit")
    again.train_dataloader()
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(again, 0), strict=True))  # same seed and epoch
    assert not torch.equal(epoch(fitted, 1, batches=1)[0], first[0])
    assert not torch.equal(epoch(fitted, 0, rank=1, batches=1)[0], first[0])
    assert len(draws) == 4
    epoch(fitted, 2, batches=n // 8 + 2)  # more batches than planned: drawn on, from the same generator
    assert draws[4] == n
    assert sum(draws[4:]) == 8 * (n // 8 + 2)
    assert epoch_seed(0, 1, 0) != epoch_seed(0, 0, 1) != epoch_seed(1, 0, 0)


def test_setup_test_only_and_counts(demo_root, fitted):
    dm = _dm(demo_root)
    dm.setup("test")
    assert [r.path for r in dm.records("test")] == [r.path for r in fitted.records("test")]
    counts = fitted.train_class_counts()
    assert counts.dtype == torch.int64
    assert counts.tolist() == [sum(r.label == c for r in fitted.records("train")) for c in (0, 1)]


def test_predict_defaults_to_the_test_split(fitted):
    fitted.setup("predict")
    pred, test = fitted.records("predict"), fitted.records("test")
    assert pred == test  # the same official paths as predictions.csv of a test
    assert fitted.index.abspath(pred[0].path).is_file()


def test_fixed_examples(fitted):
    images, labels, records = fitted.fixed_examples("test", per_class=2)
    assert images.shape == (4, 3, 32, 32)
    assert images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1]
    again = fitted.fixed_examples("test", per_class=2)
    assert [r.path for r in again[2]] == [r.path for r in records]
    assert torch.equal(again[0], images)
    assert records[0].path != records[1].path


def test_oversample_sampler(demo_root):
    a, b = _dm(demo_root, sampler="oversample", seed=3), _dm(demo_root, sampler="oversample", seed=3)
    a.setup("fit")
    b.setup("fit")
    la, lb = a.train_dataloader(), b.train_dataloader()
    ia = torch.cat([x["index"] for x in la]).tolist()
    assert ia == torch.cat([x["index"] for x in lb]).tolist()
    labels = Counter(a.records("train")[i].label for i in ia)
    assert labels[0] == labels[1] == max(Counter(r.label for r in a.records("train")).values())
    assert torch.cat([x["index"] for x in la]).tolist() != ia  # next epoch: another draw


def test_subtype_task(demo_root):
    dm = _dm(demo_root, task="subtype", magnification="all")
    dm.setup("fit")
    labels = {r.label for r in dm.records("train")}
    assert labels <= set(range(8))
    assert len(labels) > 2
    assert len(dm.records("train")) + len(dm.records("val")) + len(dm.records("test")) == 576


def test_split_rows_carry_file_sizes_and_the_module_writes_nothing(demo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dm = _dm(demo_root, magnification=100)
    dm.setup("fit")
    rows = dm.split_rows
    assert len(rows) == 144
    assert {r.split for r in rows} == {"train", "val", "test"}
    assert {r.path for r in rows if r.split == "train"} == {r.path for r in dm.records("train")}
    index = dm.index
    assert all(r.size == index.abspath(r.path).stat().st_size for r in rows)
    assert list(tmp_path.iterdir()) == []  # splits.csv is the run's, written by its RunRecorder


def test_bound_split_is_read_back_not_recomputed(demo_root, tmp_path):
    fitted = _dm(demo_root, magnification=100, seed=0)
    fitted.setup("fit")
    write_split_csv(fitted.split_rows, tmp_path / "splits.csv")
    # Another seed would give another split: the bound file wins, and the records follow it.
    bound = _dm(demo_root, magnification=100, seed=5, split_file=str(tmp_path / "splits.csv"))
    bound.setup("test")
    assert bound.split_rows == fitted.split_rows
    assert bound.split_hash() == fitted.split_hash()
    assert [r.path for r in bound.records("test")] == [r.path for r in fitted.records("test")]


def test_bound_split_refuses_other_files(demo_root, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo_root / "BreaKHis_v1", copy / "BreaKHis_v1", copy_function=os.link)
    fitted = _dm(copy, magnification=100)
    fitted.setup("fit")
    write_split_csv(fitted.split_rows, tmp_path / "splits.csv")
    victim = copy / "BreaKHis_v1" / fitted.split_rows[5].path.removeprefix("BreaKHis_v1/")
    data = victim.read_bytes()
    victim.unlink()  # do not write through the hard link into the shared demo data
    victim.write_bytes(data + b"\0")
    with pytest.raises(BreakHisError, match="1 differ in size") as err:
        _dm(copy, magnification=100, split_file=str(tmp_path / "splits.csv")).setup("test")
    assert fitted.split_rows[5].path in str(err.value)
    assert "\n" not in str(err.value)
    victim.unlink()
    with pytest.raises(BreakHisError, match=r"1 file\(s\) of the run's split are missing"):
        _dm(copy, magnification=100, split_file=str(tmp_path / "splits.csv")).setup("test")
    with pytest.raises(BreakHisError, match=r"--data\.magnification 200"):
        _dm(demo_root, magnification=200, split_file=str(tmp_path / "splits.csv")).setup("test")


def test_trained_on_refuses_patients_the_run_saw(demo_root, tmp_path):
    fitted = _dm(demo_root, magnification="all", seed=0)
    fitted.setup("fit")
    write_split_csv(fitted.split_rows, tmp_path / "splits.csv")
    # The same patients at one magnification: unseen test patients only, so allowed.
    same = _dm(demo_root, magnification=100, seed=0, trained_on=str(tmp_path / "splits.csv"))
    same.setup("test")
    trained = {r.patient_id for r in fitted.split_rows if r.split != "test"}
    assert not trained & {r.patient_id for r in same.records("test")}
    with pytest.raises(BreakHisError, match="belong to patients the run trained or validated on"):
        _dm(demo_root, magnification=100, seed=3, trained_on=str(tmp_path / "splits.csv")).setup("test")


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(("train", batch["image"].dtype, float(batch["image"].mean())))
        return torch.nn.functional.cross_entropy(self.net(batch["image"]), batch["label"])

    def validation_step(self, batch, batch_idx):
        self.seen.append(("val", batch["image"].dtype, float(batch["image"].mean())))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_with_lightning_trainer(demo_root, tmp_path):
    dm = _dm(demo_root, magnification=400)
    model = _Tiny()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, datamodule=dm)
    assert [s[0] for s in model.seen] == ["train", "train", "val"]
    assert all(s[1] == torch.float32 for s in model.seen)


def _corrupt_copy(demo_root, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo_root / "BreaKHis_v1", copy / "BreaKHis_v1", copy_function=os.link)
    victims = sorted((copy / "BreaKHis_v1").rglob("*-40-001.png"))[:2]
    for v in victims:
        data = v.read_bytes()
        v.unlink()  # do not write through the hard link into the shared demo data
        v.write_bytes(data[: len(data) // 3])
    return copy, victims


def test_bad_image_error_and_skip(demo_root, tmp_path, caplog):
    copy, victims = _corrupt_copy(demo_root, tmp_path)
    with pytest.raises(BreakHisError, match="2 unreadable image") as err:
        _dm(copy).setup("fit")
    assert all(v.name in str(err.value) for v in victims)
    assert "--data.on_bad_image skip" in str(err.value)
    dm = _dm(copy, on_bad_image="skip")
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert all(v.name in caplog.text for v in victims)
    skipped = [r for r in dm.split_rows if r.split == "skipped"]
    assert sorted(r.path.rsplit("/", 1)[1] for r in skipped) == sorted(v.name for v in victims)
    n = sum(len(dm.records(s)) for s in ("train", "val", "test"))
    assert n == 144 - 2


def test_too_large_image_named_and_skipped(demo_root, tmp_path, caplog):
    copy = tmp_path / "demo"
    shutil.copytree(demo_root / "BreaKHis_v1", copy / "BreaKHis_v1", copy_function=os.link)
    victim = sorted((copy / "BreaKHis_v1").rglob("*-40-002.png"))[0]
    victim.unlink()  # do not write through the hard link into the shared demo data
    Image.new("1", (15000, 15000)).save(victim, format="PNG", compress_level=1)
    with pytest.raises(BreakHisError) as err:
        _dm(copy).setup("fit")
    message = str(err.value)
    assert "\n" not in message
    assert f"{victim.name} (too large: 15000×15000 pixels)" in message
    assert "--data.on_bad_image skip" in message
    dm = _dm(copy, on_bad_image="skip")
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "too large: 15000×15000 pixels" in caplog.text
    assert [r.path for r in dm.split_rows if r.split == "skipped"] == [
        f"BreaKHis_v1/{victim.relative_to(copy / 'BreaKHis_v1').as_posix()}"
    ]
    assert sum(len(dm.records(s)) for s in ("train", "val", "test")) == 144 - 1


def test_permission_denied_image_is_not_remembered(demo_root, tmp_path, monkeypatch):
    from breakhis_lit.data import cache as cache_mod

    victim = sorted((demo_root / "BreaKHis_v1").rglob("*-40-003.png"))[0]
    real_read = cache_mod._read_file

    def denied(path):
        if str(path) == str(victim):
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    cache = str(tmp_path / "cache")
    with monkeypatch.context() as mp:
        mp.setattr(cache_mod, "_read_file", denied)
        with pytest.raises(BreakHisError) as err:
            _dm(demo_root, cache_dir=cache).setup("fit")
        assert f"{victim.name} (permission denied)" in str(err.value)
        skipping = _dm(demo_root, cache_dir=cache, on_bad_image="skip")
        skipping.setup("fit")
        assert [r.path.rsplit("/", 1)[1] for r in skipping.split_rows if r.split == "skipped"] == [victim.name]
    dm = _dm(demo_root, cache_dir=cache, on_bad_image="skip")  # the permission fixed: nothing skipped any more
    dm.setup("fit")
    assert dm.skipped == []
    assert sum(len(dm.records(s)) for s in ("train", "val", "test")) == 144


def test_byte_identical_copy_across_train_and_val_refused(demo_root, fitted, tmp_path):
    copy = tmp_path / "demo"
    shutil.copytree(demo_root / "BreaKHis_v1", copy / "BreaKHis_v1", copy_function=os.link)
    original, duplicate = fitted.records("train")[0].path, fitted.records("val")[0].path
    on_disk = {p: copy / p for p in (original, duplicate)}
    kept = on_disk[duplicate].read_bytes()
    on_disk[duplicate].unlink()  # do not write through the hard link into the shared demo data
    on_disk[duplicate].write_bytes(on_disk[original].read_bytes())  # a copy landed in val under another name
    with pytest.raises(BreakHisError) as err:
        _dm(copy).setup("fit")
    message = str(err.value)
    assert "\n" not in message
    assert "byte-identical images filed under different patients" in message
    assert original in message
    assert duplicate in message
    assert on_disk[original].read_bytes() == on_disk[duplicate].read_bytes()  # both files left as they were
    on_disk[duplicate].write_bytes(kept)
    dm = _dm(copy)
    dm.setup("fit")
    assert sum(len(dm.records(s)) for s in ("train", "val", "test")) == 144


@pytest.mark.parametrize("stage", ["fit", "predict"])
def test_unreadable_folder_fails_instead_of_shrinking_the_data(demo_root, tmp_path, monkeypatch, stage):
    if stage == "fit":
        folder = sorted((demo_root / "BreaKHis_v1").rglob("40X"))[1]
        dm = _dm(demo_root)
    else:
        folder = tmp_path / "mine" / "sub"
        folder.mkdir(parents=True)
        shutil.copy(next(demo_root.rglob("*.png")), tmp_path / "mine" / "a.png")
        dm = _dm(demo_root, predict_root=str(tmp_path / "mine"))
    real = os.scandir

    def guarded(path="."):
        if os.fsdecode(path) == str(folder):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", guarded)
    with pytest.raises(BreakHisError) as err:
        dm.setup(stage)
    assert str(err.value).startswith(f"{folder}: cannot read this folder (Permission denied); fix its permissions")


def test_tree_without_malignant_images_is_named_as_such(demo_root, tmp_path):
    copy = tmp_path / "benign-only"
    shutil.copytree(demo_root / "BreaKHis_v1", copy / "BreaKHis_v1", copy_function=os.link)
    shutil.rmtree(copy / "BreaKHis_v1/histology_slides/breast/malignant")
    with pytest.raises(BreakHisError) as err:
        _dm(copy).setup("fit")
    message = str(err.value)
    assert message.startswith("split patient: the data holds no malignant image at all (")
    assert "point --data.root at the whole BreakHis tree" in message
    assert (demo_root / "BreaKHis_v1/histology_slides/breast/malignant").is_dir()  # the copy only


def test_predict_root_any_folder(demo_root, tmp_path):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    src = next((demo_root / "BreaKHis_v1").rglob("SOB_M_*.png"))
    shutil.copy(src, folder / "sub" / src.name)
    Image.open(src).convert("L").save(folder / "gray.jpg")
    Image.open(src).convert("RGBA").save(folder / "b.tif")
    (folder / "notes.txt").write_text("ignored")
    dm = _dm(demo_root, predict_root=str(folder))
    dm.setup("predict")
    recs = dm.records("predict")
    assert [os.path.basename(r.path) for r in recs] == ["b.tif", "gray.jpg", src.name]
    assert [r.label for r in recs] == [-1, -1, 1]
    assert recs[2].patient_id
    assert recs[2].magnification in (40, 100, 200, 400)
    batch = next(iter(dm.predict_dataloader()))
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["group"].tolist()[:2] == [-1, -1]


def test_predict_root_takes_gif_and_webp_and_reports_the_rest(demo_root, tmp_path, caplog):
    folder = tmp_path / "mine"
    folder.mkdir()
    src = Image.open(next((demo_root / "BreaKHis_v1").rglob("SOB_B_*.png")))
    src.save(folder / "a.gif")
    src.save(folder / "b.WEBP", format="WEBP", lossless=True)
    src.save(folder / "c.png")
    (folder / "d.svg").write_text("<svg/>")
    (folder / ".hidden.png").write_bytes(b"")
    dm = _dm(demo_root, predict_root=str(folder))
    with caplog.at_level(logging.WARNING):
        dm.setup("predict")
    assert [os.path.basename(r.path) for r in dm.records("predict")] == ["a.gif", "b.WEBP", "c.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"2 file(s) below {folder} skipped: not an image of a supported type "
        f"(.png .jpg .jpeg .tif .tiff .bmp .gif .webp) or hidden, e.g. .hidden.png"
    ]
    assert dm.dataset("predict").images.shape[0] == 3


def test_predict_root_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    dm = _dm(tmp_path, predict_root=str(tmp_path / "empty"))
    with pytest.raises(BreakHisError, match="no images"):
        dm.setup("predict")


def test_demo_generated_on_first_use(tmp_path):
    root = tmp_path / "data" / "demo" / "BreaKHis_v1"
    dm = _dm(root, demo=True)
    dm.prepare_data()
    dm.setup("fit")
    assert (tmp_path / "data" / "demo" / "masks").is_dir()
    assert (tmp_path / "data" / "demo" / "demo.json").is_file()
    assert len(dm.records("train")) > 0
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".") and p.is_dir()]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"magnification": 50}, "magnification"),
        ({"task": "multiclass"}, "task"),
        ({"split": "random"}, "split"),
        ({"group_by": "slide"}, "group_by"),
        ({"train_ratio": 0.8}, "sum to 1"),
        ({"split": "official", "fold": 0}, "fold 0"),
        ({"split": "kfold", "fold": 6}, "fold 6"),
        ({"image_size": 0}, "image_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"sampler": "smote"}, "sampler"),
        ({"on_bad_image": "ignore"}, "on_bad_image"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(BreakHisError, match=match):
        BreakHisDataModule(root="x", **kwargs)


def test_bad_root(tmp_path):
    with pytest.raises(BreakHisError, match="does not exist"):
        _dm(tmp_path / "missing").setup("fit")


def test_official_split_on_demo_data_refused(demo_root):
    with pytest.raises(BreakHisError, match="not in the official BreakHis list"):
        _dm(demo_root, split="official").setup("fit")


@pytest.mark.parametrize("rank", [0, 1])
def test_ddp_rank_zero_builds_others_wait(demo_root, tmp_path, monkeypatch, rank):
    from breakhis_lit.data import datamodule as dm_mod

    calls = []
    real = dm_mod.load_or_build

    def spy(files, **kwargs):
        calls.append(("load_or_build", kwargs.get("progress", True)))
        return real(files, **kwargs)

    monkeypatch.setattr(dm_mod, "load_or_build", spy)
    dm = _dm(demo_root, magnification=400, cache_dir=str(tmp_path / "cache"))
    trainer = _fake_trainer(log_dir=str(tmp_path / "run"))
    trainer.world_size, trainer.is_global_zero = 2, rank == 0
    trainer.strategy.barrier = lambda name=None: calls.append(("barrier", name))
    dm.trainer = trainer
    dm.setup("fit")
    expected = [("load_or_build", True), ("barrier", "breakhis_lit_image_cache")]
    if rank:
        expected = [("barrier", "breakhis_lit_image_cache"), ("load_or_build", False)]
    assert calls == expected


# ------------------------------------------------------------------------------------------------ stain handling
def _stage_images(dm, stage):
    ds = dm.dataset(stage)
    return ds.images[ds.rows]


@pytest.fixture(scope="module")
def macenko(demo_root, tmp_path_factory):
    """A Macenko-normalised data module and the raw one, sharing one cache folder."""
    cache = tmp_path_factory.mktemp("stain_cache")
    raw = _dm(demo_root, cache_dir=str(cache))
    raw.setup("fit")
    dm = _dm(demo_root, cache_dir=str(cache), stain_norm="macenko")
    dm.setup("fit")
    return SimpleNamespace(dm=dm, raw=raw, cache=cache)


def test_stain_target_is_fitted_on_the_training_images_only(macenko):
    from breakhis_lit.stain import MacenkoNormalizer

    target = macenko.dm.stain_norm_target
    assert target.method == "macenko"
    expected = MacenkoNormalizer().fit(_stage_images(macenko.raw, "train"))
    assert target.to_json() == expected.to_json()
    everything = torch.cat([_stage_images(macenko.raw, s) for s in ("train", "val", "test")])
    assert MacenkoNormalizer().fit(everything).to_json() != target.to_json()  # the test can tell


def test_every_split_is_normalised_once_to_the_target(macenko):
    from breakhis_lit.stain import normalize_to

    target = macenko.dm.stain_norm_target
    for stage in ("train", "val", "test"):
        expected = normalize_to(_stage_images(macenko.raw, stage), target)
        assert torch.equal(_stage_images(macenko.dm, stage), expected)
    assert not torch.equal(_stage_images(macenko.dm, "test"), _stage_images(macenko.raw, "test"))
    assert macenko.raw.stain_norm_target.method == "none"


def test_normalised_and_raw_images_have_their_own_caches(macenko):
    files = sorted(p.name for p in macenko.cache.glob("*.npy"))
    assert len(files) == 2
    metas = [json.loads(p.read_text()) for p in macenko.cache.glob("*.json")]
    assert sorted("stain_target" in m for m in metas) == [False, True]
    saved = next(m for m in metas if "stain_target" in m)["stain_target"]
    assert json.dumps(saved, sort_keys=True) == json.dumps(macenko.dm.stain_norm_target.to_dict(), sort_keys=True)


def test_a_saved_target_is_read_back_never_fitted_again(macenko, tmp_path, monkeypatch):
    from breakhis_lit.stain import MacenkoNormalizer, save_target

    path = save_target(tmp_path / "stain_target.json", macenko.dm.stain_norm_target)

    def refuse(*args, **kwargs):
        raise AssertionError("fitted again")

    monkeypatch.setattr(MacenkoNormalizer, "fit", refuse)
    bound = _dm(macenko.dm.root, cache_dir=str(macenko.cache), stain_norm="macenko", stain_target=str(path))
    bound.setup("test")
    assert bound.stain_norm_target == macenko.dm.stain_norm_target
    assert torch.equal(_stage_images(bound, "test"), _stage_images(macenko.dm, "test"))
    assert len(list(macenko.cache.glob("*.npy"))) == 2  # the normalised cache, loaded


def test_a_saved_target_of_another_method_is_refused(macenko, tmp_path):
    from breakhis_lit.stain import IdentityTarget, save_target

    path = save_target(tmp_path / "stain_target.json", macenko.dm.stain_norm_target)
    with pytest.raises(BreakHisError, match=r"--data.stain_norm none: .* is 'macenko'; pass --data.stain_norm macenko"):
        _dm(macenko.dm.root, cache_dir=str(macenko.cache), stain_target=str(path)).setup("test")
    none = save_target(tmp_path / "none.json", IdentityTarget())
    with pytest.raises(BreakHisError, match=r"pass --data\.stain_norm none"):
        _dm(macenko.dm.root, cache_dir=str(macenko.cache), stain_norm="reinhard", stain_target=str(none)).setup("test")


def test_a_run_without_a_saved_target_had_no_normalisation(macenko, tmp_path):
    missing = str(tmp_path / "stain_target.json")
    dm = _dm(macenko.dm.root, cache_dir=str(macenko.cache), stain_target=missing)
    dm.setup("test")
    assert dm.stain_norm_target.method == "none"
    with pytest.raises(BreakHisError, match=r"no such file.*pass --data\.stain_norm none"):
        _dm(macenko.dm.root, cache_dir=str(macenko.cache), stain_norm="macenko", stain_target=missing).setup("test")


def test_predict_root_needs_the_runs_target(macenko, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(macenko.dm.index.abspath(macenko.dm.records("test")[0].path), folder / "a.png")
    dm = _dm(macenko.dm.root, cache_dir=str(tmp_path / "c"), stain_norm="macenko", predict_root=str(folder))
    with pytest.raises(BreakHisError, match=r"predict_root with --data\.stain_norm macenko"):
        dm.setup("predict")


def test_hed_jitter_options():
    from breakhis_lit.data.transforms import HEDStain

    dm = BreakHisDataModule(root="x")
    assert (dm.hed_scale, dm.hed_bias) == (0.05, 0.02)
    step = next(s for s in dm.augmentation.steps if isinstance(s, HEDStain))
    assert (step.scale, step.bias) == (0.05, 0.02)
    off = BreakHisDataModule(root="x", hed_scale=0, hed_bias=0)
    assert not any(isinstance(s, HEDStain) for s in off.augmentation.steps)
    for option, value in (("hed_scale", 1.0), ("hed_bias", -0.01), ("hed_scale", "0.1")):
        with pytest.raises(BreakHisError, match=rf"{option} .*: must be in \[0, 1\); pass e.g. --data.{option}"):
            BreakHisDataModule(root="x", **{option: value})
    with pytest.raises(BreakHisError, match="stain_norm 'vahadane'"):
        BreakHisDataModule(root="x", stain_norm="vahadane")
