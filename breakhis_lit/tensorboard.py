"""The runs' TensorBoard logger: the curves that matter on one chart each, no ``epoch`` scalar."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

CURVES = "BreakHis: train vs val"
"""The custom-scalars category of the curves."""

LAYOUT: dict[str, dict[str, list[Any]]] = {
    CURVES: {
        "loss": ["Multiline", [r"^train/loss$", r"^val/loss$"]],
        "balanced accuracy": ["Multiline", [r"^train/balanced_accuracy$", r"^val/balanced_accuracy$"]],
        "AUROC": ["Multiline", [r"^train/auroc$", r"^val/auroc$"]],
    }
}
"""TensorBoard's custom-scalars layout: loss, balanced accuracy and AUROC, training and validation on one chart."""


class RunLogger(TensorBoardLogger):
    """:class:`~lightning.pytorch.loggers.TensorBoardLogger` for a run directory.

    * Lightning adds an ``epoch`` scalar to every logging call; it is dropped (every chart's step is already the
      training step, and the epoch is the row of ``history.csv``). It showed first in TensorBoard, one point a chart.
    * With ``curves=True`` (``fit``) the run gets the :data:`LAYOUT` custom-scalars layout, written with the first
      metrics: TensorBoard's *Custom Scalars* tab then opens on training vs validation loss, balanced accuracy and
      AUROC, one chart each.

    Args:
        curves: Write the custom-scalars layout.
        *args: As for :class:`~lightning.pytorch.loggers.TensorBoardLogger`.
        **kwargs: As for :class:`~lightning.pytorch.loggers.TensorBoardLogger`.
    """

    def __init__(self, *args: Any, curves: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.curves = curves
        self._layout_written = False

    @override
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if self.curves and not self._layout_written:
            self.experiment.add_custom_scalars(LAYOUT)
            self._layout_written = True
        if metrics:
            super().log_metrics(metrics, step)
