"""Write an evaluation's record (``metrics.json``) and ``predictions.csv`` after ``test``."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from breakhis_lit.data.datamodule import BreakHisDataModule
from breakhis_lit.data.splits import write_split_csv
from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import run_dir
from breakhis_lit.metrics import patient_level_metrics
from breakhis_lit.models.base import Backbone
from breakhis_lit.models.classifier import BreakHisClassifier
from breakhis_lit.rundir import (
    DEFAULT_EVAL,
    EVAL_RECORD,
    PREDICTIONS,
    SPLITS,
    Difference,
    EvalRecord,
    PredictionRow,
    write_predictions,
    write_record,
)


def model_name(backbone: torch.nn.Module) -> str:
    """The name reports use for a backbone: the timm model name for timm baselines, else the class name."""
    return backbone.report_name if isinstance(backbone, Backbone) else type(backbone).__name__


class EvaluationReport(Callback):
    """After ``test``, write ``metrics.json`` (an :class:`~breakhis_lit.rundir.EvalRecord`) and ``predictions.csv``.

    They go into the verb's output folder (the logger's directory: ``test/`` of the run, or ``evals/<name>/``).
    Patient-level results are added here, as BreakHis papers since Spanhol et al. (2016) report them: patient
    accuracy (mean class probability per patient) and the patient recognition rate.

    Args:
        name: ``test``, or the cross-evaluation's name.
        differs: What a cross-evaluation changed against the fit.
    """

    def __init__(self, name: str = DEFAULT_EVAL, differs: Sequence[Difference] = ()) -> None:
        self.name = name
        self.differs = list(differs)
        self.record: EvalRecord | None = None
        """The record written last (for notebooks and tests)."""

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = run_dir(trainer)
        if not trainer.is_global_zero or folder is None:
            return
        datamodule = trainer.datamodule
        if not isinstance(pl_module, BreakHisClassifier) or not isinstance(datamodule, BreakHisDataModule):
            raise BreakHisError("EvaluationReport reports BreakHisClassifier tests on a BreakHisDataModule")
        result = pl_module.result("test")
        if result is None or result.probs is None:
            return
        # Gathered rank by rank; each image once (the DataModule's evaluation sampler never repeats one).
        order = torch.argsort(result.index)
        probs, labels, index = result.probs[order], result.labels[order], result.index[order]
        records = datamodule.records("test")
        chosen = [records[i] for i in index.tolist()]
        classes = list(datamodule.classes)

        metrics = {k.removeprefix("test/"): float(v) for k, v in result.metrics.items()}
        patients = patient_level_metrics([r.patient_id for r in chosen], probs, labels)
        n_patients = int(patients.pop("n_patients"))
        metrics.update(patients)
        counts = pl_module.parameter_counts()
        record = EvalRecord(
            name=self.name,
            model=model_name(pl_module.backbone),
            data=datamodule.data_spec(),
            differs=self.differs,
            classes=classes,
            split_hash=datamodule.split_hash(),
            checkpoint=str(trainer.ckpt_path) if trainer.ckpt_path else None,
            checkpoint_epoch=pl_module.checkpoint_epoch,
            n_images=len(chosen),
            n_patients=n_patients,
            n_groups=len({r.group for r in chosen}),
            metrics=metrics,
            confusion_matrix=result.confusion.tolist() if result.confusion is not None else [],
            params_total=counts["params_total"],
            params_trainable=counts["params_trainable"],
        )
        predictions = probs.argmax(dim=1).tolist()
        rows = [
            PredictionRow(r.path, r.patient_id, r.group, classes[r.label] if r.label >= 0 else "", tuple(p), classes[k])
            for r, p, k in zip(chosen, probs.tolist(), predictions, strict=True)
        ]
        write_predictions(folder / PREDICTIONS, rows, classes)
        if record.cross:
            write_split_csv(datamodule.split_rows, folder / SPLITS)
        write_record(folder / EVAL_RECORD, record)
        self.record = record
        print(f"wrote {folder / EVAL_RECORD} and {folder / PREDICTIONS}")
        if isinstance(trainer.logger, TensorBoardLogger):
            # TensorBoard's HPARAMS tab: the run's settings beside its final test metrics.
            settings = {"model": record.model, "eval": record.name, "split_hash": record.split_hash[:12]}
            settings.update({k: v for k, v in vars(record.data).items() if isinstance(v, str | int | float)})
            settings["lr"] = float(pl_module.hparams.get("lr", float("nan")))
            final = {f"hparams/test_{k}": v for k, v in metrics.items() if isinstance(v, float)}
            trainer.logger.log_hyperparams(settings, final)
