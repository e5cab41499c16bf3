"""Write an evaluation's record (``metrics.json``, with patient-bootstrap intervals) and ``predictions.csv``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

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
    BootstrapSpec,
    Difference,
    EvalRecord,
    PredictionRow,
    ValidationChoice,
    read_predictions,
    write_predictions,
    write_record,
)

BootstrapMethod = Literal["percentile", "expanded", "bca"]


def model_name(backbone: torch.nn.Module) -> str:
    """The name reports use for a backbone: the timm model name for timm baselines, else the class name."""
    return backbone.report_name if isinstance(backbone, Backbone) else type(backbone).__name__


def _interval_dicts(intervals: dict) -> dict[str, dict]:
    return {name: interval.to_dict() for name, interval in intervals.items()}


def _text(interval: dict | None) -> str:
    if not interval or interval.get("low") is None or interval.get("estimate") is None:
        return "undefined"
    return f"{interval['estimate']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


class EvaluationReport(Callback):
    """After ``test``, write ``metrics.json`` (an :class:`~breakhis_lit.rundir.EvalRecord`) and ``predictions.csv``.

    They go into the verb's output folder (the logger's directory: ``test/`` of the run, or ``evals/<name>/``).
    Added to the network's test metrics here:

    * patient-level results, as BreakHis papers since Spanhol et al. (2016) report them: patient accuracy (mean
      class probability per patient) and the patient recognition rate;
    * calibration: ECE (torchmetrics, 15 bins) and Brier score, and, with the temperature chosen on validation,
      ``ece_calibrated`` and ``brier_calibrated`` of the temperature-scaled probabilities;
    * a patient-bootstrap interval of every scalar metric (``intervals``): the split groups are resampled with
      all their images, from the probabilities as ``predictions.csv`` stores them, so the intervals equal
      :func:`~breakhis_lit.stats.patient_bootstrap` on that file; and the image-level interval of accuracy
      (``image_intervals``), for contrast;
    * binary tasks: the threshold-dependent metrics again with decisions at the threshold chosen on the
      validation predictions of the checkpoint's epoch (``metrics_at_val_threshold``, with intervals; ``metrics``
      decide at 0.5).

    Args:
        bootstrap_method: Interval method: ``bca`` (default; 94.1% coverage of a 95% interval with 25 patients in
            ``tests/stats/test_bootstrap.py``'s simulation), ``expanded`` (94.6%) or ``percentile`` (92.9%).
        n_resamples: Bootstrap replicates.
        bootstrap_seed: Seed of the replicates.
        level: Confidence level of the intervals.
        temperature_scaling: Report the calibration metrics of temperature-scaled probabilities as well.
    """

    def __init__(
        self,
        bootstrap_method: BootstrapMethod = "bca",
        n_resamples: int = 2000,
        bootstrap_seed: int = 0,
        level: float = 0.95,
        temperature_scaling: bool = True,
    ) -> None:
        if bootstrap_method not in ("percentile", "expanded", "bca"):
            raise BreakHisError(
                f"--evaluation.bootstrap_method {bootstrap_method!r}: unknown; use bca, expanded or percentile"
            )
        if not isinstance(n_resamples, int) or n_resamples < 100:
            raise BreakHisError(f"--evaluation.n_resamples {n_resamples}: use at least 100 (2000 is the default)")
        if not 0.5 <= level < 1.0:
            raise BreakHisError(f"--evaluation.level {level}: use a confidence level in [0.5, 1), e.g. 0.95")
        self.bootstrap_method = bootstrap_method
        self.n_resamples = n_resamples
        self.bootstrap_seed = bootstrap_seed
        self.level = level
        self.temperature_scaling = temperature_scaling
        self.name = DEFAULT_EVAL
        """``test``, or the cross-evaluation's name (set by the command line: :meth:`for_evaluation`)."""
        self.differs: list[Difference] = []
        """What a cross-evaluation changed against the fit."""
        self.record: EvalRecord | None = None
        """The record written last (for notebooks and tests)."""

    def for_evaluation(self, name: str = DEFAULT_EVAL, differs: Sequence[Difference] = ()) -> EvaluationReport:
        """Name the evaluation this callback writes (``test`` or a cross-evaluation) and what it changed."""
        self.name = name
        self.differs = list(differs)
        return self

    @staticmethod
    def _validation_choice(pl_module: BreakHisClassifier) -> ValidationChoice | None:
        """The checkpoint's validation choice, when it was made on the checkpoint's own epoch."""
        choice = pl_module.validation_choice
        if choice is None:
            return None
        if pl_module.checkpoint_epoch is not None and choice.epoch != pl_module.checkpoint_epoch:
            print(
                f"note: the checkpoint's validation threshold comes from epoch {choice.epoch}, not its own epoch "
                f"{pl_module.checkpoint_epoch}; not used"
            )
            return None
        return choice

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

        metrics: dict[str, float | None] = {k.removeprefix("test/"): float(v) for k, v in result.metrics.items()}
        patients = patient_level_metrics([r.patient_id for r in chosen], probs, labels)
        n_patients = int(patients.pop("n_patients"))
        metrics.update(patients)
        predictions = probs.argmax(dim=1).tolist()
        rows = [
            PredictionRow(r.path, r.patient_id, r.group, classes[r.label] if r.label >= 0 else "", tuple(p), classes[k])
            for r, p, k in zip(chosen, probs.tolist(), predictions, strict=True)
        ]
        write_predictions(folder / PREDICTIONS, rows, classes)

        choice = self._validation_choice(pl_module)
        temperature = choice.temperature if choice is not None and self.temperature_scaling else None
        threshold = choice.threshold if choice is not None else None
        summary = self._statistics(folder, classes, temperature, threshold)
        metrics.update(summary["calibration"])

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
            intervals=summary["intervals"],
            tta=pl_module.tta,
            bootstrap=summary["bootstrap"],
            image_intervals=summary["image_intervals"],
            validation=choice,
            metrics_at_val_threshold=summary["metrics_at_val_threshold"],
            intervals_at_val_threshold=summary["intervals_at_val_threshold"],
        )
        if record.cross:
            write_split_csv(datamodule.split_rows, folder / SPLITS)
        write_record(folder / EVAL_RECORD, record)
        self.record = record
        self._print(record)
        print(f"wrote {folder / EVAL_RECORD} and {folder / PREDICTIONS}")
        if isinstance(trainer.logger, TensorBoardLogger):
            # TensorBoard's HPARAMS tab: the run's settings beside its final test metrics.
            settings = {"model": record.model, "eval": record.name, "split_hash": record.split_hash[:12]}
            settings.update({k: v for k, v in vars(record.data).items() if isinstance(v, str | int | float)})
            settings["lr"] = float(pl_module.hparams.get("lr", float("nan")))
            settings["tta"] = record.tta
            final = {f"hparams/test_{k}": v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}
            trainer.logger.log_hyperparams(settings, final)

    def _statistics(
        self, folder: Path, classes: list[str], temperature: float | None, threshold: float | None
    ) -> dict[str, object]:
        """Calibration metrics and every interval, from ``predictions.csv`` as written."""
        from breakhis_lit.evaluation.intervals import evaluation_intervals
        from breakhis_lit.evaluation.rows import predictions_from_rows, with_probs
        from breakhis_lit.evaluation.validation import apply_temperature
        from breakhis_lit.stats import brier_score, expected_calibration_error

        pred = predictions_from_rows(read_predictions(folder / PREDICTIONS, classes), classes, str(folder))
        calibration: dict[str, float | None] = {
            "ece": expected_calibration_error(pred.probs, pred.labels),
            "brier": brier_score(pred.probs, pred.labels),
        }
        calibrated = None
        if temperature is not None:
            calibrated = with_probs(pred, apply_temperature(pred.probs, temperature))
            calibration["ece_calibrated"] = expected_calibration_error(calibrated.probs, calibrated.labels)
            calibration["brier_calibrated"] = brier_score(calibrated.probs, calibrated.labels)
        out: dict[str, object] = {
            "calibration": calibration,
            "intervals": {},
            "bootstrap": None,
            "image_intervals": {},
            "metrics_at_val_threshold": {},
            "intervals_at_val_threshold": {},
        }
        try:
            found = evaluation_intervals(
                pred,
                method=self.bootstrap_method,
                n_resamples=self.n_resamples,
                seed=self.bootstrap_seed,
                level=self.level,
                threshold=threshold,
                calibrated=calibrated,
            )
        except BreakHisError as err:
            print(f"note: no intervals for this evaluation: {err}")
            return out
        out["intervals"] = _interval_dicts(found.intervals)
        out["image_intervals"] = _interval_dicts(found.image)
        out["intervals_at_val_threshold"] = _interval_dicts(found.at_threshold)
        out["metrics_at_val_threshold"] = {name: i.estimate for name, i in found.at_threshold.items()}
        out["bootstrap"] = BootstrapSpec(
            method=self.bootstrap_method,
            level=self.level,
            n_resamples=self.n_resamples,
            seed=self.bootstrap_seed,
            unit="group",
            n_groups=pred.n_groups,
            seconds=round(found.seconds, 4),
        )
        return out

    @staticmethod
    def _print(record: EvalRecord) -> None:
        """One line of the headline numbers with their intervals."""
        spec = record.bootstrap
        if spec is None:
            return
        level = f"{spec.level:.0%}"
        text = (
            f"{record.name}: accuracy {_text(record.intervals.get('accuracy'))} ({level} patient bootstrap, "
            f"{spec.method}, {spec.n_resamples} resamples of {spec.n_groups} groups; image bootstrap "
            f"{_text(record.image_intervals.get('accuracy'))}), patient accuracy "
            f"{_text(record.intervals.get('patient_accuracy'))}, AUROC {_text(record.intervals.get('auroc'))}, "
            f"ECE {_text(record.intervals.get('ece'))}; intervals took {spec.seconds:.2f} s"
        )
        if record.validation is not None and record.validation.threshold is not None:
            text += (
                f"; at the validation threshold {record.validation.threshold:.3f}: balanced accuracy "
                f"{_text(record.intervals_at_val_threshold.get('balanced_accuracy'))}"
            )
        print(text)
