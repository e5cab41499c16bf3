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
from breakhis_lit.data.splits import read_split_csv
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


def test_predict_defaults_to_test_split_with_absolute_paths(fitted):
    fitted.setup("predict")
    pred, test = fitted.records("predict"), fitted.records("test")
    assert len(pred) == len(test)
    assert os.path.isabs(pred[0].path)
    assert os.path.isfile(pred[0].path)
    assert pred[0].label == test[0].label


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


def test_splits_csv_written_to_log_dir(demo_root, tmp_path):
    dm = _dm(demo_root, magnification=100)
    dm.trainer = _fake_trainer(log_dir=str(tmp_path / "run"))
    dm.setup("fit")
    rows = read_split_csv(tmp_path / "run" / "splits.csv")
    assert len(rows) == 144
    assert {r.split for r in rows} == {"train", "val", "test"}
    assert {r.path for r in rows if r.split == "train"} == {r.path for r in dm.records("train")}


def test_no_splits_csv_without_trainer(demo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _dm(demo_root, magnification=200).setup("fit")
    assert list(tmp_path.iterdir()) == []


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
    assert (tmp_path / "lightning_logs" / "version_0" / "splits.csv").is_file()
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
    dm.trainer = _fake_trainer(log_dir=str(tmp_path / "run"))
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert all(v.name in caplog.text for v in victims)
    skipped = [r for r in read_split_csv(tmp_path / "run" / "splits.csv") if r.split == "skipped"]
    assert sorted(r.path.rsplit("/", 1)[1] for r in skipped) == sorted(v.name for v in victims)
    n = sum(len(dm.records(s)) for s in ("train", "val", "test"))
    assert n == 144 - 2


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
    assert (tmp_path / "run" / "splits.csv").is_file() == (rank == 0)
