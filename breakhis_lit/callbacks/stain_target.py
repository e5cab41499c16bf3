"""Save a fresh fit's stain normalisation target in its run directory (``stain_target.json``)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from breakhis_lit.data.datamodule import BreakHisDataModule
from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import STAIN_TARGET, RunDir
from breakhis_lit.stain.target_file import save_target


class StainTargetRecorder(Callback):
    """Write the data module's stain target into the run directory once its data are set up (rank zero).

    The target was fitted on the run's training split (or read from ``--data.stain_target``) when the image cache
    was built; ``none`` without normalisation. Every later verb on the run (``test``, ``validate``, ``predict``, a
    resumed ``fit``, ``breakhis stain-shift``) reads this file back instead of fitting again. A resumed fit leaves it
    as it is.

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
        if not isinstance(datamodule, BreakHisDataModule) or datamodule.stain_norm_target is None:
            raise BreakHisError("StainTargetRecorder records a BreakHisDataModule's stain target; use breakhis fit")
        save_target(self.run.path / STAIN_TARGET, datamodule.stain_norm_target)
