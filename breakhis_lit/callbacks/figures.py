"""TensorBoard figures of the evaluation epochs: confusion matrix and precision-recall curves."""

from __future__ import annotations

import lightning as L
import matplotlib
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from typing_extensions import override

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models.classifier import BreakHisClassifier

matplotlib.use("Agg")


def confusion_figure(confusion: torch.Tensor, classes: list[str], title: str) -> Figure:
    """A labelled confusion-matrix heat map (rows true, columns predicted) with counts in the cells."""
    # At least 3.6 inches wide: a 2-class matrix is narrower than its title ("test, checkpoint of epoch 12").
    fig = Figure(figsize=(max(3.6, 1.2 + 0.6 * len(classes)), 1.2 + 0.55 * len(classes)), layout="constrained")
    ax = fig.add_subplot()
    values = confusion.numpy()
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45 if len(classes) > 2 else 0)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    peak = values.max() if values.size else 0
    for (i, j), v in ((ij, values[ij]) for ij in ((i, j) for i in range(len(classes)) for j in range(len(classes)))):
        ax.text(j, i, str(int(v)), ha="center", va="center", color="white" if v > peak / 2 else "black")
    return fig


class EvaluationFigures(Callback):
    """Log a confusion-matrix figure and precision-recall curves for validation and test to TensorBoard.

    Args:
        every_n_epochs: Log the validation figures of ``fit`` every this many epochs (epochs 5, 10, ... for 5);
            ``0`` only at test, which always gets them. Drawing costs about 0.1 s on a CPU, which adds up over
            short epochs.
    """

    def __init__(self, every_n_epochs: int = 5) -> None:
        if every_n_epochs < 0:
            raise BreakHisError(
                f"--figures.every_n_epochs {every_n_epochs}: must be >= 0 (0 draws the figures only at test)"
            )
        self.every_n_epochs = every_n_epochs

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        logger = trainer.logger
        if not trainer.is_global_zero or not isinstance(logger, TensorBoardLogger):
            return
        if not isinstance(pl_module, BreakHisClassifier) or (result := pl_module.result(stage)) is None:
            return
        classes = pl_module.class_names
        step = trainer.global_step
        writer = logger.experiment
        if result.confusion is not None:
            if trainer.state.fn == "fit":
                title = f"{stage}, epoch {trainer.current_epoch + 1}"
            else:
                title = f"{stage}, checkpoint of epoch {pl_module.checkpoint_epoch or '?'}"
            writer.add_figure(f"{stage}/confusion_matrix", confusion_figure(result.confusion, classes, title), step)
        if result.probs is not None and result.labels is not None:
            probs, labels = result.probs.float(), result.labels
            if len(classes) == 2:
                writer.add_pr_curve(f"{stage}/pr_curve", labels == 1, probs[:, 1], global_step=step)
            else:
                for k, name in enumerate(classes):
                    writer.add_pr_curve(f"{stage}/pr_curve_{name}", labels == k, probs[:, k], global_step=step)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.every_n_epochs == 0:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._log(trainer, pl_module, "val")

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "test")
