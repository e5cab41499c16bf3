"""Tests of the LightningModule: it learns the demo task, checks its inputs, loads weights once."""

import functools
import os
from pathlib import Path

import lightning as L
import pytest
import torch

from breakhis_lit.data import BreakHisDataModule
from breakhis_lit.errors import BreakHisError
from breakhis_lit.metrics import ClassificationMetrics
from breakhis_lit.models import BreakHisClassifier, DALAResNet
from breakhis_lit.models.epoch_buffer import EpochBuffer

CLASSES = ["benign", "malignant"]


def _data(root: Path, tmp: Path, **kwargs) -> BreakHisDataModule:
    options = {"magnification": "all", "image_size": 64, "batch_size": 32, "cache_dir": str(tmp / "cache")}
    return BreakHisDataModule(root=str(root), **{**options, **kwargs})


def _trainer(tmp: Path, epochs: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp, deterministic=True, **kwargs,
    )  # fmt: skip


def test_learns_the_demo_task(demo_root: Path, tmp_path: Path) -> None:
    """A real learning test: held-out patients are classified clearly above chance (0.5)."""
    L.seed_everything(0, verbose=False)
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), CLASSES, lr=5e-4)
    data = _data(demo_root, tmp_path)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/balanced_accuracy", mode="max")
    # 6 epochs: with the default HED jitter, epoch 5's probabilities still rank well (AUROC 0.96) but sit on one
    # side of 0.5 (balanced accuracy 0.54-0.61); epoch 6 reaches 0.88.
    trainer = _trainer(tmp_path, epochs=6, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(model, data)
    assert checkpoint.best_model_score >= 0.75
    # The trained weights: on the demo's 32 validation images the best epoch can be an early one that ties a
    # later one by chance (seed 0: epoch 1, test AUROC 0.46; the final epoch: 0.99).
    trainer.test(model, data, verbose=False)
    test = model.epoch_metrics["test"]
    assert test["test/auroc"] >= 0.75
    assert test["test/balanced_accuracy"] >= 0.65


def test_num_classes_must_match_the_task(demo_root: Path, tmp_path: Path) -> None:
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2))
    trainer = _trainer(tmp_path, epochs=1, limit_train_batches=1, limit_val_batches=1)
    with pytest.raises(BreakHisError, match=r"num_classes 2 but --data.task 'subtype' has 8 classes"):
        trainer.fit(model, _data(demo_root, tmp_path, task="subtype"))


def test_class_names_are_injected_and_match_the_backbone() -> None:
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), CLASSES)
    assert model.class_names == CLASSES
    assert model.val_metrics.class_names == CLASSES  # the metrics exist before any trainer
    assert BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2)).class_names == ["0", "1"]
    with pytest.raises(BreakHisError, match=r"num_classes 2 but the data has 8 classes"):
        BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), list("ABCDEFGH"))


def test_the_optimiser_takes_the_modules_lr_and_weight_decay() -> None:
    backbone = DALAResNet(arch="resnet18", num_classes=2)
    adamw = BreakHisClassifier(backbone, CLASSES, lr=3e-4, weight_decay=0.01).configure_optimizers()
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.defaults["lr"], adamw.defaults["weight_decay"]) == (3e-4, 0.01)
    sgd = functools.partial(torch.optim.SGD, momentum=0.9)
    optimizer = BreakHisClassifier(backbone, CLASSES, lr=0.05, optimizer=sgd).configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert (optimizer.defaults["lr"], optimizer.defaults["momentum"]) == (0.05, 0.9)
    with pytest.raises(BreakHisError, match=r"--model\.optimizer sets lr 0\.5: set it with --model\.lr"):
        BreakHisClassifier(backbone, CLASSES, optimizer=functools.partial(torch.optim.SGD, lr=0.5))


def test_injected_criterion() -> None:
    backbone = DALAResNet(arch="resnet18", num_classes=2)
    logits, labels = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 1])
    model = BreakHisClassifier(backbone, CLASSES, label_smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.allclose(model._loss(logits, labels), expected)
    nll = BreakHisClassifier(backbone, CLASSES, criterion=torch.nn.NLLLoss())
    assert torch.allclose(nll._loss(logits, labels), torch.nn.functional.nll_loss(logits, labels))
    with pytest.raises(BreakHisError, match=r"--model\.label_smoothing is for the default criterion"):
        BreakHisClassifier(backbone, CLASSES, criterion=torch.nn.NLLLoss(), label_smoothing=0.1)
    with pytest.raises(BreakHisError, match=r"--model\.class_weights balanced: the criterion has no `weight`"):
        BreakHisClassifier(backbone, CLASSES, criterion=torch.nn.MSELoss(), class_weights="balanced")


def test_balanced_class_weights(demo_root: Path, tmp_path: Path) -> None:
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), CLASSES, class_weights="balanced")
    data = _data(demo_root, tmp_path)
    _trainer(tmp_path, epochs=1, limit_train_batches=1, limit_val_batches=1).fit(model, data)
    counts = data.train_class_counts().float()
    expected = counts.sum() / (2 * counts)
    assert torch.allclose(model.loss_weight, expected)
    assert model.loss_weight[0] > model.loss_weight[1]  # benign is the minority class
    assert "criterion.weight" not in model.state_dict()  # set again at every fit, not restored


