"""The LightningModule: an injected backbone, loss and optimiser, evaluated with the paper's metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric
from typing_extensions import override

from breakhis_lit.distributed import gather_uneven
from breakhis_lit.errors import BreakHisError
from breakhis_lit.metrics import ClassificationMetrics
from breakhis_lit.models.base import Backbone
from breakhis_lit.models.epoch_buffer import EpochBuffer
from breakhis_lit.models.tta import TTA, d4_log_probs
from breakhis_lit.rundir import ValidationChoice

VALIDATION_CHOICE_KEY = "breakhis_validation_choice"
"""Checkpoint entry holding the :class:`~breakhis_lit.rundir.ValidationChoice` of the checkpoint's epoch."""

_STAGES = ("train", "val", "test")


@dataclass(frozen=True)
class StageResult:
    """What the last epoch of a stage produced, for callbacks (figures, reports).

    Attributes:
        metrics: Scalar metrics keyed ``"<stage>/<name>"`` (0-d tensors, reduced across processes).
        confusion: Confusion matrix ``[C, C]`` (rows true class, columns predicted), on the CPU.
        probs: Class probabilities ``[N, C]`` of every image of the epoch (val/test; gathered from every process).
        labels: True classes ``[N]``.
        index: Index of each image in the data module's records of the stage ``[N]``.
        epoch: The epoch (``current_epoch``, from 0) these results are of.
    """

    metrics: dict[str, Tensor]
    confusion: Tensor | None
    probs: Tensor | None
    labels: Tensor | None
    index: Tensor | None
    epoch: int | None = None


