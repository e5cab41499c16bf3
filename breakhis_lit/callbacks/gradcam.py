"""Grad-CAM of fixed benign and malignant images during validation and at test, logged and saved."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from matplotlib.figure import Figure
from typing_extensions import override

from breakhis_lit.data.datamodule import BreakHisDataModule
from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import run_dir
from breakhis_lit.gradcam import caption, compute_cams, grid, overlay, save_figure, save_png
from breakhis_lit.models.classifier import BreakHisClassifier
from breakhis_lit.rundir import GRADCAM, GRADCAM_MANIFEST, GradCAMEntry, write_gradcam_manifest


class GradCAMCallback(Callback):
    """Explain the model on the same few images as training goes on, and on the test set at the end.

    On global rank zero, after every ``every_n_epochs``-th validation of ``fit`` (never the sanity check)
    and after ``validate``/``test``, it takes the data module's
    :meth:`~breakhis_lit.data.BreakHisDataModule.fixed_examples` (deterministic picks of each class), computes
    Grad-CAM heat maps of the predicted classes on the classifier's backbone and logs a grid of (image, overlay)
    pairs, titled ``"true: malignant / pred: malignant (0.97)"``, to TensorBoard as ``val/gradcam`` or
    ``test/gradcam``. At test it also writes, into the evaluation's folder, ``gradcam/test_<class>_<k>.png``
    (the overlay of the k-th image of that class), ``gradcam/test_grid.png`` and ``gradcam/manifest.csv``
    (image, true class, predicted class and probability of each overlay).

    A failure is reported as a warning instead of ending a long run.

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
        datamodule = trainer.datamodule
        if not isinstance(datamodule, BreakHisDataModule) or not isinstance(pl_module, BreakHisClassifier):
            self._tell_once("types", "skipped: explains a BreakHisClassifier on a BreakHisDataModule only")
            return
        try:
            self._render(trainer, pl_module, datamodule, stage)
        except Exception as error:  # a broken figure must not end a long run
            rank_zero_warn(f"GradCAMCallback: {stage} Grad-CAM failed ({type(error).__name__}: {error})")

    def _render(
        self, trainer: L.Trainer, pl_module: BreakHisClassifier, datamodule: BreakHisDataModule, stage: str
    ) -> None:
        images, labels, records = datamodule.fixed_examples(stage, self.per_class)
        if len(images) == 0:
            self._tell_once(f"empty-{stage}", f"skipped: no {stage} images to explain")
            return
        backbone = pl_module.backbone
        normalised = datamodule.normalize(images.to(pl_module.device))
        cams, probs = compute_cams(backbone, normalised, batch_size=self.batch_size)
        classes = list(datamodule.classes)
        preds = probs.argmax(dim=1).tolist()
        labels = [int(label) for label in labels]
        titles = [
            caption(classes[p], float(probs[i, p]), classes[labels[i]] if labels[i] >= 0 else None)
            for i, p in enumerate(preds)
        ]
        images = images.cpu()
        if trainer.state.fn == "fit":
            when = f"epoch {trainer.current_epoch + 1}"
        elif pl_module.checkpoint_epoch is not None:
            when = f"checkpoint of epoch {pl_module.checkpoint_epoch}"
        else:
            when = "untrained weights"
        fig = grid(images, cams, titles, pairs_per_row=self.per_class, suptitle=f"{stage} Grad-CAM, {when}")
        self.last_figure = fig
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"{stage}/gradcam", fig, global_step=trainer.global_step, close=False)
        folder = run_dir(trainer)
        if stage != "test" or not self.save_png or folder is None:
            return
        out = folder / GRADCAM
        if out.is_dir() and any(out.glob("*.png")):
            rank_zero_info(f"GradCAMCallback: replacing the Grad-CAM images in {out}")
            for old in out.glob("*.png"):
                old.unlink()
        entries, seen = [], {}
        for i, label in enumerate(labels):
            name = classes[label] if label >= 0 else "unlabelled"
            k = seen.get(name, 0)
            seen[name] = k + 1
            file, input_file = f"{stage}_{name}_{k}.png", f"{stage}_{name}_{k}_image.png"
            save_png(overlay(images[i], cams[i]), out / file)
            save_png(images[i].numpy(), out / input_file)
            entries.append(
                GradCAMEntry(
                    file,
                    input_file,
                    records[i].path,
                    classes[label] if label >= 0 else "",
                    classes[preds[i]],
                    float(probs[i, preds[i]]),
                )
            )
        save_figure(fig, out / f"{stage}_grid.png")
        write_gradcam_manifest(out, entries)
        rank_zero_info(
            f"GradCAMCallback: wrote {len(entries)} Grad-CAM images, the grid and {GRADCAM_MANIFEST} to {out}"
        )
