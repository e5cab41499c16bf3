"""No host read of device values in the training step (the issue's "no GPU synchronisation every step").

A GPU runs ahead of Python until the host needs a value: ``.item()``, ``bool(t)``, ``float(t)``, a boolean mask
index, ``nonzero``, ``unique``... Each such read waits for every queued kernel. This test runs ``breakhis fit``
on the CPU through the package's own path (CLI, DataModule with augmentation, classifier, metrics, callbacks,
checkpointing) and records every op of that kind from the start of each training epoch to its validation,
batch by batch, and in every validation step. Only the epoch's start, before its first batch, may have them
(once-per-epoch bookkeeping).

Not visible on a CPU: explicit ``.cpu()``, ``.tolist()`` and ``.numpy()`` of device tensors (no-ops on CPU
tensors, so nothing is dispatched). The default optimiser is fused AdamW only on CUDA; the unfused CPU AdamW
reads its step counters with ``.item()`` (free on the CPU), so this run uses fused AdamW, as on a GPU. On a
GPU machine (``benchmarks/gpu_check.sh``) the same test runs on CUDA, in the default bf16 precision, with
CUDA's own check (``torch.cuda.set_sync_debug_mode("error")``) on as well: it also sees blocking copies.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from breakhis_lit import cli
from breakhis_lit.cli import main

aten = torch.ops.aten

# Ops whose result the host must wait for on a GPU: reading a value, or an output whose shape depends on values.
HOST_READS = {
    aten._local_scalar_dense.default,  # .item(), bool(), int(), float(), if tensor: ...
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
    aten.equal.default,
}


# Host reads that happen on a CPU only, with the reason they do not on a GPU: (file suffix, function).
CPU_ONLY = {
    # torchmetrics checks "are these logits?" with a host read on CPU tensors and with torch.where on a device.
    ("torchmetrics/utilities/compute.py", "normalize_logits_if_needed"),
    # The DataLoader draws each epoch's base seed from its CPU generator (a CPU tensor on any machine).
    ("torch/utils/data/dataloader.py", "__init__"),
}


def _cpu_only() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if any(code.co_filename.endswith(path) and code.co_name == name for path, name in CPU_ONLY):
            return True
        frame = frame.f_back
    return False


def _bool_index(func: Any, args: tuple[Any, ...]) -> bool:
    """``x[mask]`` / ``x[mask] = v`` with a boolean mask: a hidden ``nonzero`` on a GPU."""
    if func not in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)


class HostReads(TorchDispatchMode):
    """Records ``(epoch, batch_idx, op)`` of every host read while active."""

    def __init__(self) -> None:
        super().__init__()
        self.where = (0, 0)
        self.seen: list[tuple[int, int, str]] = []
        self.cpu_only: list[tuple[int, int, str]] = []  # see CPU_ONLY
        self.active = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        if func in HOST_READS or _bool_index(func, args):
            (self.cpu_only if _cpu_only() else self.seen).append((*self.where, str(func)))
        return func(*args, **(kwargs or {}))


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


@pytest.mark.parametrize(
    "accelerator",
    [
        "cpu",
        pytest.param(
            "gpu",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
            ],
        ),
    ],
)
def test_training_steps_read_nothing_from_the_device(
    accelerator: str, demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Probe(cuda_sync_errors=accelerator == "gpu")
    original = cli.BreakHisCLI.instantiate_trainer

    def with_probe(self: cli.BreakHisCLI, **kwargs: Any) -> L.Trainer:
        trainer = original(self, **kwargs)
        # First, so it is on for every other callback's batch hooks.
        trainer.callbacks.insert(0, probe)
        return trainer

    monkeypatch.setattr(cli.BreakHisCLI, "instantiate_trainer", with_probe)
    args = [
        "fit", "--config", "configs/demo.yaml",
        "--data.root", str(demo_root), "--data.cache_dir", str(tmp_path / "cache"),
        "--log_root", str(tmp_path / "logs"),
        "--data.magnification", "40", "--data.image_size", "32", "--data.batch_size", "16",
        "--data.eval_batch_size", "8",
        "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "true", "--trainer.accelerator", accelerator, "--trainer.devices", "1",
        "--model.optimizer", '{"class_path": "torch.optim.AdamW", "init_args": {"lr": 5e-4, "fused": true}}',
    ]  # fmt: skip
    try:
        main(args)
    finally:
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")
    assert len(probe.batches) == 2, probe.batches
    assert min(probe.batches) >= 4, probe.batches  # several steps per epoch to look at
    per_step = [(epoch, batch, op) for epoch, batch, op in probe.mode.seen if batch > 0]
    assert per_step == [], per_step
    assert probe.val_batches >= 6, probe.val_batches  # sanity check + two validations of several batches
    assert probe.val_mode.seen == [], probe.val_mode.seen
    # The probe does see host reads: at the start of epoch 1 (before its first batch) the history callback
    # writes epoch 0's row from the logged metrics, and the CPU-only ones come in every step.
    assert {(epoch, batch) for epoch, batch, _ in probe.mode.seen} == {(1, 0)}, probe.mode.seen
    if accelerator == "cpu":
        assert len(probe.mode.cpu_only) >= sum(probe.batches)
    else:
        assert probe.cuda_checked_batches >= 2 * (min(probe.batches) - 2), probe.cuda_checked_batches


def test_probe_catches_a_host_read_in_a_step() -> None:
    mode = HostReads()
    x = torch.randn(8)
    with mode:
        _ = x[x > 0]  # boolean mask
        if (x.sum() > 0).item():  # value read
            pass
        torch.nonzero(x)
    assert [op for *_, op in mode.seen] == [
        "aten.index.Tensor",
        "aten._local_scalar_dense.default",
        "aten.nonzero.default",
    ]
