"""Per-epoch history (``history.csv``) and fit timing (``fit_summary.json``) of a run."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from typing_extensions import override

from breakhis_lit.io import atomic_write_text, run_dir


class RunHistory(Callback):
    """Write one ``history.csv`` row per epoch and ``fit_summary.json`` at the end of ``fit``.

    A row holds every epoch-level metric Lightning has at that point (``train/*`` and ``val/*``) and
    the wall time since the start of ``fit``. Rows are written at the start of the next epoch (the
    first moment both the training and the validation metrics of an epoch exist) and at the end of
    training. ``fit_summary.json`` records the fit wall time, the best epoch of the checkpoint monitor
    and the time it took to reach it (the paper's "convergence time"). The state is checkpointed, so a
    resumed run continues the same clock and history.
    """

    filename = "history.csv"
    """Name of the per-epoch history file in the run directory."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.elapsed_before = 0.0
        self._start = 0.0
        self._pending_epoch: int | None = None
        self._pending_elapsed = 0.0
        self._trainer_metrics: dict[str, Any] | None = None

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

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer)
        summary = self.summary(trainer)
        if trainer.is_global_zero and (folder := run_dir(trainer)):
            atomic_write_text(folder / "fit_summary.json", json.dumps(summary, indent=2))

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
            self._write(folder / self.filename)

    def _write(self, path: Path) -> None:
        keys = ["epoch", "elapsed_s", *sorted({k for r in self.rows for k in r} - {"epoch", "elapsed_s"})]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(path)

    def summary(self, trainer: L.Trainer) -> dict[str, Any]:
        """Fit time, best epoch and time to the best epoch (by the checkpoint callback's monitor)."""
        checkpoint = trainer.checkpoint_callback
        monitor = checkpoint.monitor if isinstance(checkpoint, ModelCheckpoint) else None
        mode = checkpoint.mode if isinstance(checkpoint, ModelCheckpoint) else "min"
        best_epoch, time_to_best = None, None
        scored = [r for r in self.rows if monitor in r and math.isfinite(r[monitor])]
        if scored:
            sign = 1.0 if mode == "max" else -1.0
            best = scored[0]
            for row in scored[1:]:  # strict improvement keeps the first best, as ModelCheckpoint does
                if sign * row[monitor] > sign * best[monitor]:
                    best = row
            best_epoch, time_to_best = int(best["epoch"]), best["elapsed_s"]
        return {
            "fit_time_s": round(self._elapsed(), 3),
            "epochs": len(self.rows),
            "monitor": monitor,
            "best_epoch": best_epoch,
            "time_to_best_s": time_to_best,
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        rows = list(self.rows)
        if self._pending_epoch is not None and self._trainer_metrics is not None:
            # Checkpoints are written after validation, before the epoch's training metrics exist.
            partial = {k: float(v) for k, v in self._trainer_metrics.items() if k.startswith("val/") and v.numel() == 1}
            rows.append({"epoch": self._pending_epoch, "elapsed_s": round(self._pending_elapsed, 3), **partial})
        return {"rows": rows, "elapsed_s": self._elapsed() if self._start else self.elapsed_before}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
        self.elapsed_before = float(state_dict.get("elapsed_s", 0.0))
