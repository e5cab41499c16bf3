"""No host read of device values in a training or validation step (no GPU synchronisation every step).

The probe (``tests/host_reads.py``) records every op after which a GPU run's host would wait for the device.
This test runs ``breakhis fit`` on the CPU through the package's own path (CLI, DataModule with augmentation,
classifier, metrics, callbacks, checkpointing) and records those ops from the start of each training epoch to its
validation, batch by batch, and in every validation step. Only the epoch's start, before its first batch, may
have them (once-per-epoch bookkeeping). A second test puts each kind of host read into the steps and sees the
probe report it.

The default optimiser is fused AdamW only on CUDA; the unfused CPU AdamW reads its step counters with ``.item()``
(free on the CPU), so this run uses fused AdamW, as on a GPU. On a GPU machine (``benchmarks/gpu_check.sh``) the
same test runs on CUDA, in the default bf16 precision, with CUDA's own check
(``torch.cuda.set_sync_debug_mode("error")``) on as well: it also sees blocking copies.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from breakhis_lit import cli
from breakhis_lit.cli import main
from breakhis_lit.models import BreakHisClassifier

from host_reads import HostReads, Probe


def _fit(
    probe: Probe, accelerator: str, root: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch, epochs: int = 2
) -> None:
    original = cli.BreakHisCLI.instantiate_trainer

    def with_probe(self: cli.BreakHisCLI, **kwargs: Any) -> L.Trainer:
        trainer = original(self, **kwargs)
        # First, so it is on for every other callback's batch hooks.
        trainer.callbacks.insert(0, probe)
        return trainer

    monkeypatch.setattr(cli.BreakHisCLI, "instantiate_trainer", with_probe)
    args = [
        "fit", "--config", "configs/demo.yaml",
        "--data.root", str(root), "--data.cache_dir", str(tmp / "cache"),
        "--log_root", str(tmp / "logs"),
        "--data.magnification", "40", "--data.image_size", "32", "--data.batch_size", "16",
        "--data.eval_batch_size", "8",
        "--trainer.max_epochs", str(epochs), "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "true", "--trainer.accelerator", accelerator, "--trainer.devices", "1",
        "--model.optimizer", '{"class_path": "torch.optim.AdamW", "init_args": {"fused": true}}',
    ]  # fmt: skip
    try:
        main(args)
    finally:
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")


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
    _fit(probe, accelerator, demo_root, tmp_path, monkeypatch)
    assert len(probe.batches) == 2, probe.batches
    assert min(probe.batches) >= 4, probe.batches  # several steps per epoch to look at
    assert probe.per_step() == [], probe.per_step()
    assert probe.val_batches >= 6, probe.val_batches  # sanity check + two validations of several batches
    assert probe.val_mode.seen == [], probe.val_mode.seen
    # The probe does see host reads: at the start of epoch 1 (before its first batch) the history callback
    # writes epoch 0's row from the logged metrics, and the CPU-only ones of torchmetrics in validation steps.
    assert {(epoch, batch) for epoch, batch, *_ in probe.mode.seen} == {(1, 0)}, probe.mode.seen
    if accelerator == "cpu":
        assert len(probe.val_mode.cpu_only) >= probe.val_batches
    else:
        assert probe.cuda_checked_batches >= 2 * (min(probe.batches) - 2), probe.cuda_checked_batches


def _bool_index_put(t: Tensor) -> None:
    t.clone()[t > 0] = 0


#: One of each kind of host read, applied to a step's logits.
INJECTIONS: dict[str, Callable[[Tensor], object]] = {
    ".item()": lambda t: t.sum().item(),
    "bool(tensor)": lambda t: bool(t.sum() > 0),
    "float(tensor)": lambda t: float(t.sum()),
    "if tensor": lambda t: 1 if t.sum() > 0 else 0,
    "nonzero": lambda t: torch.nonzero(t > 0),
    "where(cond)": lambda t: torch.where(t > 0),
    "argwhere": lambda t: torch.argwhere(t > 0),
    "masked_select": lambda t: t.masked_select(t > 0),
    "boolean-mask index": lambda t: t[t > 0],
    "boolean-mask index_put": _bool_index_put,
    "unique": lambda t: torch.unique(t),
    "unique(dim)": lambda t: torch.unique(t, dim=0),
    "unique_consecutive": lambda t: torch.unique_consecutive(t),
    "bincount": lambda t: torch.bincount(t.argmax(1)),
    "histc": lambda t: torch.histc(t),
    "repeat_interleave": lambda t: torch.repeat_interleave(t.argmax(1)),
    "repeat_interleave(tensor repeats)": lambda t: t.repeat_interleave(t.argmax(1) + 1, dim=0),
    "equal": lambda t: torch.equal(t, t),
    "allclose": lambda t: torch.allclose(t, t),
    "linalg.inv": lambda t: torch.linalg.inv(t.new_ones(2).diag()),
    "one_hot without num_classes": lambda t: F.one_hot(t.argmax(1)),
}
#: The same ops without a host read: the probe stays silent.
QUIET: dict[str, Callable[[Tensor], object]] = {
    "where(cond, a, b)": lambda t: torch.where(t > 0, t, 0),
    "histc with a range": lambda t: torch.histc(t, bins=4, min=-1, max=1),
    "repeat_interleave with output_size": lambda t: torch.repeat_interleave(
        torch.ones_like(t.argmax(1)), output_size=t.shape[0]
    ),
    "repeat_interleave(int)": lambda t: t.repeat_interleave(2, dim=0),
    "integer index": lambda t: t[t.argmax(1)],
    "scatter_add_": lambda t: t.new_zeros(4).scatter_add_(0, t.argmax(1), t[:, 0]),
}
# Not in QUIET: one_hot with num_classes, which reads the minimum on a CPU (a check CUDA leaves to the kernel).


@pytest.mark.parametrize("name", INJECTIONS)
def test_probe_sees_each_kind_of_host_read(name: str) -> None:
    mode = HostReads()
    logits = torch.randn(8, 2)
    with mode:
        INJECTIONS[name](logits)
    assert mode.seen, name


@pytest.mark.parametrize("name", QUIET)
def test_probe_is_silent_without_a_host_read(name: str) -> None:
    mode = HostReads()
    with mode:
        QUIET[name](torch.randn(8, 2))
    assert mode.seen == [], mode.seen


def test_host_reads_put_into_the_steps_fail_the_test(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind of host read, put into the training and the validation step, is reported by the probe."""
    probe = Probe()
    original = BreakHisClassifier._step

    def step_with_reads(self: BreakHisClassifier, batch: dict[str, Tensor], stage: str) -> Tensor:
        loss = original(self, batch, stage)
        mode = probe.mode if stage == "train" else probe.val_mode
        values = batch["image"].detach().mean((2, 3))[:, :2]  # [B, 2] floats on the step's device
        for name, inject in INJECTIONS.items():
            mode.tag = name
            inject(values)
        mode.tag = None
        return loss

    monkeypatch.setattr(BreakHisClassifier, "_step", step_with_reads)
    _fit(probe, "cpu", demo_root, tmp_path, monkeypatch, epochs=1)
    for seen in (probe.per_step(), probe.val_mode.seen):
        assert {tag for *_, tag in seen} == set(INJECTIONS)
