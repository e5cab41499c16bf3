"""Write the class probabilities of ``breakhis predict`` to a CSV file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from breakhis_lit.data.breakhis import SampleRecord
from breakhis_lit.data.datamodule import BreakHisDataModule
from breakhis_lit.distributed import gather_uneven
from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import run_dir
from breakhis_lit.rundir import PredictionRow, write_predictions


def predicted_name(predict_root: str | None) -> str:
    """The name of what a predict run scores, in its output names: the folder's name, ``test`` for the test split."""
    return Path(predict_root).expanduser().resolve().name if predict_root else "test"


class PredictionCSVWriter(BasePredictionWriter):
    """Gather the predictions of every process and write them in the format of ``predictions.csv``.

    Columns: ``path, patient_id, group, label, prob_<class>..., prediction`` (see
    :func:`breakhis_lit.rundir.write_predictions`); patient, group and label are empty for images outside the
    BreakHis naming scheme.

    Args:
        output: CSV file to write. ``None`` writes ``predictions-<folder>.csv`` (``predictions-test.csv`` for the
            run's test split) into the verb's folder (``predict/`` of the run). An existing file is never
            overwritten: choose another name or delete it first.
    """

    default_name = "predictions-{}.csv"
    """The output's name in the verb's folder; ``{}`` is the predicted folder's name (``test``: the test split)."""

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.written: Path | None = None

    def target(self, folder: Path, datamodule: Any) -> Path:
        """The output: ``output``, else :attr:`default_name` in ``folder`` (the verb's folder of the run)."""
        if self.output:
            return Path(self.output)
        root = datamodule.predict_root if isinstance(datamodule, BreakHisDataModule) else None
        return folder / self.default_name.format(predicted_name(root))

    def _target(self, trainer: L.Trainer) -> Path:
        return self.target(run_dir(trainer) or Path("."), trainer.datamodule)

    def check_free(self, folder: Path, datamodule: Any) -> None:
        """Refuse, before anything is written, when the output already exists (never overwritten).

        Raises:
            BreakHisError: Naming the file and the option that picks another.
        """
        target = self.target(folder, datamodule)
        if target.exists():
            raise BreakHisError(f"{target} already exists; pass --prediction_writer.output OTHER.csv or delete it")

    @override
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_free(run_dir(trainer) or Path("."), trainer.datamodule)

    @override
    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        # Lightning shards prediction unevenly (each image once), so gather tensors of different lengths.
        probs = gather_uneven(torch.cat([p["probs"] for p in predictions]).to(pl_module.device)).cpu()
        index = gather_uneven(torch.cat([p["index"] for p in predictions]).to(pl_module.device)).cpu()
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        if not isinstance(datamodule, BreakHisDataModule):
            raise BreakHisError("PredictionCSVWriter writes predictions of a BreakHisDataModule; use breakhis predict")
        order = torch.argsort(index)  # Lightning's prediction sampler gives each image once, rank by rank
        records = datamodule.records("predict")
        rows = [records[i] for i in index[order].tolist()]
        self._write(trainer, rows, probs[order].tolist(), list(datamodule.classes))

    def _write(
        self, trainer: L.Trainer, records: list[SampleRecord], probs: list[list[float]], classes: list[str]
    ) -> None:
        """Write the class probabilities ``probs`` of the images ``records`` (in one order)."""
        rows = []
        for record, row in zip(records, probs, strict=True):
            label = classes[record.label] if record.label >= 0 else ""
            pred = max(range(len(row)), key=row.__getitem__)
            rows.append(PredictionRow(record.path, record.patient_id, record.group, label, tuple(row), classes[pred]))
        target = self._target(trainer)
        write_predictions(target, rows, classes)
        self.written = target
        print(f"wrote {target} ({len(rows)} images)")