def test_pretrained_weights_load_once_and_not_on_resume(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(DALAResNet, "load_pretrained", lambda self: calls.append("load"))
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2, pretrained=True), CLASSES)
    data = _data(demo_root, tmp_path)
    trainer = _trainer(tmp_path, epochs=1, limit_train_batches=1, limit_val_batches=1, enable_checkpointing=True)
    trainer.fit(model, data)
    assert calls == ["load"]
    ckpt = next(Path(tmp_path).rglob("*.ckpt"))
    resumed = _trainer(tmp_path, epochs=2, limit_train_batches=1, limit_val_batches=1)
    fresh = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2, pretrained=True), CLASSES)
    resumed.fit(fresh, data, ckpt_path=ckpt)
    resumed.test(model, data, ckpt_path=ckpt, verbose=False)
    assert calls == ["load"]


@pytest.mark.parametrize(("option", "mode"), [(True, "default"), ("reduce-overhead", "reduce-overhead")])
def test_compile_option_reaches_torch_compile(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: bool | str, mode: str
) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(DALAResNet, "compile", lambda self, **kwargs: calls.append(kwargs))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), CLASSES, compile=option)
    _trainer(tmp_path, epochs=1, limit_train_batches=1, limit_val_batches=1).fit(model, _data(demo_root, tmp_path))
    assert calls == [{"mode": mode, "dynamic": False}]  # once, with the mode (reduce-overhead: CUDA graphs)
    # inductor's cache next to the image cache, kept between runs
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == os.path.join(os.environ["BREAKHIS_CACHE"], "inductor")


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_compiled_runs_see_one_shape_per_mode(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compile: bool
) -> None:
    monkeypatch.setattr(DALAResNet, "compile", lambda self, **kwargs: None)  # the shapes are under test, not inductor
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    seen: list[tuple[bool, bool, int]] = []  # (training, sanity check, batch)
    forward = DALAResNet.forward
    stances: list[str] = []
    set_stance = torch.compiler.set_stance

    def recording(self: DALAResNet, x: torch.Tensor) -> torch.Tensor:
        seen.append((self.training, trainer.sanity_checking, x.shape[0]))
        return forward(self, x)

    def recording_stance(stance: str = "default", **kwargs):
        stances.append(stance)
        return set_stance(stance, **kwargs)

    monkeypatch.setattr(DALAResNet, "forward", recording)
    monkeypatch.setattr(torch.compiler, "set_stance", recording_stance)
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), CLASSES, compile=compile)
    data = _data(demo_root, tmp_path, image_size=32, batch_size=40, eval_batch_size=20)
    trainer = _trainer(tmp_path, epochs=1, num_sanity_val_steps=2)
    trainer.fit(model, data)
    n_train, n_val = len(data.records("train")), len(data.records("val"))
    assert n_train % 40 > 1  # a partial last training batch to drop
    assert n_val % 20  # a partial last evaluation batch to pad
    train = [b for training, _, b in seen if training]
    evaluation = [b for training, sanity, b in seen if not training and not sanity]
    assert sum(train) == (n_train - n_train % 40 if compile else n_train)
    assert set(train) == ({40} if compile else {40, n_train % 40})
    assert set(evaluation) == ({20} if compile else {20, n_val % 20})
    assert len(model.eval_outputs["val"]["probs"]) == n_val  # the padding is cut off again
    assert stances.count("force_eager") == (2 if compile else 0)  # the sanity check's two batches


def test_bf16_mixed_precision_runs_on_the_cpu(demo_root: Path, tmp_path: Path) -> None:
    """The GPU default (bf16 autocast) through the whole step: float32 loss and metrics, finite values."""
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), CLASSES)
    trainer = _trainer(tmp_path, epochs=1, limit_train_batches=2, limit_val_batches=1, precision="bf16-mixed")
    trainer.fit(model, _data(demo_root, tmp_path))
    val = model.epoch_metrics["val"]
    assert val["val/loss"].dtype == torch.float32
    assert torch.isfinite(val["val/loss"])
    assert 0 <= val["val/auroc"] <= 1
    assert next(model.parameters()).dtype == torch.float32  # mixed: weights stay float32


def test_training_metrics_once_per_epoch_equal_per_step_updates(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []
    updates: list[str] = []
    append, update = EpochBuffer.append, ClassificationMetrics.update

    def record_step(self: EpochBuffer, probs: torch.Tensor, labels: torch.Tensor) -> None:
        steps.append((probs.clone(), labels.clone()))
        append(self, probs, labels)

    def record_update(self: ClassificationMetrics, probs: torch.Tensor, target: torch.Tensor) -> None:
        updates.append(self.prefix)
        update(self, probs, target)

    monkeypatch.setattr(EpochBuffer, "append", record_step)
    monkeypatch.setattr(ClassificationMetrics, "update", record_update)
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), CLASSES)
    trainer = _trainer(tmp_path, epochs=2, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, _data(demo_root, tmp_path, image_size=32, batch_size=8))
    assert updates.count("train/") == 2  # once per epoch
    assert len(steps) == 6
    per_step = ClassificationMetrics(model.class_names, prefix="train/")
    for probs, labels in steps[3:]:  # the last epoch
        per_step.update(probs, labels)
    expected = per_step.compute()
    got = {k: v for k, v in model.epoch_metrics["train"].items() if k != "train/loss"}
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value) or (value.isnan() and got[key].isnan()), key
    assert torch.equal(model.confusion["train"], per_step.confusion_matrix())
