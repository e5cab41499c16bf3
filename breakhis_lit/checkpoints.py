"""Checkpoint files: atomic writing, finding a run's checkpoint, checking it fits, loading it safely."""

from __future__ import annotations

import os
import pickle
import shutil
import warnings
import zipfile
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
import torch.utils.serialization
from lightning.fabric.utilities.apply_func import apply_to_collection
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO
from typing_extensions import override

from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import atomic_write
from breakhis_lit.load_errors import describe_load_error, holds_objects
from breakhis_lit.rundir import BEST, CHECKPOINTS, LAST, versions

_SAFE_PREFIXES = ("breakhis_lit.", "torch.optim.", "torch.nn.", "lightning.pytorch.cli.")
"""Modules a checkpoint may name as classes to build: anything else is refused before import."""
_CALLABLE_KEYS = ("criterion", "optimizer", "lr_scheduler")
"""The classifier's callable-typed hyper-parameters: a string there is an import path too (a function)."""


class AtomicTorchCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, written atomically: a killed write leaves the previous file intact.

    A checkpoint goes to a temporary file that ``os.replace`` moves into place
    (:func:`~breakhis_lit.files.atomic_write`); :meth:`link_checkpoint` gives a file a second name without writing
    it again.

    Files are not ``fsync``-ed (like ``torch.save`` and Lightning's own writer): a killed process never leaves
    a partial file, but a power cut within seconds of a write may lose the newest one. They are written without
    zip CRC-32 checksums: ``torch.load`` never checks them, and computing them costs about 40% of a write
    (0.08 s of CPU per 130 MB); ``unzip -t`` reports such files as damaged, ``torch.load`` reads them.
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with torch.utils.serialization.config.patch({"save.compute_crc32": False}):
            atomic_write(Path(path), lambda f: torch.save(checkpoint, f), fsync=False)

    def link_checkpoint(self, source: Any, path: Any) -> None:
        """Make ``path`` name the file ``source``, atomically (a copy on a filesystem without hard links).

        ``path`` keeps its own name when ``source`` is later replaced: ``os.replace`` gives ``source`` a new file.
        """
        source, path = Path(source), Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink(missing_ok=True)
            try:
                os.link(source, tmp)  # a second name for the same bytes
            except OSError:  # a filesystem without hard links
                shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class AtomicCheckpointIO(AsyncCheckpointIO):
    """Lightning's :class:`AsyncCheckpointIO` around :class:`AtomicTorchCheckpointIO`, with host snapshots.

    ``save_checkpoint`` copies the checkpoint's tensors to host memory and returns: training may go on changing
    the originals while Lightning's writer thread writes the copy. GPU tensors are copied into pinned memory with
    ``non_blocking`` copies, so the training loop waits neither for the disk nor for the device; the writer waits
    for the copies' events. Files so hold CPU tensors, as a synchronous ``torch.save`` of the copies would.
    At most one write is pending (a save first waits for the previous one), writes and links happen in order, and
    every load and removal waits for them, as does :meth:`teardown` (end of ``fit``).

    Args:
        background: Write in the writer thread (``False``: write before returning).
    """

    def __init__(self, background: bool = True) -> None:
        super().__init__(AtomicTorchCheckpointIO())
        self.background = background
        self._pending: list[Future[None]] = []

    @property
    def _atomic(self) -> AtomicTorchCheckpointIO:
        assert isinstance(self.checkpoint_io, AtomicTorchCheckpointIO)
        return self.checkpoint_io

    # AsyncCheckpointIO clones tensors on their own device, so GPU tensors would reach the file as CUDA tensors
    # (or block the loop with a pageable copy): the snapshot below replaces its clone; its writer thread stays.
    @staticmethod
    def _snapshot(checkpoint: dict[str, Any]) -> tuple[dict[str, Any], list[torch.cuda.Event]]:
        """Host copies of the checkpoint's tensors (pinned, non-blocking for GPU tensors) and one event per device."""
        devices = set()

        def copy(tensor: torch.Tensor) -> torch.Tensor:
            tensor = tensor.detach()
            if not (tensor.is_cuda and torch.cuda.is_available()):
                return tensor.clone()
            devices.add(tensor.device)
            # Same layout as the source where it is dense; PyTorch's caching host allocator reuses pinned blocks.
            return torch.empty_like(tensor, device="cpu", pin_memory=True).copy_(tensor, non_blocking=True)

        snapshot = apply_to_collection(checkpoint, torch.Tensor, copy)
        ready = []
        for device in devices:  # the copies were queued on each device's current stream
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(device))
            ready.append(event)
        return snapshot, ready

    def _write(self, checkpoint: dict[str, Any], path: Path, ready: list[torch.cuda.Event]) -> None:
        for event in ready:
            event.synchronize()  # the non-blocking device-to-host copies of the snapshot
        self._atomic.save_checkpoint(checkpoint, path)

    def _submit(self, job: Callable[..., None], *args: Any) -> None:
        """Run ``job`` on the writer thread, after the jobs before it (or now, without ``background``)."""
        if not self.background:
            job(*args)
            return
        self._ensure_setup()
        assert self._executor is not None
        self._pending.append(self._executor.submit(job, *args))

    def _wait(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()  # re-raises a failed write

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if not self.background:
            self._atomic.save_checkpoint(checkpoint, path, storage_options)
            return
        self._wait()
        snapshot, ready = self._snapshot(checkpoint)
        self._submit(self._write, snapshot, Path(path), ready)

    def link_checkpoint(self, source: Any, path: Any) -> None:
        """Make ``path`` name the checkpoint saved as ``source`` (after its pending write), atomically."""
        self._submit(self._atomic.link_checkpoint, source, path)

    @override
    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._wait()  # AsyncCheckpointIO's own does not: a load just after a save raised FileNotFoundError
        return super().load_checkpoint(*args, **kwargs)

    @override
    def remove_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self._wait()
        super().remove_checkpoint(*args, **kwargs)

    @override
    def teardown(self) -> None:
        try:
            self._wait()
        finally:
            super().teardown()


def find_run_checkpoint(experiment_dir: Path, ckpt: str | None, default: str) -> tuple[Path, int | None]:
    """Resolve ``--ckpt_path`` for an experiment.

    Args:
        experiment_dir: ``<log_root>/<experiment>``.
        ckpt: ``None`` (use ``default``), ``"best"``, ``"last"`` or a file path.
        default: Which file ``None`` means: ``"best"`` or ``"last"``.

    Returns:
        The checkpoint file and, when it lies in ``experiment_dir/version_N/checkpoints``, that ``N`` (so the
        run writes into the same directory), else ``None``.

    Raises:
        BreakHisError: When no run has such a checkpoint, or the file does not exist.
    """
    name = ckpt or default
    if name in (BEST, LAST):
        for run in versions(experiment_dir):
            candidate = run.checkpoint(name)
            if candidate.is_file():
                return candidate, run.version
        raise BreakHisError(
            f"no run of experiment '{experiment_dir.name}' has checkpoints/{name}.ckpt under {experiment_dir}; "
            "train it first with `breakhis fit --config CONFIG` or pass --ckpt_path PATH"
        )
    path = Path(name)
    if not path.is_file():
        raise BreakHisError(f"--ckpt_path {path}: no such file; pass an existing .ckpt file, 'best' or 'last'")
    resolved = path.resolve()
    for run in versions(experiment_dir):
        if resolved.parent == (run.path / CHECKPOINTS).resolve():
            return path, run.version
    return path, None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only=True`` (plain tensors and containers only).

    Raises:
        BreakHisError: When the file is not a readable PyTorch checkpoint of a Lightning module.
    """
    path = Path(path)
    if not path.is_file():
        raise BreakHisError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        what = "is not loaded" if holds_objects(err) else "is not a readable PyTorch checkpoint"
        raise BreakHisError(
            f"{path} {what} ({describe_load_error(err)}); pass a .ckpt written by `breakhis fit` (a run's "
            "checkpoints/best.ckpt or last.ckpt)"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise BreakHisError(f"{path} is not a Lightning checkpoint (no state_dict); pass a .ckpt written by fit")
    return checkpoint


def _describe(backbone: Any) -> tuple[str, dict[str, Any]]:
    """Class path and architecture-defining init args of a backbone config (dict or Namespace)."""
    if hasattr(backbone, "as_dict"):
        backbone = backbone.as_dict()
    if not isinstance(backbone, dict):
        return type(backbone).__module__ + "." + type(backbone).__name__, {}
    init = dict(backbone.get("init_args") or {})
    keys = ("model_name", "arch", "num_classes", "gate_position", "head", "reduction", "img_size")
    return str(backbone.get("class_path", "")), {k: init[k] for k in keys if k in init}


def check_checkpoint_matches(path: str | Path, backbone_config: Any) -> None:
    """Refuse a checkpoint whose backbone differs from the one the config builds.

    Raises:
        BreakHisError: Naming both architectures.
    """
    checkpoint = read_checkpoint(path)
    check_safe_classes(checkpoint, path)
    saved = checkpoint.get("hyper_parameters", {}).get("backbone")
    if saved is None:
        return
    saved_desc, wanted_desc = _describe(saved), _describe(backbone_config)
    if saved_desc[0].rsplit(".", 1)[-1] != wanted_desc[0].rsplit(".", 1)[-1] or any(
        saved_desc[1].get(k) != v for k, v in wanted_desc[1].items() if k in saved_desc[1]
    ):
        raise BreakHisError(
            f"{path} holds a {_pretty(saved_desc)} but the config builds a {_pretty(wanted_desc)}; "
            "pass the config the checkpoint was trained with"
        )


def _pretty(desc: tuple[str, dict[str, Any]]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in desc[1].items())
    return f"{desc[0].rsplit('.', 1)[-1]}({args})"


def _class_paths(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [str(v) for k, v in value.items() if k in ("class_path", "_class_path")]
        return found + [p for v in value.values() for p in _class_paths(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _class_paths(v)]
    return []


def check_safe_classes(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose hyper-parameters name a class outside this package, ``torch.optim`` and ``torch.nn``.

    Lightning and jsonargparse import every ``class_path`` of a checkpoint's hyper-parameters to rebuild the
    model; this check runs first, so loading a checkpoint never imports (and so never executes) foreign code.

    Raises:
        BreakHisError: Naming the first such class.
    """
    hparams = checkpoint.get("hyper_parameters", {})
    paths = _class_paths(hparams)
    if isinstance(hparams, dict):
        paths += [str(v) for k, v in hparams.items() if k in _CALLABLE_KEYS and isinstance(v, str)]
    unsafe = [p for p in paths if not p.startswith(_SAFE_PREFIXES)]
    if unsafe:
        raise BreakHisError(f"{path} names class {unsafe[0]!r}, which is not loaded for safety; retrain with breakhis")


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Rebuild a :class:`~breakhis_lit.models.BreakHisClassifier` from a checkpoint written by ``breakhis fit``.

    The file is read with ``weights_only=True`` and every class it names must belong to this package or
    ``torch.optim``; nothing else is imported or executed.

    Raises:
        BreakHisError: When the file is not such a checkpoint or names a class outside that list.
    """
    from breakhis_lit.models.classifier import BreakHisClassifier

    checkpoint = read_checkpoint(path)
    check_safe_classes(checkpoint, path)
    hparams = checkpoint.get("hyper_parameters", {})
    if "backbone" not in hparams:
        raise BreakHisError(f"{path} was not written by `breakhis fit` (no backbone hyper-parameters)")
    with warnings.catch_warnings():
        # The backbone is rebuilt from its plain config; Lightning warns about the nn.Module it then receives.
        warnings.filterwarnings("ignore", message=r"Attribute 'backbone' is an instance of `nn.Module`.*")
        return BreakHisClassifier.load_from_checkpoint(path, map_location=map_location, weights_only=True)
