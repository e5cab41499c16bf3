"""Ctrl-C during ``fit``: ``last.ckpt`` is brought up to the last completed epoch, so the run resumes from there."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import apply_to_collection
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from typing_extensions import override

from breakhis_lit.files import run_dir
from breakhis_lit.rundir import CHECKPOINTS, LAST


class ResumableInterrupt(Checkpoint):
    """Keep the state of the last completed epoch in host memory and write it to ``last.ckpt`` on Ctrl-C.

    ``last.ckpt`` is written at most once a minute (:class:`~breakhis_lit.callbacks.LastCheckpoint`), so without this
    an interrupted fit would resume from up to a minute of epochs earlier. At the end of each epoch, right after the
    checkpoint callbacks (where they save), when none of them wrote ``last.ckpt``, the checkpoint it would have held
    is copied to host memory (into buffers
    reused from one epoch to the next, pinned for GPU tensors and copied without waiting for the device); a
    ``KeyboardInterrupt`` then writes it, through the strategy's checkpoint writer (atomic), on rank zero. The
    result is exactly the ``last.ckpt`` of an interval of 0: a resumed fit equals an uninterrupted one.

    It is a :class:`~lightning.pytorch.callbacks.Checkpoint` so that Lightning runs it after the other checkpoint
    callbacks (it needs to know whether they wrote ``last.ckpt``). It holds about one checkpoint of host memory.

    Attributes:
        interrupted: Whether the fit (or another verb) ended with a ``KeyboardInterrupt``.
        written: The file written on the interrupt, if any.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self.written: Path | None = None
        self._kept: dict[str, Any] | None = None
        self._buffers: list[tuple[tuple[Any, ...], torch.Tensor]] = []
        self._on_device = False

    @staticmethod
    def _last_writers(trainer: L.Trainer) -> list[ModelCheckpoint]:
        """The checkpoint callbacks that write ``last.ckpt``."""
        return [
            cb
            for cb in trainer.checkpoint_callbacks
            if isinstance(cb, ModelCheckpoint)
            and LAST + cb.FILE_EXTENSION in {Path(cb._last_checkpoint_saved or "").name, Path(cb.last_model_path).name}
        ]

    def _saved_step(self, trainer: L.Trainer) -> int:
        """The global step ``last.ckpt`` was last written at (``-1`` before it was)."""
        return max((cb._last_global_step_saved for cb in self._last_writers(trainer)), default=-1)

    def _path(self, trainer: L.Trainer) -> Path | None:
        for cb in self._last_writers(trainer):
            return Path(cb._last_checkpoint_saved or cb.last_model_path)
        folder = run_dir(trainer)
        return folder / CHECKPOINTS / f"{LAST}.ckpt" if folder is not None else None

    def _copy(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint with every tensor copied to host memory (containers rebuilt, buffers reused)."""
        buffers, used = self._buffers, 0
        self._on_device = False

        def copy(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal used
            tensor = tensor.detach()
            pin = tensor.is_cuda
            key = (tensor.shape, tensor.stride(), tensor.dtype, pin)
            if used < len(buffers) and buffers[used][0] == key:
                buf = buffers[used][1]
            else:
                buf = torch.empty_like(tensor, device="cpu", pin_memory=pin)
                buffers[used : used + 1] = [(key, buf)]  # replaces a stale buffer, or appends
            buf.copy_(tensor, non_blocking=pin)
            self._on_device |= pin
            used += 1
            return buf

        kept = apply_to_collection(checkpoint, torch.Tensor, copy)
        del buffers[used:]
        return kept

    def _keep(self, trainer: L.Trainer) -> None:
        """Copy the state a ``last.ckpt`` written now would hold, unless one was (the checkpoints ran before)."""
        if self._saved_step(trainer) == trainer.global_step:
            self._kept = None  # last.ckpt holds this state already
            return
        self._kept = None  # the buffers are overwritten below: an interrupt meanwhile keeps nothing stale
        self._kept = self._copy(trainer._checkpoint_connector.dump_checkpoint(weights_only=False))

    @staticmethod
    def _at_train_epoch_end(trainer: L.Trainer) -> bool:
        """Whether the checkpoint callbacks save at the end of the training epoch (else after validation)."""
        writers = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        return writers[0]._should_save_on_train_epoch_end(trainer) if writers else True

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._at_train_epoch_end(trainer):
            self._keep(trainer)

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit" and not self._at_train_epoch_end(trainer):
            self._keep(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._kept, self._buffers = None, []

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        self.interrupted = True
        kept, self._kept = self._kept, None
        if kept is None or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        if int(kept.get("global_step", -1)) <= self._saved_step(trainer) or (path := self._path(trainer)) is None:
            return
        if self._on_device:
            torch.cuda.synchronize()  # the non-blocking device-to-host copies
        trainer.strategy.checkpoint_io.save_checkpoint(kept, path)  # atomic; the trainer's teardown waits for it
        self.written = path
        print(
            f"fit: interrupted in epoch {trainer.current_epoch}; {path} now holds the end of epoch {kept['epoch']} "
            f"(resume with the same command and --ckpt_path last)",
            file=sys.stderr,
        )