class BreakHisClassifier(L.LightningModule):
    """Image classifier for BreakHis (benign/malignant or the 8 subtypes).

    The parts are injected: the network (``backbone``: any module of :mod:`breakhis_lit.models` mapping normalised
    images to logits, so one class trains DALA-ResNet50 and every baseline), the loss (``criterion``), the optimiser
    (``optimizer``) and the class names (``class_names``; the command line links them from ``data.classes``). The
    module owns the per-stage metrics; files (history, metrics.json, predictions) are written by callbacks from
    what it exposes.

    Args:
        backbone: The network: a :class:`~breakhis_lit.models.Backbone` (from Python, any ``nn.Module`` with a
            ``num_classes`` attribute). Its ``load_pretrained()`` runs at the start of a fresh ``fit`` only.
        class_names: Class names in index order; default ``"0"``, ``"1"``...
        criterion: The loss module, ``criterion(logits, labels)``; default cross-entropy.
        class_weights: ``"balanced"`` sets the criterion's ``weight`` to the training split's ``n / (C * count)``;
            ``"none"``: unweighted (the paper).
        label_smoothing: Label smoothing of the default criterion.
        lr: Learning rate of the optimiser (the paper uses 1e-4).
        weight_decay: Weight decay of the optimiser.
        optimizer: The optimiser (its ``lr`` and ``weight_decay`` are the options above); default AdamW, fused on
            a GPU.
        lr_scheduler: Optional learning-rate scheduler factory (stepped per epoch).
        channels_last: Run convolutional backbones in channels-last memory format (faster on GPUs).
        compile: Compile the backbone with ``torch.compile`` (opt-in, for long GPU runs: ``benchmarks/README.md``):
            ``true`` for the default mode, ``"reduce-overhead"`` (CUDA graphs, for small batches) or
            ``"max-autotune"`` (tunes kernels for minutes). Shapes are then static: the last partial training batch is
            dropped (:attr:`static_shapes`), evaluation batches padded, the sanity check eager; inductor's cache
            persists in ``$TORCHINDUCTOR_CACHE_DIR`` (default ``inductor/`` in the image cache folder).
        tta: Test-time augmentation of ``test`` and ``predict`` (never of validation): ``"d4"`` averages the class
            probabilities of the 8 rotations and reflections of each image (:mod:`breakhis_lit.models.tta`).
            Not a hyper-parameter of the checkpoint: it is chosen when a run is scored.

    At the end of every validation epoch of ``fit`` the module chooses, on that epoch's validation predictions, a
    binary decision threshold (maximal balanced accuracy) and a temperature (:attr:`validation_choice`); every
    checkpoint of the epoch saves them and restoring it reads them back, so ``best.ckpt`` carries the choice made
    on the validation predictions of its own epoch.
    """

    def __init__(
        self,
        backbone: Backbone,
        class_names: Sequence[str] | None = None,
        criterion: Callable[..., Any] | None = None,
        class_weights: Literal["none", "balanced"] = "none",
        label_smoothing: float = 0.0,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        channels_last: bool = True,
        compile: bool | Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = False,
        tta: TTA = "none",
    ) -> None:
        super().__init__()
        if tta not in ("none", "d4"):
            raise BreakHisError(f"--model.tta {tta!r}: unknown test-time augmentation; use none or d4")
        num_classes = int(backbone.num_classes)
        self.class_names = [str(c) for c in class_names] if class_names else [str(i) for i in range(num_classes)]
        """Class names in index order."""
        if len(self.class_names) != num_classes:
            raise BreakHisError(
                f"--model.backbone.init_args.num_classes {num_classes} but the data has {len(self.class_names)} "
                f"classes ({', '.join(self.class_names)}); set num_classes: {len(self.class_names)}"
            )
        if criterion is not None and label_smoothing:
            raise BreakHisError(
                "--model.label_smoothing is for the default criterion; set it in --model.criterion's init_args"
            )
        weighable = criterion is None or (isinstance(criterion, nn.Module) and hasattr(criterion, "weight"))
        if class_weights == "balanced" and not weighable:
            raise BreakHisError("--model.class_weights balanced: the criterion has no `weight` to set them as")
        _check_optimizer(optimizer)
        self.save_hyperparameters(logger=False, ignore=["tta"])
        self.tta = tta
        # Under LightningCLI the hyper-parameters are the plain config (class_path + init_args), so a checkpoint
        # rebuilds its model and loads with weights_only=True. Built in Python, the backbone, criterion and
        # optimiser are objects: keep only their names, so checkpoints stay plain (pass backbone= again to load them).
        for key in ("backbone", "criterion", "optimizer", "lr_scheduler"):
            value = self.hparams.get(key)
            if value is not None and not isinstance(value, dict | str | int | float | bool):
                self.hparams[key] = None
                self.hparams[f"{key}_name"] = getattr(value, "__qualname__", None) or type(value).__qualname__
        self.backbone = backbone
        self.criterion = criterion if criterion is not None else nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.use_channels_last = channels_last and bool(getattr(backbone, "channels_last", False))
        self.register_buffer("nonfinite_step", torch.tensor(-1), persistent=False)
        self.register_buffer("nonfinite_eval", torch.tensor(False), persistent=False)
        self.eval_outputs: dict[str, dict[str, Tensor]] = {}
        """Gathered ``probs``, ``label`` and ``index`` of the last val/test/predict epoch (for callbacks)."""
        self.epoch_metrics: dict[str, dict[str, Tensor]] = {}
        """Scalar metrics computed at the end of the last epoch of each stage."""
        self.confusion: dict[str, Tensor] = {}
        """Confusion matrix (rows true, columns predicted) of the last epoch of each stage."""
        self._epoch_of: dict[str, int] = {}
        self._train_unlogged: dict[str, Tensor] | None = None
        self._eval_buffers: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {}
        self._train_outputs = EpochBuffer()
        # nan_strategy="disable": the NaN check of the others reads the device every step (a non-finite training
        # loss is caught by nonfinite_step instead).
        self.train_loss, self.val_loss, self.test_loss = (MeanMetric(nan_strategy="disable") for _ in _STAGES)
        """Each stage's mean loss over the epoch's samples (reduced across processes by torchmetrics)."""
        self.train_metrics, self.val_metrics, self.test_metrics = (
            ClassificationMetrics(self.class_names, prefix=f"{name}/") for name in _STAGES
        )
        self._compiled = False
        self._eval_batch = 0
        self._restored = False
        self.checkpoint_epoch: int | None = None
        """Epoch (counted from 1) of the checkpoint the weights were restored from; ``None`` when none was."""
        self.validation_choice: ValidationChoice | None = None
        """Threshold and temperature chosen on the last validation epoch of ``fit`` (or read from the checkpoint)."""

    @property
    def num_classes(self) -> int:
        """Number of output classes of the backbone."""
        return int(self.backbone.num_classes)

    @property
    def loss_weight(self) -> Tensor:
        """The criterion's class weights (empty when unweighted)."""
        weight = getattr(self.criterion, "weight", None)
        return weight if isinstance(weight, Tensor) else torch.empty(0)

    @override
    def setup(self, stage: str) -> None:
        from breakhis_lit.data import BreakHisDataModule

        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if isinstance(datamodule, BreakHisDataModule):
            if datamodule.classes != self.class_names:
                raise BreakHisError(
                    f"--model.backbone.init_args.num_classes {self.num_classes} but --data.task '{datamodule.task}' "
                    f"has {datamodule.num_classes} classes; set num_classes: {datamodule.num_classes}"
                    if datamodule.num_classes != self.num_classes
                    else f"class_names {self.class_names} differ from the data's {datamodule.classes}; pass "
                    "class_names=data.classes"
                )
            self._eval_batch = max(self._eval_batch, datamodule.eval_batch_size)
        if stage == "fit" and self.hparams.class_weights == "balanced":
            if not isinstance(datamodule, BreakHisDataModule):
                raise BreakHisError("--model.class_weights balanced: needs a BreakHisDataModule for the class counts")
            counts = datamodule.train_class_counts().float()
            weight = counts.sum() / (len(counts) * counts.clamp(min=1))
            self.criterion.register_buffer("weight", weight, persistent=False)  # not in checkpoints: set each fit
        if self.use_channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if self.hparams.compile and not self._compiled:
            self._compile()

    @property
    def static_shapes(self) -> bool:
        """Whether every batch should have one shape (the backbone is compiled); the DataModule's ``drop_last``."""
        return bool(self.hparams.compile)

    def _compile(self) -> None:
        """Compile the backbone for static shapes, with inductor's cache in a folder that outlives the process."""
        from breakhis_lit.data.cache import default_cache_dir

        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(default_cache_dir()) / "inductor"))
        mode = self.hparams.compile if isinstance(self.hparams.compile, str) else "default"
        # Static: a shape seen once more is compiled again for it (with only two shapes, training and evaluation
        # batches, that is cheaper than kernels for every size, and CUDA graphs need fixed shapes anyway).
        self.backbone.compile(mode=mode, dynamic=False)
        self._compiled = True

    def _logits(self, images: Tensor) -> Tensor:
        """The backbone's logits; with ``tta`` in ``test``/``predict``, the log of the D4-averaged probabilities."""
        trainer = self._trainer
        if self.tta == "d4" and not self.training and trainer is not None and (trainer.testing or trainer.predicting):
            return d4_log_probs(self._backbone_logits, images)
        return self._backbone_logits(images)

    def _backbone_logits(self, images: Tensor) -> Tensor:
        """The backbone's logits; compiled, evaluation batches padded to one size and the sanity check eager."""
        if not self._compiled or self.training:
            return self(images)
        n = images.shape[0]
        self._eval_batch = max(self._eval_batch, n)
        if n < self._eval_batch:  # the last batch: zeros after it (evaluation mode, so they change nothing else)
            images = torch.cat([images, images.new_zeros((self._eval_batch - n, *images.shape[1:]))])
        sanity = self._trainer is not None and self.trainer.sanity_checking
        with torch.compiler.set_stance("force_eager") if sanity else contextlib.nullcontext():
            return self(images)[:n]

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored = True
        epoch = checkpoint.get("epoch")
        self.checkpoint_epoch = int(epoch) + 1 if isinstance(epoch, int) else None
        saved = checkpoint.get(VALIDATION_CHOICE_KEY)
        self.validation_choice = ValidationChoice(**saved) if isinstance(saved, dict) else None

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.validation_choice is not None:
            checkpoint[VALIDATION_CHOICE_KEY] = dataclasses.asdict(self.validation_choice)

    def _choose_on_validation(self) -> None:
        """Choose the threshold and temperature on this epoch's validation predictions (``fit`` only)."""
        if self._trainer is None or self.trainer.state.fn != "fit":
            return
        outputs = self.eval_outputs.get("val")
        if not outputs or not len(outputs["label"]):
            return
        from breakhis_lit.evaluation.validation import choose_on_validation

        self.validation_choice = choose_on_validation(outputs["probs"], outputs["label"], self.current_epoch + 1)

    def result(self, stage: str) -> StageResult | None:
        """What the last epoch of ``stage`` (``train``, ``val``, ``test``) produced; ``None`` before one ended."""
        if stage not in self.epoch_metrics:
            return None
        outputs = self.eval_outputs.get(stage, {})
        return StageResult(
            metrics=self.epoch_metrics[stage],
            confusion=self.confusion.get(stage),
            probs=outputs.get("probs"),
            labels=outputs.get("label"),
            index=outputs.get("index"),
            epoch=self._epoch_of.get(stage),
        )

    @override
    def on_fit_start(self) -> None:
        # After any checkpoint restore, before training: pretrained weights load for a fresh fit only (a resumed or
        # restored run already has its weights, and must not download them again).
        if not self._restored and hasattr(self.backbone, "load_pretrained"):
            self.backbone.load_pretrained()

    @override
    def forward(self, x: Tensor) -> Tensor:
        if self.use_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def _metrics(self, stage: str) -> ClassificationMetrics:
        return getattr(self, f"{stage}_metrics")

    def _mean_loss(self, stage: str) -> MeanMetric:
        return getattr(self, f"{stage}_loss")

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        return self.criterion(logits.float(), labels)

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        logits = self._logits(batch["image"])
        labels = batch["label"]
        loss = self._loss(logits, labels)
        loss_value = loss.detach()
        probs = logits.detach().float().softmax(dim=-1)
        # Weights can blow up while the loss stays finite: outputs are checked too. Flags stay on the device (no
        # host synchronisation per step) and are read once per epoch (_check_finite, _check_finite_outputs).
        # A sum is non-finite when any term is, and x * 0 != 0 only for NaN and inf: 4 ops where isfinite().all()
        # on both takes 12.
        total = probs.sum() + loss_value if stage == "train" else probs.sum()
        bad = total.mul(0) != 0
        if stage == "train":
            first = (self.nonfinite_step < 0) & bad
            self.nonfinite_step = torch.where(first, self.global_step, self.nonfinite_step)
            self._buffer_train_outputs(probs, labels)
        else:
            self.nonfinite_eval = self.nonfinite_eval | bad
            try:
                self._metrics(stage).update(probs, labels)  # checks its first batch's values (one host read)
            except ValueError:
                if bool(bad):
                    self._raise_nonfinite_outputs(stage)
                raise
        # One value per sample: torchmetrics 1.9 drops `weight` under nan_strategy="disable" (its issue #3434).
        self._mean_loss(stage).update(loss_value.expand(labels.shape[0]))
        if stage != "train":
            self._eval_buffers.setdefault(stage, []).append((probs, labels, batch["index"]))
        return loss

    @override
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    @override
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    @override
    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    @override
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        probs = self._logits(batch["image"]).float().softmax(dim=-1)
        return {"probs": probs, "index": batch["index"]}

    def _buffer_train_outputs(self, probs: Tensor, labels: Tensor) -> None:
        """Keep a training step's probabilities and labels on the device; the metrics see the epoch's at its end.

        Two slice copies per step instead of a metrics update (47 ops fewer per step, each a kernel launch on a
        GPU: ``benchmarks/train_speed.py --ops-only``); the values are the same, the metrics' states being sums
        and concatenations.
        """
        buffer = self._train_outputs
        if not buffer.capacity:  # the epoch's samples on this process, at most
            batches = self.trainer.num_training_batches
            buffer.capacity = int(batches) * labels.numel() if math.isfinite(batches) else 0
        buffer.append(probs, labels)

    def _update_train_metrics(self) -> None:
        """Feed the epoch's buffered training outputs to the training metrics, in one update."""
        if len(self._train_outputs):
            self._metrics("train").update(*self._train_outputs.tensors())
        self._train_outputs.clear()

    def _reset(self, stage: str) -> None:
        if stage == "train":
            self._train_outputs.clear()
        self._metrics(stage).reset()
        self._mean_loss(stage).reset()
        self._eval_buffers.pop(stage, None)

    def _end_epoch(self, stage: str, log: bool = True) -> None:
        """Compute, reduce across processes and log the epoch's metrics for ``stage``.

        With ``log=False`` (training metrics computed before validation) the values are logged by the next call.
        """
        if stage == "train" and self._train_unlogged is not None and log:
            values, self._train_unlogged = self._train_unlogged, None
            self._log_epoch(values)
            return
        mean_loss = self._mean_loss(stage)
        if mean_loss.update_count == 0:
            return
        loss = mean_loss.compute()
        mean_loss.reset()
        if stage == "train":
            self._update_train_metrics()
        metrics = self._metrics(stage)
        values = {f"{stage}/loss": loss, **metrics.compute()}
        self.confusion[stage] = metrics.confusion_matrix().cpu()
        metrics.reset()
        self.epoch_metrics[stage] = {k: v.detach() for k, v in values.items()}
        self._epoch_of[stage] = self.current_epoch
        buffers = self._eval_buffers.pop(stage, [])
        if buffers:
            probs, labels, index = (torch.cat(t) for t in zip(*buffers, strict=True))
            outputs = {"probs": probs, "label": labels, "index": index}
            self.eval_outputs[stage] = {k: gather_uneven(v).cpu() for k, v in outputs.items()}
        if log:
            self._log_epoch(values)
        else:
            self._train_unlogged = values

    def _log_epoch(self, values: dict[str, Tensor]) -> None:
        # Values are already reduced across processes; sync_dist would reduce them a second time.
        shown = {k for k in values if k.endswith(("/loss", "/accuracy"))}
        self.log_dict({k: v for k, v in values.items() if k in shown}, prog_bar=True)
        self.log_dict({k: v for k, v in values.items() if k not in shown}, prog_bar=False)

    @override
    def on_train_start(self) -> None:
        # The sanity check ran validation batches through the metrics: start clean.
        for stage in _STAGES:
            self._reset(stage)

    @override
    def on_train_epoch_start(self) -> None:
        self._reset("train")
        self._train_unlogged = None
        # Re-seed every epoch from (seed, epoch, rank): dropout of epoch e is then the same in an uninterrupted run
        # and in one resumed from a checkpoint, where the RNG state was not saved (the DataModule seeds its
        # augmentation the same way, from its own generator).
        base = os.environ.get("PL_GLOBAL_SEED")
        if base is not None:
            seed = int(base) + 1000 * (self.current_epoch + 1) + self.global_rank
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)  # also seeds every CUDA device

    @override
    def on_test_epoch_start(self) -> None:
        self._reset("test")
        self.nonfinite_eval = torch.zeros_like(self.nonfinite_eval)

    def _check_finite(self) -> None:
        """Stop the run (before any checkpoint of this epoch is written) if a training loss or output was not finite."""
        step = int(self.trainer.strategy.reduce(self.nonfinite_step.float(), reduce_op="max"))
        if step >= 0:
            raise BreakHisError(
                f"training loss or outputs became non-finite in epoch {self.current_epoch} at step {step}; lower the "
                "learning rate or check the data (the last good checkpoint is the previous last.ckpt)"
            )

    def _raise_nonfinite_outputs(self, stage: str) -> None:
        where = "validation" if stage == "val" else stage
        if self.trainer.state.fn == "fit":
            raise BreakHisError(
                f"model outputs became non-finite in epoch {self.current_epoch} ({where} after step "
                f"{self.global_step}) though the training loss was finite: the weights blew up; lower the learning "
                "rate or its schedule (--model.lr_scheduler), or clip gradients (--trainer.gradient_clip_val 1.0); "
                "the last good checkpoint is the previous last.ckpt"
            )
        raise BreakHisError(
            f"model outputs are non-finite in {where}: the checkpoint's weights are not finite; pass another "
            "--ckpt_path (an earlier run's best.ckpt or last.ckpt)"
        )

    def _check_finite_outputs(self, stage: str) -> None:
        """Stop (before this epoch's checkpoints are written) if an evaluation output of the epoch was not finite."""
        if bool(self.trainer.strategy.reduce(self.nonfinite_eval.float(), reduce_op="max") > 0):
            self.nonfinite_eval = torch.zeros_like(self.nonfinite_eval)
            self._raise_nonfinite_outputs(stage)

    @override
    def on_train_epoch_end(self) -> None:
        self._check_finite()
        self._end_epoch("train")

    @override
    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self._check_finite()
            if self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
                # The training epoch is over: its metrics exist before validation, so the checkpoints written
                # after validation (last.ckpt, best.ckpt) hold them too (they are logged at the epoch's end).
                self._end_epoch("train", log=False)
        self._reset("val")
        self.nonfinite_eval = torch.zeros_like(self.nonfinite_eval)

    @override
    def on_validation_epoch_end(self) -> None:
        self._check_finite_outputs("val")
        if self.trainer.sanity_checking:
            self._reset("val")
            return
        self._end_epoch("val")
        self._choose_on_validation()

    @override
    def on_test_epoch_end(self) -> None:
        self._check_finite_outputs("test")
        self._end_epoch("test")

    @override
    def configure_optimizers(self) -> Any:
        options = {"lr": self.hparams.lr, "weight_decay": self.hparams.weight_decay}
        if self.optimizer_factory is not None:
            optimizer = self.optimizer_factory(self.parameters(), **options)
        else:
            optimizer = torch.optim.AdamW(self.parameters(), **options, fused=self.device.type == "cuda")
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer)}}

    def parameter_counts(self) -> dict[str, int]:
        """Total and trainable parameters of the backbone."""
        params = list(self.backbone.parameters())
        return {
            "params_total": sum(p.numel() for p in params),
            "params_trainable": sum(p.numel() for p in params if p.requires_grad),
        }


def _check_optimizer(factory: Callable[..., Any] | None) -> None:
    """Refuse an optimiser factory that binds lr or weight_decay: they come from the module's own options."""
    if not isinstance(factory, functools.partial):  # a class (or a function) is called with them
        return
    cls = next((f for f in (factory.func, *factory.args) if isinstance(f, type)), None)
    defaults = inspect.signature(cls).parameters if cls is not None else {}
    for key in ("lr", "weight_decay"):
        default = defaults[key].default if key in defaults else inspect.Parameter.empty
        if key in factory.keywords and factory.keywords[key] != default:
            raise BreakHisError(
                f"--model.optimizer sets {key} {factory.keywords[key]}: set it with --model.{key} instead (given to "
                "every optimiser); drop it from the optimiser's init_args"
            )
