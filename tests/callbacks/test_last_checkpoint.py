"""LastCheckpoint: links instead of duplicate writes, at most one write per interval, the final epoch always."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from breakhis_lit.callbacks import LastCheckpoint
from breakhis_lit.checkpoints import AtomicCheckpointIO
from breakhis_lit.errors import BreakHisError


class Toy(L.LightningModule):
    """Logs ``val/score`` from a fixed sequence (one value per epoch) to steer the best checkpoint."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.net = nn.Linear(4, 2)
        self.scores = scores

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        self.log("val/score", self.scores[self.current_epoch] if not self.trainer.sanity_checking else 0.0)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 4, generator=g), torch.arange(16) % 2), batch_size=8)


class CountingIO(AtomicCheckpointIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.links: list[str] = []

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.writes.append(Path(path).name)
        super().save_checkpoint(checkpoint, path, storage_options)

    def link_checkpoint(self, source, path):
        self.links.append(Path(path).name)
        super().link_checkpoint(source, path)


def _fit(tmp_path: Path, scores: list[float], last: LastCheckpoint, **trainer_kwargs) -> CountingIO:
    io = CountingIO()
    best = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/score", mode="max")
    trainer = L.Trainer(
        max_epochs=len(scores),
        callbacks=[best, last],
        plugins=[io],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.fit(Toy(scores), _loader(), _loader())
    return io


def _epoch(path: Path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


def test_same_step_as_best_is_a_link_not_a_second_write(tmp_path: Path) -> None:
    io = _fit(tmp_path, [0.1, 0.2, 0.3], LastCheckpoint(min_interval_s=0, dirpath=str(tmp_path)))
    assert io.writes == ["best.ckpt"] * 3  # best improves every epoch; last.ckpt is never written itself
    assert io.links == ["last.ckpt"] * 3
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    assert best.stat().st_ino == last.stat().st_ino
    assert _epoch(last) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]  # no temporary files


def test_every_epoch_with_no_interval(tmp_path: Path) -> None:
    io = _fit(tmp_path, [0.5, 0.1, 0.1], LastCheckpoint(min_interval_s=0, dirpath=str(tmp_path)))
    assert io.writes == ["best.ckpt", "last.ckpt", "last.ckpt"]
    assert io.links == ["last.ckpt"]
    assert _epoch(tmp_path / "best.ckpt") == 0
    assert _epoch(tmp_path / "last.ckpt") == 2  # the later write replaced the link, not best.ckpt
    assert (tmp_path / "best.ckpt").stat().st_ino != (tmp_path / "last.ckpt").stat().st_ino


def test_interval_skips_middle_epochs_but_never_the_first_or_final(tmp_path: Path) -> None:
    io = _fit(tmp_path, [0.5, 0.1, 0.1, 0.1], LastCheckpoint(min_interval_s=3600, dirpath=str(tmp_path)))
    assert io.writes == ["best.ckpt", "last.ckpt"]  # epoch 0 (best, linked as last), then the final epoch 3
    assert io.links == ["last.ckpt"]
    assert _epoch(tmp_path / "last.ckpt") == 3


def test_final_state_is_kept_when_the_last_epoch_has_no_validation(tmp_path: Path) -> None:
    # Validation every 2 epochs: checkpoints are saved after validation, which epoch 3 of 3 does not have.
    io = _fit(
        tmp_path, [0.5, 0.1, 0.1], LastCheckpoint(min_interval_s=3600, dirpath=str(tmp_path)), check_val_every_n_epoch=2
    )
    assert io.writes[-1] == "last.ckpt"
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert state["global_step"] == 6  # all 3 epochs of 2 steps (saved at train end: "epoch" counts 3 done)


def test_link_then_new_source_keeps_the_linked_content(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, best)
    io.link_checkpoint(best, last)  # queued behind the pending write of best.ckpt
    io.save_checkpoint({"w": torch.zeros(3)}, best)
    io.teardown()
    assert torch.load(last, weights_only=True)["w"].sum().item() == 3
    assert torch.load(best, weights_only=True)["w"].sum().item() == 0


def test_negative_interval_is_refused() -> None:
    with pytest.raises(BreakHisError, match=r"--last_checkpoint\.min_interval_s -1: must be >= 0"):
        LastCheckpoint(min_interval_s=-1)
