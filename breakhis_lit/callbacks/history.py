"""Per-epoch history (``history.csv``) and what happened in the fit (``fit.json``) of a run."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from typing_extensions import override

from breakhis_lit.files import run_dir
from breakhis_lit.models.classifier import BreakHisClassifier
from breakhis_lit.rundir import FIT_RECORD, HISTORY, FitRecord, write_history, write_record


class RunHistory(Callback):
    """Write one ``history.csv`` row per epoch and ``fit.json`` (:class:`~breakhis_lit.rundir.FitRecord`) at the end.

    A row holds every epoch-level metric Lightning has at that point (``train/*`` and ``val/*``) and
    the wall time since the start of ``fit``. Rows are written at the start of the next epoch (the
    first moment both the training and the validation metrics of an epoch exist) and at the end of
    training. ``fit.json`` records the fit wall time, the best epoch of the checkpoint monitor
    and the time it took to reach it (the paper's "convergence time"). The state is checkpointed, so a
    resumed run continues the same clock and history.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.elapsed_before = 0.0
        self._start = 0.0
        self._pending_epoch: int | None = None
        self._pending_elapsed = 0.0
        self._trainer_metrics: dict[str, Any] | None = None
        self._train_metrics: dict[str, Any] = {}

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._start

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._pending_epoch = trainer.current_epoch
            self._pending_elapsed = self._elapsed()
            self._trainer_metrics = trainer.callback_metrics
            # The module's training metrics of this epoch, when it computes them before validation (Lightning logs
            # them only after it): a checkpoint written now then holds the epoch's whole row.
            result = pl_module.result("train") if isinstance(pl_module, BreakHisClassifier) else None
            fresh = result is not None and result.epoch == trainer.current_epoch
            self._train_metrics = dict(result.metrics) if fresh else {}

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)
        record = self.summary(trainer)
        if trainer.is_global_zero and (folder := run_dir(trainer)):
            write_record(folder / FIT_RECORD, record)

    def _flush(self, trainer: L.Trainer) -> None:
        if self._pending_epoch is None:
            return
        row: dict[str, float] = {"epoch": self._pending_epoch, "elapsed_s": round(self._pending_elapsed, 3)}
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.startswith(("train/", "val/")) and value.numel() == 1:
                row[key] = float(value)
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        self._pending_epoch = None
        if trainer.is_global_zero and (folder := run_dir(trainer)):
            write_history(folder / HISTORY, self.rows)

    def summary(self, trainer: L.Trainer) -> FitRecord:
        """Fit time, best epoch (counted from 1) and time to it (by the checkpoint callback's monitor)."""
        checkpoint = trainer.checkpoint_callback
        monitor = checkpoint.monitor if isinstance(checkpoint, ModelCheckpoint) else None
        mode = checkpoint.mode if isinstance(checkpoint, ModelCheckpoint) else "min"
        best: dict[str, float] | None = None
        scored = [r for r in self.rows if monitor in r and math.isfinite(r[monitor])]
        if scored:
            sign = 1.0 if mode == "max" else -1.0
            best = scored[0]
            for row in scored[1:]:  # strict improvement keeps the first best, as ModelCheckpoint does
                if sign * row[monitor] > sign * best[monitor]:
                    best = row
        return FitRecord(
            fit_time_s=round(self._elapsed(), 3),
            epochs=len(self.rows),
            max_epochs=trainer.max_epochs,
            monitor=monitor,
            mode=mode,
            best_epoch=int(best["epoch"]) + 1 if best else None,
            time_to_best_s=best["elapsed_s"] if best else None,
            best_score=best[monitor] if best else None,
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        rows = list(self.rows)
        if self._pending_epoch is not None and self._trainer_metrics is not None:
            # Checkpoints are written after validation, before Lightning has logged the epoch's training metrics:
            # they come from the module (see on_validation_end), the validation ones from Lightning.
            val = {k: v for k, v in self._trainer_metrics.items() if k.startswith("val/")}
            metrics = {**self._train_metrics, **val}
            partial = {k: float(v) for k, v in sorted(metrics.items()) if v.numel() == 1}
            rows.append({"epoch": self._pending_epoch, "elapsed_s": round(self._pending_elapsed, 3), **partial})
        return {"rows": rows, "elapsed_s": self._elapsed() if self._start else self.elapsed_before}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
        self.elapsed_before = float(state_dict.get("elapsed_s", 0.0))
