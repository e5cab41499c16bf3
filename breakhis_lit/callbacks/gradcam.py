"""Grad-CAM of fixed benign and malignant images during validation and at test, logged and saved."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from matplotlib.figure import Figure
from typing_extensions import override

from breakhis_lit.errors import BreakHisError
from breakhis_lit.gradcam import caption, compute_cams, grid, overlay, save_figure, save_png
from breakhis_lit.io import run_dir


class GradCAMCallback(Callback):
    """Explain the model on the same few images as training goes on, and on the test set at the end.

    On global rank zero, after every ``every_n_epochs``-th validation of ``fit`` (never the sanity check)
    and after ``validate``/``test``, it takes
    ``trainer.datamodule.fixed_examples(stage, per_class)`` (deterministic picks of each class), normalises
    them with ``datamodule.normalize``, computes Grad-CAM heat maps of the predicted classes on
    ``pl_module.backbone`` and logs a grid of (image, overlay) pairs, titled
    ``"true: malignant / pred: malignant (0.97)"``, to TensorBoard as ``val/gradcam`` or ``test/gradcam``.
    At test it also writes ``<log_dir>/gradcam/test_<class>_<k>.png`` (the overlay of the k-th image of
    that class) and ``<log_dir>/gradcam/test_grid.png``.

    It does nothing (with one message) when the datamodule has no ``fixed_examples``/``normalize`` or the
    model no Grad-CAM layers, and a failure is reported as a warning instead of ending a long run.

    Args:
        every_n_epochs: Explain every this many validation runs of ``fit``; ``0`` only at test.
        per_class: Images of each class in the grids.
        on_test: Explain at the end of ``test``.
        save_png: Write the test overlays and grid as PNG files into the run directory.
        batch_size: Images per Grad-CAM forward/backward pass.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        per_class: int = 2,
        on_test: bool = True,
        save_png: bool = True,
        batch_size: int = 16,
    ) -> None:
        if every_n_epochs < 0:
            raise BreakHisError(
                f"--gradcam.every_n_epochs {every_n_epochs}: must be >= 0 (0 draws Grad-CAM only at test)"
            )
        if per_class < 1:
            raise BreakHisError(f"--gradcam.per_class {per_class}: must be >= 1 (images of each class per grid)")
        self.every_n_epochs = every_n_epochs
        self.per_class = per_class
        self.on_test = on_test
        self.save_png = save_png
        self.batch_size = batch_size
        self._val_runs = 0
        self._told: set[str] = set()
        self.last_figure: Figure | None = None
        """The most recent grid (for notebooks and tests)."""

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"val_runs": self._val_runs}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._val_runs = int(state_dict.get("val_runs", 0))

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn != "fit":
            self._explain(trainer, pl_module, "val")
            return
        self._val_runs += 1
        if self.every_n_epochs == 0:
            return
        if self._val_runs % self.every_n_epochs == 0:
            self._explain(trainer, pl_module, "val")

    @override
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.on_test:
            self._explain(trainer, pl_module, "test")

    def _tell_once(self, key: str, message: str) -> None:
        if key not in self._told:
            self._told.add(key)
            rank_zero_info(f"GradCAMCallback: {message}")

    def _explain(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        datamodule = getattr(trainer, "datamodule", None)
        if not callable(getattr(datamodule, "fixed_examples", None)) or not callable(
            getattr(datamodule, "normalize", None)
        ):
            self._tell_once("data", "skipped: the datamodule has no fixed_examples()/normalize()")
            return
        backbone = getattr(pl_module, "backbone", pl_module)
        if not callable(getattr(backbone, "gradcam_target_layers", None)):
            self._tell_once("model", f"skipped: {type(backbone).__name__} has no gradcam_target_layers()")
            return
        try:
            self._render(trainer, pl_module, backbone, datamodule, stage)
        except Exception as error:  # a broken figure must not end a long run
            rank_zero_warn(f"GradCAMCallback: {stage} Grad-CAM failed ({type(error).__name__}: {error})")

    def _render(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        backbone: torch.nn.Module,
        datamodule: Any,
        stage: str,
    ) -> None:
        images, labels, _ = datamodule.fixed_examples(stage, self.per_class)
        if len(images) == 0:
            self._tell_once(f"empty-{stage}", f"skipped: no {stage} images to explain")
            return
        normalised = datamodule.normalize(images.to(pl_module.device))
        cams, probs = compute_cams(backbone, normalised, batch_size=self.batch_size)
        classes = list(getattr(datamodule, "classes", [])) or [str(k) for k in range(probs.shape[1])]
        preds = probs.argmax(dim=1).tolist()
        labels = [int(label) for label in labels]
        titles = [
            caption(classes[p], float(probs[i, p]), classes[labels[i]] if labels[i] >= 0 else None)
            for i, p in enumerate(preds)
        ]
        images = images.cpu()
        fig = grid(
            images,
            cams,
            titles,
            pairs_per_row=self.per_class,
            suptitle=f"{stage} Grad-CAM, epoch {trainer.current_epoch}, step {trainer.global_step}",
        )
        self.last_figure = fig
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"{stage}/gradcam", fig, global_step=trainer.global_step, close=False)
        if stage != "test" or not self.save_png or run_dir(trainer) is None:
            return
        out = run_dir(trainer) / "gradcam"
        if out.is_dir() and any(out.glob("test_*.png")):
            rank_zero_info(f"GradCAMCallback: replacing the test Grad-CAM images in {out}")
        seen: dict[str, int] = {}
        for i, label in enumerate(labels):
            name = classes[label] if label >= 0 else "unlabelled"
            k = seen.get(name, 0)
            seen[name] = k + 1
            save_png(overlay(images[i], cams[i]), out / f"test_{name}_{k}.png")
        save_figure(fig, out / "test_grid.png")
        rank_zero_info(f"GradCAMCallback: wrote {len(labels)} test Grad-CAM images and test_grid.png to {out}")
