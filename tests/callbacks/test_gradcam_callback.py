import logging

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from breakhis_lit.callbacks.gradcam import GradCAMCallback
from breakhis_lit.data import BreakHisDataModule
from breakhis_lit.errors import BreakHisError
from breakhis_lit.models import BreakHisClassifier
from breakhis_lit.rundir import read_gradcam_manifest


class TinyNet(nn.Module):
    """Two convolutions and a linear head: the Grad-CAM layer is ``last``."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.last = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.drop(self.last(self.conv(x)).relu().mean((2, 3))))

    def gradcam_target_layers(self):
        return [self.last]

    def gradcam_reshape_transform(self):
        return None


def Classifier():
    return BreakHisClassifier(TinyNet(), ["benign", "malignant"], lr=0.05, channels_last=False)


class ToyData(BreakHisDataModule):
    """The demo data at 40X and 24 px, recording what the callback asks of it."""

    root_dir = None

    def __init__(self):
        super().__init__(root=str(self.root_dir), magnification=40, image_size=24, batch_size=32, eval_batch_size=64)
        self.fixed_calls: list[tuple[str, int]] = []
        self.inference_mode: list[bool] = []

    def fixed_examples(self, stage, per_class=1):
        self.fixed_calls.append((stage, per_class))
        self.inference_mode.append(torch.is_inference_mode_enabled())
        return super().fixed_examples(stage, per_class)


@pytest.fixture(autouse=True)
def _demo(demo_root):
    ToyData.root_dir = demo_root


def _trainer(tmp_path, callbacks, logger=True, max_epochs=3):
    return L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=max_epochs,
        logger=TensorBoardLogger(tmp_path, name="run", version=0) if logger else False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=1,
    )


def _image_events(log_dir):
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    return {tag: [e.step for e in events.Images(tag)] for tag in events.Tags()["images"]}


def test_logs_every_n_validations_not_the_sanity_check(tmp_path):
    L.seed_everything(0)
    data, callback = ToyData(), GradCAMCallback(every_n_epochs=2, per_class=2)
    trainer = _trainer(tmp_path, [callback], max_epochs=5)
    trainer.fit(Classifier(), datamodule=data)
    assert data.fixed_calls == [("val", 2), ("val", 2)]  # validations 2 and 4; not the sanity check, not 5
    assert _image_events(trainer.log_dir) == {"val/gradcam": [6, 12]}  # 3 steps an epoch
    fig = callback.last_figure
    titles = [sf._suptitle.get_text() for sf in fig.subfigs]
    assert len(titles) == 4
    assert all(t.startswith(("true: benign / pred: ", "true: malignant / pred: ")) for t in titles)
    assert callback.state_dict() == {"val_runs": 5}
    assert not (tmp_path / "run" / "version_0" / "gradcam").exists()  # PNG files only at test


def test_does_not_change_training(tmp_path):
    weights = []
    for callbacks in ([], [GradCAMCallback(every_n_epochs=1)]):
        L.seed_everything(0)
        model = Classifier()
        _trainer(tmp_path / str(len(callbacks)), callbacks, logger=False).fit(model, datamodule=ToyData())
        weights.append(model.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)


def test_test_writes_pngs_and_logs_under_inference_mode(tmp_path):
    L.seed_everything(0)
    trainer = _trainer(tmp_path, [GradCAMCallback(per_class=2)])
    model, data = Classifier(), ToyData()
    trainer.test(model, datamodule=data)
    assert data.inference_mode == [True]  # the callback ran inside torch.inference_mode
    out = tmp_path / "run" / "version_0" / "gradcam"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "manifest.csv",
        "test_benign_0.png",
        "test_benign_0_image.png",
        "test_benign_1.png",
        "test_benign_1_image.png",
        "test_grid.png",
        "test_malignant_0.png",
        "test_malignant_0_image.png",
        "test_malignant_1.png",
        "test_malignant_1_image.png",
    ]
    with Image.open(out / "test_malignant_1.png") as png:
        assert png.size == (24, 24)
        assert np.asarray(png).std() > 0
    entries = read_gradcam_manifest(out)
    assert [e.label for e in entries] == ["benign", "benign", "malignant", "malignant"]
    records = {r.path: r for r in data.records("test")}
    assert all(e.image in records for e in entries)  # the manifest names the test images it explains
    assert all(e.prediction in ("benign", "malignant") and 0.5 <= e.probability <= 1 for e in entries)
    assert _image_events(trainer.log_dir) == {"test/gradcam": [0]}
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_validate_and_no_logger(tmp_path):
    data = ToyData()
    trainer = _trainer(tmp_path, [GradCAMCallback(save_png=True)], logger=False)
    trainer.validate(Classifier(), datamodule=data)
    trainer.test(Classifier(), datamodule=data)
    assert data.fixed_calls == [("val", 2), ("test", 2)]
    assert (tmp_path / "gradcam" / "test_grid.png").is_file()  # log_dir is default_root_dir without a logger


def test_on_test_false_and_save_png_false(tmp_path):
    data = ToyData()
    _trainer(tmp_path, [GradCAMCallback(on_test=False)]).test(Classifier(), datamodule=data)
    assert data.fixed_calls == []
    _trainer(tmp_path / "b", [GradCAMCallback(save_png=False)]).test(Classifier(), datamodule=data)
    assert data.fixed_calls == [("test", 2)]
    assert not list(tmp_path.rglob("*.png"))


def test_skips_with_one_message_outside_the_package_types(tmp_path, caplog):
    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.backbone = TinyNet()

        def training_step(self, batch, batch_idx):
            return self.backbone(batch["image"]).sum()

        def validation_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    with caplog.at_level(logging.INFO):
        trainer = _trainer(tmp_path, [GradCAMCallback(every_n_epochs=1)], max_epochs=2)
        trainer.fit(Plain(), datamodule=ToyData())
    messages = [r.getMessage() for r in caplog.records if "GradCAMCallback" in r.getMessage()]
    assert messages == ["GradCAMCallback: skipped: explains a BreakHisClassifier on a BreakHisDataModule only"]


def test_failure_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    data = ToyData()
    monkeypatch.setattr(data, "fixed_examples", lambda stage, per_class: 1 / 0)
    with pytest.warns(UserWarning, match="test Grad-CAM failed .ZeroDivisionError"):
        _trainer(tmp_path, [GradCAMCallback()]).test(Classifier(), datamodule=data)


def test_state_dict_round_trip_and_validation():
    callback = GradCAMCallback()
    callback.load_state_dict({"val_runs": 7})
    assert callback.state_dict() == {"val_runs": 7}
    with pytest.raises(BreakHisError, match=r"--gradcam\.per_class 0: must be >= 1"):
        GradCAMCallback(per_class=0)
    with pytest.raises(BreakHisError, match=r"--gradcam\.every_n_epochs -1: must be >= 0"):
        GradCAMCallback(every_n_epochs=-1)
