"""A probe for host reads of device values: the ops after which the host waits for the GPU, seen on a CPU.

A GPU runs ahead of Python until the host needs a value. On a CPU nothing waits, so a read that would stall a GPU
run goes unnoticed; this probe (a ``TorchDispatchMode``) records every op that would be one:

* reading a value: ``.item()``, ``bool(t)``, ``int(t)``, ``float(t)``, ``if t:`` (``_local_scalar_dense``),
  ``torch.equal``, ``torch.allclose``, the error checks of ``torch.linalg`` (``inv``, ``cholesky``, ``solve``);
* an output whose shape depends on the values: ``nonzero``, ``torch.where(cond)``, ``argwhere``,
  ``masked_select``, ``unique``/``unique_consecutive``, indexing or assigning with a boolean mask (a hidden
  ``nonzero``), ``repeat_interleave`` without ``output_size``;
* ops that read values to size their work on CUDA but not on a CPU: ``bincount`` (the input's min and max) and
  ``histc`` without a range (``min == max``).

Not visible here: ``.cpu()``, ``.tolist()`` and ``.numpy()`` of tensors that would live on the GPU (no-ops on CPU
tensors, nothing is dispatched) and blocking host-to-device copies; CUDA's own check
(``torch.cuda.set_sync_debug_mode("error")``) sees those on a GPU machine.
"""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

#: Ops that make the host wait for the GPU whatever their arguments, with the reason.
ALWAYS: dict[Any, str] = {
    aten._local_scalar_dense.default: "reads a value (.item(), bool(), int(), float(), if tensor)",
    aten.is_nonzero.default: "reads a value (bool(tensor))",
    aten.item.default: "reads a value (.item())",
    aten.equal.default: "returns a Python bool",
    aten.allclose.default: "returns a Python bool",
    aten._linalg_check_errors.default: "reads the error codes of a torch.linalg op",
    aten.nonzero.default: "output shape depends on the values",
    aten.nonzero_numpy.default: "output shape depends on the values (torch.where(cond))",
    aten.argwhere.default: "output shape depends on the values",
    aten.masked_select.default: "output shape depends on the values",
    aten._unique.default: "output shape depends on the values",
    aten._unique2.default: "output shape depends on the values",
    aten.unique_dim.default: "output shape depends on the values",
    aten.unique_consecutive.default: "output shape depends on the values",
    aten.bincount.default: "reads the input's min() and max() on CUDA to size the output",
}
_INDEX = {
    aten.index.Tensor,
    aten.index.Tensor_hacked_twin,
    aten.index_put.default,
    aten.index_put.hacked_twin,
    aten.index_put_.default,
    aten.index_put_.hacked_twin,
    aten._index_put_impl_.default,
    aten._index_put_impl_.hacked_twin,
}
_REPEAT_INTERLEAVE = {aten.repeat_interleave.Tensor, aten.repeat_interleave.self_Tensor}

# Host reads that happen on a CPU only, with the reason they do not on a GPU: (file suffix, function).
CPU_ONLY = {
    # torchmetrics checks "are these logits?" with a host read on CPU tensors and with torch.where on a device.
    ("torchmetrics/utilities/compute.py", "normalize_logits_if_needed"),
    # The DataLoader draws each epoch's base seed from its CPU generator (a CPU tensor on any machine).
    ("torch/utils/data/dataloader.py", "__init__"),
}


def arguments(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """An op's arguments by name, defaults filled in."""
    out: dict[str, Any] = {}
    positional = list(args)
    for arg in func._schema.arguments:
        if positional and not arg.kwarg_only:
            out[arg.name] = positional.pop(0)
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        else:
            out[arg.name] = arg.default_value if arg.has_default_value() else None
    return out


def host_read(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why ``func(*args, **kwargs)`` would make the host wait for a GPU, or ``None`` if it would not."""
    reason = ALWAYS.get(func)
    if reason is not None:
        return reason
    if func in _INDEX:
        masks = (i for i in args[1] if isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8))
        return "boolean-mask indexing (a hidden nonzero)" if any(True for _ in masks) else None
    if func in _REPEAT_INTERLEAVE:
        return None if arguments(func, args, kwargs)["output_size"] is not None else "repeat_interleave sizes itself"
    if func is aten.histc.default:
        bounds = arguments(func, args, kwargs)
        return "histc without a range reads min() and max()" if bounds["min"] == bounds["max"] else None
    return None


def _cpu_only() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if any(code.co_filename.endswith(path) and code.co_name == name for path, name in CPU_ONLY):
            return True
        frame = frame.f_back
    return False


class HostReads(TorchDispatchMode):
    """Records ``(epoch, batch_idx, op, tag)`` of every host read while active (``tag``: set by the caller)."""

    def __init__(self) -> None:
        super().__init__()
        self.where = (0, 0)
        self.tag: str | None = None
        self.seen: list[tuple[int, int, str, str | None]] = []
        self.cpu_only: list[tuple[int, int, str, str | None]] = []  # see CPU_ONLY
        self.active = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if host_read(func, args, kwargs) is not None:
            (self.cpu_only if _cpu_only() else self.seen).append((*self.where, str(func), self.tag))
        return func(*args, **kwargs)


class Probe(L.Callback):
    """Turns :class:`HostReads` on for each training epoch and, separately, for each validation step.

    Training: from the epoch's start to its validation, counting batches. Validation: the step itself (model
    forward, probabilities, metrics, buffers).
    """

    def __init__(self, cuda_sync_errors: bool = False) -> None:
        self.mode = HostReads()
        self.val_mode = HostReads()
        self.batches: list[int] = []
        self.val_batches = 0
        self.cuda_sync_errors = cuda_sync_errors
        self.cuda_checked_batches = 0

    def per_step(self) -> list[tuple[int, int, str, str | None]]:
        """Host reads inside training steps (after the first batch of an epoch has begun)."""
        return [read for read in self.mode.seen if read[1] > 0]

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.val_mode.where = (trainer.current_epoch, self.val_batches)
        self.val_mode.__enter__()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.val_mode.__exit__(None, None, None)
        self.val_batches += 1

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.mode.where = (trainer.current_epoch, 0)
        self.batches.append(0)
        self.mode.__enter__()
        self.mode.active = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.batches[-1] += 1
        self.mode.where = (trainer.current_epoch, self.batches[-1])
        if not self.cuda_sync_errors:
            return
        # CUDA's own check, for what the dispatch probe cannot see (a blocking host-to-device copy waits for the
        # GPU too): any implicit synchronisation in batches 1 to n-2 raises. Batch 0 checks the metrics' inputs
        # once per epoch; the last batch may be smaller, a new shape for cuDNN to autotune.
        if torch.cuda.get_sync_debug_mode():
            self.cuda_checked_batches += 1
        if batch_idx == 0 and trainer.num_training_batches > 2:
            torch.cuda.set_sync_debug_mode("error")
        elif batch_idx + 2 >= trainer.num_training_batches:
            torch.cuda.set_sync_debug_mode("default")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.cuda_sync_errors:
            torch.cuda.set_sync_debug_mode("default")  # before Lightning's teardown

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._off()  # validation (run at the end of a training epoch) reads its epoch's results, once

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._off()

    def _off(self) -> None:
        if self.mode.active:
            self.mode.__exit__(None, None, None)
            self.mode.active = False
