"""``last.ckpt`` for resuming: at most one write a minute, the final epoch always, no state written twice."""

from __future__ import annotations

import time
from typing import Any
from weakref import proxy

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override

from breakhis_lit.checkpoints import AtomicCheckpointIO
from breakhis_lit.errors import BreakHisError


# Kept over ModelCheckpoint's options (4 epochs, best at epoch 0): save_last=True or "link" leave last.ckpt at
# epoch 0, every_n_epochs=1 writes 5 files (epoch 0 twice), train_time_interval=1h writes none.
class LastCheckpoint(ModelCheckpoint):
    """Write ``checkpoints/last.ckpt`` at epoch ends, for ``fit --ckpt_path last``.

    Lightning 2.6's ``save_last`` only writes when the monitored checkpoint changes, so this is its own
    :class:`ModelCheckpoint` (no monitor, one file), saved at the end of an epoch when

    * another checkpoint callback (``best.ckpt``) saved at the same global step: the trainer state is the same,
      so ``last.ckpt`` becomes a hard link to that file instead of a second 100–300 MB write (through
      :meth:`AtomicCheckpointIO.link_checkpoint`, after that file's pending background write; a later write of
      either name replaces only that name);
    * it is the first epoch of this process, the last one (``max_epochs``, ``max_steps`` or a callback asking
      to stop), or ``min_interval_s`` seconds have passed since this callback last saved.

    A kill so loses at most ``min_interval_s`` seconds of training plus one epoch, while short epochs (50
    epochs of a minute's training on one GPU, or a CPU smoke run) are not slowed down by a write per epoch:
    one write of a 300 MB checkpoint costs about 0.2 s of CPU. ``min_interval_s=0`` writes every epoch.

    Args:
        min_interval_s: Seconds between two writes, other than links and the first and final epochs.
        filename: File name without ``.ckpt``.
        dirpath: Folder (default: the run's ``checkpoints/``, as for every :class:`ModelCheckpoint`).
    """

    def __init__(self, min_interval_s: float = 60.0, filename: str = "last", dirpath: str | None = None) -> None:
        if min_interval_s < 0:
            raise BreakHisError(
                f"--last_checkpoint.min_interval_s {min_interval_s}: must be >= 0 (seconds between writes of "
                "last.ckpt; 0 writes it every epoch)"
            )
        super().__init__(dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, enable_version_counter=False)
        self.min_interval_s = min_interval_s
        self._saved_at: float | None = None

    @staticmethod
    def _final_epoch(trainer: L.Trainer) -> bool:
        max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
        return (
            trainer.should_stop
            or (max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs)
            or (max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps)
        )

    @override
    def _should_skip_saving_checkpoint(self, trainer: L.Trainer) -> bool:
        if super()._should_skip_saving_checkpoint(trainer):
            return True
        due = self._saved_at is None or time.monotonic() - self._saved_at >= self.min_interval_s
        return not (due or self._final_epoch(trainer) or self._same_step_checkpoint(trainer) is not None)

    @override
    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        """Nothing: this callback saves at epoch ends only (Lightning's per-step checks stay off the hot path)."""

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A stop this callback could not foresee (max_time, an interrupted epoch): keep the final state too.
        if not ModelCheckpoint._should_skip_saving_checkpoint(self, trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def _same_step_checkpoint(self, trainer: L.Trainer) -> str | None:
        """A checkpoint file another callback saved at this global step with the same content options."""
        for callback in trainer.checkpoint_callbacks:
            if (
                callback is not self
                and isinstance(callback, ModelCheckpoint)
                and callback._last_checkpoint_saved
                and callback._last_global_step_saved == trainer.global_step
                and callback.save_weights_only == self.save_weights_only
            ):
                return callback._last_checkpoint_saved
        return None

    @override
    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self._saved_at = time.monotonic()
        source = self._same_step_checkpoint(trainer)
        io = trainer.strategy.checkpoint_io
        if source is None or source == filepath or not isinstance(io, AtomicCheckpointIO):
            super()._save_checkpoint(trainer, filepath)
            return
        if trainer.is_global_zero:
            io.link_checkpoint(source, filepath)
        trainer.strategy.barrier("LastCheckpoint.link")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
