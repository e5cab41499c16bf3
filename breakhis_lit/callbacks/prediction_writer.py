"""Write the per-class probabilities of ``breakhis predict`` to a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from breakhis_lit.distributed import gather_uneven
from breakhis_lit.errors import BreakHisError
from breakhis_lit.io import run_dir


class PredictionCSVWriter(BasePredictionWriter):
    """Gather the predictions of every process and write ``path, prob_<class>…, prediction`` rows.

    Args:
        output: CSV file to write. ``None`` writes ``predictions-<folder>.csv`` into the run directory.
            An existing file is never overwritten: choose another name or delete it first.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.written: Path | None = None

    def _target(self, trainer: L.Trainer) -> Path:
        if self.output:
            return Path(self.output)
        root = getattr(trainer.datamodule, "predict_root", None) or "images"
        return (run_dir(trainer) or Path(".")) / f"predictions-{Path(str(root)).resolve().name}.csv"

    @override
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        target = self._target(trainer)
        if target.exists():
            raise BreakHisError(f"{target} already exists; pass --prediction_writer.output OTHER.csv or delete it")

    @override
    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        # Lightning shards prediction unevenly (each image once), so gather tensors of different lengths.
        probs = gather_uneven(torch.cat([p["probs"] for p in predictions]).to(pl_module.device)).cpu()
        index = gather_uneven(torch.cat([p["index"] for p in predictions]).to(pl_module.device)).cpu()
        if not trainer.is_global_zero:
            return
        order = torch.argsort(index)  # Lightning's prediction sampler gives each image once, rank by rank
        index, probs = index[order], probs[order]
        records = trainer.datamodule.records("predict")
        classes = list(trainer.datamodule.classes)
        target = self._target(trainer)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", *[f"prob_{c}" for c in classes], "prediction"])
            for i, row in zip(index.tolist(), probs.tolist(), strict=True):
                pred = max(range(len(row)), key=row.__getitem__)
                writer.writerow([records[i].path, *[f"{p:.6f}" for p in row], classes[pred]])
        self.written = target
        print(f"wrote {target} ({len(index)} images)")
