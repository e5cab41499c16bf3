"""The CUDA path of training: GPU-resident image cache, bf16, channels-last, fused AdamW, compile (needs a GPU).

Skipped without CUDA (CI has none); ``benchmarks/gpu_check.sh`` runs them on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from breakhis_lit.checkpoints import AtomicCheckpointIO
from breakhis_lit.data import BreakHisDataModule
from breakhis_lit.models import BreakHisClassifier, DALAResNet

BINARY = ["benign", "malignant"]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _fit(root: Path, tmp: Path, model: BreakHisClassifier, epochs: int = 2) -> BreakHisDataModule:
    data = BreakHisDataModule(
        root=str(root), magnification="all", image_size=96, batch_size=32, cache_dir=str(tmp / "cache")
    )
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="gpu", devices=1, precision="bf16-mixed", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp,
    )  # fmt: skip
    trainer.fit(model, data)
    return data


def test_cuda_fit_uses_the_gpu_path(demo_root: Path, tmp_path: Path) -> None:
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), BINARY, lr=5e-4)
    data = _fit(demo_root, tmp_path, model)
    assert data.dataset("train").images.is_cuda  # the uint8 cache moved to the GPU once
    optimizer = model.trainer.optimizers[0]
    assert optimizer.defaults.get("fused") is True
    conv = model.backbone.conv1.weight
    assert conv.is_cuda
    assert conv.is_contiguous(memory_format=torch.channels_last)
    val = model.epoch_metrics["val"]
    assert torch.isfinite(val["val/loss"])
    assert val["val/loss"].dtype == torch.float32


@pytest.mark.parametrize("mode", [True, "reduce-overhead"])
def test_compiled_fit_matches_eager_quality(demo_root: Path, tmp_path: Path, mode: bool | str) -> None:
    L.seed_everything(0, verbose=False)
    model = BreakHisClassifier(DALAResNet(arch="resnet18", num_classes=2), BINARY, lr=5e-4, compile=mode)
    _fit(demo_root, tmp_path, model, epochs=3)
    val = model.epoch_metrics["val"]
    assert torch.isfinite(val["val/loss"])
    assert val["val/auroc"] > 0.8  # learns under compile (the same 3 epochs eager, bf16 on a CPU: 0.97)


def test_checkpoint_snapshot_of_gpu_tensors_is_taken_at_save_time(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    weights = torch.ones(1 << 20, device="cuda")
    io.save_checkpoint({"state_dict": {"w": weights}}, tmp_path / "a.ckpt")
    weights.zero_()  # queued after the copy on the same stream: the file keeps the ones
    io.teardown()
    saved = torch.load(tmp_path / "a.ckpt", weights_only=True)["state_dict"]["w"]
    assert saved.device.type == "cpu"
    assert saved.sum().item() == 1 << 20
