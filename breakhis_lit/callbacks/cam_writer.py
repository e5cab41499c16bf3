"""Grad-CAM overlays and class probabilities of ``breakhis gradcam``: each image of a predict run explained."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import lightning as L
from typing_extensions import override

from breakhis_lit.callbacks.prediction_writer import PredictionCSVWriter
from breakhis_lit.data.breakhis import SampleRecord
from breakhis_lit.data.cache import decode_image
from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import atomic_write_text, run_dir
from breakhis_lit.gradcam import caption, captioned, compute_cams, overlay, save_png

CAM_CSV = "gradcam.csv"
"""The table of :class:`GradCAMWriter`: ``path, label, prediction, prob_<class>..., target``."""


def overlay_name(path: str) -> str:
    """The file name of an image's Grad-CAM overlay: ``<stem>_gradcam.png``."""
    return f"{Path(path).stem}_gradcam.png"


def class_index(value: str, classes: list[str]) -> int:
    """The index of a class given by name (any case) or by index, for ``--cam.target_class``."""
    lowered = [c.lower() for c in classes]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    if value.isdigit() and int(value) < len(classes):
        return int(value)
    raise BreakHisError(
        f"--cam.target_class {value}: not a class of this model; use one of {', '.join(classes)} "
        f"or an index 0-{len(classes) - 1}"
    )


class GradCAMWriter(PredictionCSVWriter):
    """Lay the Grad-CAM heat map of each predicted image over it, and write the class probabilities.

    For every image of the predict run (``--data.predict_root`` or the run's test split) it writes
    ``<out>/<stem>_gradcam.png``, the heat map of the predicted class (or of ``target_class``) over the image at
    its full size under a caption (true class when the file name tells it, predicted class and probability,
    explained class; "no positive evidence" for an all-zero map), and, gathered from every process,
    ``<out>/gradcam.csv`` (path, true class, predicted class, class probabilities, explained class). Each process
    writes the overlays of its own images. Existing outputs are never overwritten.

    Args:
        out: Output folder. ``None``: the verb's folder, ``gradcam/<folder>/`` of the run (``gradcam/test/`` for
            its test split), which also holds the verb's config and TensorBoard log.
        target_class: Explain this class (name or index) for every image instead of the predicted one.
        batch_size: Images per Grad-CAM forward/backward pass.
    """

    def __init__(self, out: str | None = None, target_class: str | None = None, batch_size: int = 16) -> None:
        super().__init__(output=out)
        self.target_class = target_class
        self.batch_size = batch_size
        self._explained: int | None = None
        self._folder = Path()

    @override
    def target(self, folder: Path, datamodule: Any) -> Path:
        return Path(self.output) if self.output else folder

    @override
    def check_free(self, folder: Path, datamodule: Any) -> None:
        if self.target_class is not None:
            class_index(str(self.target_class), list(datamodule.classes))
        out = self.target(folder, datamodule)
        existing = [*out.glob(CAM_CSV), *sorted(out.glob("*_gradcam.png"))] if out.is_dir() else []
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise BreakHisError(f"{existing[0]} already exists{more}; pass --cam.out OTHER_DIR or delete it")

    @override
    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        data = trainer.datamodule
        if self.target_class is not None:
            self._explained = class_index(str(self.target_class), list(data.classes))
        folder = run_dir(trainer) or Path(".")
        self._folder = self.target(folder, data)
        names: dict[str, str] = {}
        for record in data.records("predict"):
            name = overlay_name(record.path)
            if name in names:
                raise BreakHisError(
                    f"{record.path}: same overlay name {name} as {names[name]}; explain images with equal file "
                    "names in separate runs"
                )
            names[name] = record.path
        self.check_free(folder, data)  # on every process: outputs of an earlier run
        self._folder.mkdir(parents=True, exist_ok=True)
        trainer.strategy.barrier("gradcam_outputs_checked")  # no process writes before every one has checked

    @override
    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        # `batch` is the one predict_step saw: on the device and ImageNet-normalised (on_after_batch_transfer).
        data = trainer.datamodule
        probs = outputs["probs"]
        preds = probs.argmax(dim=1).tolist()
        targets = preds if self._explained is None else [self._explained] * len(preds)
        cams, _ = compute_cams(pl_module.backbone, batch["image"], targets, batch_size=self.batch_size)
        records, classes = data.records("predict"), list(data.classes)
        rows = zip(cams, probs.tolist(), preds, targets, batch["index"].tolist(), strict=True)
        for cam, p, pred, target, i in rows:
            record = records[i]
            original = decode_image(record.path if data.predict_root else data.index.abspath(record.path), None)
            text = caption(classes[pred], p[pred], classes[record.label] if record.label >= 0 else None)
            text += f" · Grad-CAM of {classes[target]}" + (" (no positive evidence)" if cam.max() <= 0 else "")
            save_png(captioned(overlay(original, cam), text), self._folder / overlay_name(record.path))

    @override
    def _write(
        self, trainer: L.Trainer, records: list[SampleRecord], probs: list[list[float]], classes: list[str]
    ) -> None:
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["path", "label", "prediction", *[f"prob_{c}" for c in classes], "target"])
        for record, row in zip(records, probs, strict=True):
            pred = max(range(len(row)), key=row.__getitem__)
            explained = pred if self._explained is None else self._explained
            label = classes[record.label] if record.label >= 0 else ""
            writer.writerow([record.path, label, classes[pred], *[f"{p:.6f}" for p in row], classes[explained]])
        self.written = atomic_write_text(self._folder / CAM_CSV, table.getvalue())
        print(f"wrote {len(records)} Grad-CAM overlay(s) and {CAM_CSV} to {self._folder}")
