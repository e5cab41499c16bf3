"""Write ``metrics.json`` and ``predictions.csv`` of a test run into its run directory."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from breakhis_lit.io import atomic_write_text, run_dir
from breakhis_lit.metrics import patient_level_metrics


def model_name(backbone: torch.nn.Module) -> str:
    """The name reports use for a backbone: the timm model name for timm baselines, else the class name."""
    return str(getattr(backbone, "model_name", None) or type(backbone).__name__)


class TestReport(Callback):
    """After ``test``, write ``metrics.json`` and ``predictions.csv`` into the run directory.

    ``metrics.json`` holds every test metric, the run's settings, parameter counts and fit timing;
    ``predictions.csv`` one row per test image with its class probabilities.

    Patient-level results are added here, as BreakHis papers since Spanhol et al. (2016) report them:
    patient accuracy (mean class probability per patient) and the patient recognition rate.
    """

    __test__ = False  # not a pytest test class

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        outputs = getattr(pl_module, "eval_outputs", {}).get("test")
        if not trainer.is_global_zero or outputs is None or run_dir(trainer) is None:
            return
        folder = run_dir(trainer)
        datamodule = trainer.datamodule
        records = datamodule.records("test")
        probs, labels, index = outputs["probs"], outputs["label"], outputs["index"]
        # Gathered rank by rank; each image once (the DataModule's evaluation sampler never repeats one).
        order = torch.argsort(index)
        probs, labels, index = probs[order], labels[order], index[order]
        chosen = [records[i] for i in index.tolist()]

        test_metrics = {k.removeprefix("test/"): float(v) for k, v in pl_module.epoch_metrics.get("test", {}).items()}
        test_metrics.update(patient_level_metrics([r.patient_id for r in chosen], probs, labels))
        test_metrics["n_images"] = len(chosen)
        confusion = pl_module.confusion.get("test")
        if confusion is not None:
            test_metrics["confusion_matrix"] = confusion.tolist()

        fit_summary: dict[str, Any] = {}
        if (folder / "fit_summary.json").is_file():
            fit_summary = json.loads((folder / "fit_summary.json").read_text())
        summary = {
            "experiment": folder.parent.name,
            "model": model_name(pl_module.backbone),
            "task": datamodule.task,
            "magnification": str(datamodule.magnification),
            "split": datamodule.split,
            "group_by": datamodule.group_by,
            "seed": datamodule.seed,
            "fold": getattr(datamodule, "fold", None),
            "classes": list(datamodule.classes),
            **pl_module.parameter_counts(),
            "fit_time_s": fit_summary.get("fit_time_s"),
            "time_to_best_s": fit_summary.get("time_to_best_s"),
            "best_epoch": fit_summary.get("best_epoch"),
            "epochs": fit_summary.get("epochs"),
            "monitor": fit_summary.get("monitor"),
            "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None,
            "test": test_metrics,
        }
        atomic_write_text(folder / "metrics.json", json.dumps(summary, indent=2))
        atomic_write_text(folder / "predictions.csv", _predictions_csv(chosen, probs, datamodule.classes))
        print(f"wrote {folder / 'metrics.json'} and {folder / 'predictions.csv'}")
        if isinstance(trainer.logger, TensorBoardLogger):
            # TensorBoard's HPARAMS tab: the run's settings beside its final test metrics.
            settings = {
                k: v for k, v in summary.items() if isinstance(v, str | int | float | bool) and k != "checkpoint"
            }
            settings["lr"] = float(pl_module.hparams.get("lr", float("nan")))
            final = {f"hparams/test_{k}": v for k, v in test_metrics.items() if isinstance(v, float)}
            trainer.logger.log_hyperparams(settings, final)


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: undefined metrics (e.g. AUROC with one class present) are written as null."""
    return value if math.isfinite(value) else None


def _predictions_csv(records: list[Any], probs: torch.Tensor, classes: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "patient_id", "group", "label", *[f"prob_{c}" for c in classes], "prediction"])
    predictions = probs.argmax(dim=1).tolist()
    for record, row, pred in zip(records, probs.tolist(), predictions, strict=True):
        label = classes[record.label] if record.label >= 0 else ""
        writer.writerow(
            [record.path, record.patient_id, record.group, label, *[f"{p:.6f}" for p in row], classes[pred]]
        )
    return buffer.getvalue()
