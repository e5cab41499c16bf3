"""Record what a fit runs: ``splits.csv`` and ``run.json`` when it starts, and every resume."""

from __future__ import annotations

import dataclasses

import lightning as L
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

import breakhis_lit
from breakhis_lit.callbacks.evaluation_report import model_name
from breakhis_lit.data.datamodule import BreakHisDataModule
from breakhis_lit.data.splits import write_split_csv
from breakhis_lit.errors import BreakHisError
from breakhis_lit.models.classifier import BreakHisClassifier
from breakhis_lit.rundir import (
    RUN_RECORD,
    Resume,
    RunDir,
    RunRecord,
    git_commit,
    utc_now,
    write_record,
)
from breakhis_lit.stain.target_file import save_target


class RunRecorder(Callback):
    """Fix a fit's evidence in its run directory (rank zero).

    A fresh fit writes ``splits.csv``, ``stain_target.json`` and ``run.json``
    (:class:`~breakhis_lit.rundir.RunRecord`) once its data are set up, before the first step; a resumed fit (whose
    split and stain target the command line bound to the run's files) rewrites none of them, and appends a
    :class:`~breakhis_lit.rundir.Resume` to ``run.json`` once the checkpoint is restored.

    Args:
        run: The run directory.
        resume: Whether this fit resumes the run.
    """

    def __init__(self, run: RunDir, resume: bool = False) -> None:
        self.run = run
        self.resume = resume

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.resume or not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        if not isinstance(datamodule, BreakHisDataModule) or not isinstance(pl_module, BreakHisClassifier):
            raise BreakHisError("RunRecorder records BreakHisClassifier fits on a BreakHisDataModule; use breakhis fit")
        if datamodule.stain_norm_target is None:
            raise BreakHisError("RunRecorder records a BreakHisDataModule after its setup; use breakhis fit")
        rows = datamodule.split_rows
        write_split_csv(rows, self.run.splits)
        # Fitted on this run's training split when the cache was built (``none`` without normalisation); every later
        # verb on the run reads it back instead of fitting again.
        save_target(self.run.stain_target, datamodule.stain_norm_target)
        counts = {side: sum(r.split == side for r in rows) for side in ("train", "val", "test", "skipped")}
        backbone = pl_module.backbone
        record = RunRecord(
            experiment=self.run.path.parent.name,
            version=self.run.version,
            model=model_name(backbone),
            backbone=f"{type(backbone).__module__}.{type(backbone).__name__}",
            root=str(datamodule.root),
            data=datamodule.data_spec(),
            classes=list(datamodule.classes),
            split_hash=datamodule.split_hash(),
            data_fingerprint=datamodule.breakhis.fingerprint(),
            n_images=counts,
            max_epochs=trainer.max_epochs,
            package_version=breakhis_lit.__version__,
            git_commit=git_commit(),
        )
        write_record(self.run.path / RUN_RECORD, record)

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.resume or not trainer.is_global_zero:
            return
        record = self.run.record()
        resume = Resume(at=utc_now(), from_epoch=trainer.current_epoch, max_epochs=trainer.max_epochs)
        write_record(self.run.path / RUN_RECORD, dataclasses.replace(record, resumes=[*record.resumes, resume]))
