"""Training throughput (images per second) per epoch, without a device synchronisation per step."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override


class Throughput(Callback):
    """Log ``train/throughput_img_s``: training images of the epoch over its wall time.

    The clock is read at the start of the epoch and after its last training batch, with one device
    synchronisation per epoch (not per step), so it measures the training loop including data loading
    but excluding validation.
    """

    def __init__(self) -> None:
        self._images = 0
        self._start = 0.0

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sync(pl_module)
        self._images = 0
        self._start = time.perf_counter()

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += int(batch["label"].shape[0]) * trainer.world_size
        if batch_idx + 1 == trainer.num_training_batches:
            self._sync(pl_module)
            seconds = time.perf_counter() - self._start
            if seconds > 0:
                pl_module.log("train/throughput_img_s", self._images / seconds, on_step=False, on_epoch=True)
