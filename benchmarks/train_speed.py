"""Training-speed benchmark: a hand-written PyTorch loop against the package's own `breakhis fit` path.

Both run in one process on the same synthetic BreakHis-shaped tree of PNG files (one magnification, 40X):

(a) ``reference``: the images are decoded once (untimed), kept as uint8 tensors on the device, and a minimal
    loop trains the same model (DALA-ResNet50, random init) with AdamW lr 1e-4 (fused on CUDA), bf16 autocast
    on CUDA (fp32 on a CPU), channels_last, batch 32, random flips on the device, and a validation pass per
    epoch, exactly like ``protocol()`` of ``../shared/reference/gpu_anchor.py``; train/val sizes are those of
    the package's patient split of the tree.
(b) ``pipeline``: ``breakhis fit --config configs/attn.yaml`` in-process (its DataModule, LightningModule,
    callbacks and Trainer configuration), timed from the call to its return, first with an empty image
    cache (``pipeline_cold_s``: PNG decoding included), then again with the cache built (``pipeline_warm_s``).

It also measures training throughput at batch 256 (bf16, channels_last) with and without ``torch.compile``,
inference throughput at batch 256, the single-core PNG decode+resize rate, the package's cache build rate on
all cores and the load time of a warm cache. The last line printed is one JSON object (``--out`` writes it too).

Usage::

    python benchmarks/train_speed.py --quick            # CPU smoke run: small images, ResNet18 trunk, 3 epochs
    python benchmarks/train_speed.py --out speed.json   # full run (GPU): 700x460 PNGs, 224 px, 50 epochs
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import gc
import io
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
SUBTYPES_BENIGN = ("A", "F", "PT", "TA")
SUBTYPES_MALIGNANT = ("DC", "LC", "MC", "PC")

#: (patients per subtype, images per patient cycle) of the trees. Full: 4 x 6 x 26 = 624 benign and
#: 4 x 14 x 24.5 = 1,372 malignant images, 80 patients: BreakHis 40X has 625 + 1,370 images of 82 patients.
TREES = {
    "full": {"benign": (6, (26,)), "malignant": (14, (24, 25)), "png": (700, 460), "image_size": 224},
    "quick": {"benign": (2, (6,)), "malignant": (4, (6,)), "png": (96, 64), "image_size": 64},
}
MAGNIFICATION = 40

TARGETS = {
    "ratio_le_1.3": "pipeline_s / reference_s <= 1.3 (full run, one H200)",
    "train_compile_ge_6000": "train_img_s_bs256_compile >= 6000 (bf16, one H200)",
    "infer_ge_12000": "infer_img_s_bs256 >= 12000 (bf16, one H200)",
    "decode_all_cores_ge_half_linear": "decode_img_s_all_cores >= cpu_count / 2 * decode_img_s_1core (full tree)",
    "warm_cache_load_le_1s": "warm_cache_load_s <= 1 (full tree)",
    "quick_ratio_le_1.5": "ratio <= 1.5 (--quick on a 2-core CPU)",
    "ops_ratio_le_1.15": "ops_per_step_pipeline <= 1.15 * ops_per_step_reference (CPU count, same model)",
}


def log(message: str) -> None:
    """Print a progress line (flushed, prefixed so it never looks like the final JSON)."""
    print(f"[train_speed] {message}", flush=True)


@contextlib.contextmanager
def timed(device: torch.device) -> Iterator[list[float]]:
    """Time a block; the CUDA device is synchronised before both clock reads. Yields ``[seconds]``."""
    out: list[float] = []
    sync(device)
    start = time.perf_counter()
    yield out
    sync(device)
    out.append(time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpus_available() -> int:
    """CPU cores this process may run on (what the package's cache builder uses)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    """1, 5 and 15-minute load averages (other processes on the machine make CPU timings noisy)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------------------- synthetic data
def plan_tree(mode: str) -> list[tuple[str, int]]:
    """Relative paths (official form) and per-image seeds of a BreakHis-shaped tree at 40X."""
    from breakhis_lit.data.naming import image_path

    spec = TREES[mode]
    plan: list[tuple[str, int]] = []
    for s, code in enumerate(SUBTYPES_BENIGN + SUBTYPES_MALIGNANT):
        n_patients, cycle = spec["benign" if code in SUBTYPES_BENIGN else "malignant"]
        for p in range(n_patients):
            patient = f"{14 + p % 2}-{10000 + 100 * s + p}"
            for i in range(cycle[p % len(cycle)]):
                plan.append((image_path(code, patient, MAGNIFICATION, i + 1), len(plan)))
    return plan


def _write_png(task: tuple[str, int, int, int]) -> int:
    """Write one noisy histology-sized PNG (like ``gpu_anchor.png_bytes``: ~700 KB at 700x460); returns bytes."""
    path, seed, width, height = task
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 255, (max(2, height // 20), max(2, width // 20), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG")
    Path(path).write_bytes(buf.getvalue())
    return buf.tell()


def write_tree(root: Path, mode: str, workers: int) -> tuple[Path, list[Path], float]:
    """Write the synthetic tree below ``root`` in parallel; returns the data root, the files and their mean KB."""
    width, height = TREES[mode]["png"]
    plan = plan_tree(mode)
    files = [root / rel for rel, _ in plan]
    for folder in {f.parent for f in files}:
        folder.mkdir(parents=True, exist_ok=True)
    tasks = [(str(f), seed, width, height) for f, (_, seed) in zip(files, plan, strict=True)]
    if workers > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(workers) as pool:
            sizes = pool.map(_write_png, tasks, chunksize=8)
    else:
        sizes = [_write_png(t) for t in tasks]
    return root / "BreaKHis_v1", files, float(np.mean(sizes)) / 1024


# ------------------------------------------------------------------------------------------- decoding
def decode_1core(files: list[Path], size: int) -> float:
    """Decode + resize rate of the package's decoder in this process (one core), img/s."""
    from breakhis_lit.data.cache import decode_image

    decode_image(files[0], size)  # import/warm-up
    start = time.perf_counter()
    for f in files:
        decode_image(f, size)
    return len(files) / (time.perf_counter() - start)


def split_files(root: Path, size: int) -> list[tuple[str, Path]]:
    """The ``(relative path, file)`` list the DataModule caches for this tree (its defaults, 40X)."""
    from breakhis_lit.data.index import scan
    from breakhis_lit.data.splits import make_split

    index = scan(root)
    rows = make_split(index.images, "patient", magnification=MAGNIFICATION, group_by="accession",
                      ratios=(0.6, 0.1, 0.3), seed=0)  # fmt: skip
    return [(r.path, index.abspath(r.path)) for r in rows]


# ---------------------------------------------------------------------------------------------- models
def build_model(quick: bool) -> nn.Module:
    """The benchmarked network: DALA-ResNet50 (full) or the ResNet18-trunk DALA-ResNet (``--quick``)."""
    from breakhis_lit.models import DALAResNet, DALAResNet50

    if quick:
        return DALAResNet(arch="resnet18", num_classes=2, pretrained=False, dropout=0.25, reduction=4)
    return DALAResNet50(num_classes=2, pretrained=False, dropout=0.25, reduction=4)


def hand_loop(
    build: Callable[[], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor],
    val: torch.Tensor,
    epochs: int,
    device: torch.device,
    batch_size: int = 32,
    eval_batch_size: int = 256,
    fused: bool | None = None,
    on_step: Callable[[], None] | None = None,
) -> float:
    """The paper protocol as a minimal loop (``gpu_anchor.protocol``); returns its wall time in seconds.

    Args:
        build: Model factory (called after seeding).
        train: uint8 images ``[N, 3, S, S]`` and int64 labels ``[N]``, on ``device``.
        val: uint8 validation images on ``device``.
        epochs: Epochs.
        device: Device.
        batch_size: Training batch size.
        eval_batch_size: Validation batch size.
        fused: Fused AdamW (default: on CUDA only, as the pipeline's default optimiser).
        on_step: Called after every training step (the op counter's marks).
    """
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, fused=cuda if fused is None else fused)
    x_train, y_train = train
    n_train, n_val = len(x_train), len(val)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255

    def prep(u: torch.Tensor) -> torch.Tensor:
        return ((u.float() - mean) / std).contiguous(memory_format=torch.channels_last)

    with timed(device) as seconds:
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(n_train, device=device)
            for i in range(0, n_train, batch_size):
                idx = perm[i : i + batch_size]
                u = x_train[idx]
                flip = torch.rand(len(idx), device=device) < 0.5
                u = torch.where(flip.view(-1, 1, 1, 1), u.flip(3), u)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    loss = F.cross_entropy(model(prep(u)), y_train[idx])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if on_step is not None:
                    on_step()
            model.eval()
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                for i in range(0, n_val, eval_batch_size):
                    model(prep(val[i : i + eval_batch_size]))
    return seconds[0]


def train_rate(
    build: Callable[[], nn.Module],
    device: torch.device,
    batch: int,
    size: int,
    steps: int,
    warmup: int,
    compile: bool = False,
) -> tuple[float, float]:
    """Training img/s on random inputs (bf16 autocast on CUDA, channels_last); returns ``(img/s, warm-up s)``."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=device)
    net = torch.compile(model) if compile else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with timed(device) as warm:
        for _ in range(warmup):
            step()
    with timed(device) as run:
        for _ in range(steps):
            step()
    return batch * steps / run[0], warm[0]


def infer_rate(
    build: Callable[[], nn.Module], device: torch.device, batch: int, size: int, steps: int, warmup: int
) -> float:
    """Inference img/s on random inputs (bf16 autocast on CUDA, fp32 on a CPU, channels_last)."""
    cuda = device.type == "cuda"
    model = build().to(device).eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        for _ in range(warmup):
            model(x)
        with timed(device) as run:
            for _ in range(steps):
                model(x)
    return batch * steps / run[0]


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -------------------------------------------------------------------------------------------- pipeline
def pipeline_args(
    config: Path,
    root: Path,
    cache_dir: Path,
    log_root: Path,
    experiment: str,
    epochs: int,
    quick: bool,
    image_size: int,
) -> list[str]:
    """Arguments of ``breakhis fit`` for one pipeline run (the config's settings, random init)."""
    args = [
        "fit", "--config", str(config),
        "--model.backbone.init_args.pretrained", "false",
        "--data.root", str(root),
        "--data.cache_dir", str(cache_dir),
        "--log_root", str(log_root),
        "--experiment", experiment,
        "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false",
        "--data.image_size", str(image_size),  # the reference's size (the config's 224 in a full run)
    ]  # fmt: skip
    if quick:
        args += [
            "--model.backbone.class_path", "breakhis_lit.models.DALAResNet",
            "--model.backbone.init_args.arch", "resnet18",
        ]  # fmt: skip
    return args


def run_pipeline(args: list[str], device: torch.device) -> float:
    """Run ``breakhis fit`` in this process; returns its wall time (raises on failure)."""
    from breakhis_lit.cli import main

    log("breakhis " + " ".join(args))
    argv = sys.argv
    sys.argv = argv[:1]  # LightningCLI warns when sys.argv holds this script's own options
    try:
        with timed(device) as seconds:
            main(args)
    except SystemExit as err:
        if err.code not in (0, None):
            raise RuntimeError(f"breakhis fit exited with code {err.code}") from err
        raise RuntimeError("breakhis fit exited before training") from err
    finally:
        sys.argv = argv
    free_memory(device)
    return seconds[0]


class OpCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched in this thread while active, in windows closed by :meth:`mark`.

    Each op is one or more kernel launches on a GPU, so ops per training step stand in for launch overhead on
    a CPU. Counted on the CPU: the autograd engine runs a CUDA backward in its own threads, which a dispatch
    mode (thread-local) does not see.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.windows: list[int] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))

    def mark(self) -> None:
        """Close the current window (one training step)."""
        self.windows.append(self.count)
        self.count = 0

    def per_step(self) -> int | None:
        """Median ops of the windows between the epoch's first and last step (those hold per-epoch work)."""
        inner = self.windows[1:-1]
        return int(np.median(inner)) if inner else None


@contextlib.contextmanager
def counting_pipeline(counter: OpCounter) -> Iterator[None]:
    """Count ops in every training step of ``breakhis fit`` (from one step's end to the next's, data included)."""
    import lightning as L

    from breakhis_lit import cli

    class Marks(L.Callback):
        def __init__(self) -> None:
            self.active = False

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            counter.__enter__()
            counter.count, self.active = 0, True

        def on_train_batch_end(self, *args: Any) -> None:
            counter.mark()

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            self.off()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.off()

        def off(self) -> None:
            if self.active:
                counter.__exit__(None, None, None)
                self.active = False

    original = cli.BreakHisCLI.instantiate_trainer

    def with_marks(self: Any, **kwargs: Any) -> Any:
        trainer = original(self, **kwargs)
        trainer.callbacks.insert(0, Marks())  # first: its marks enclose every other callback's batch hooks
        return trainer

    cli.BreakHisCLI.instantiate_trainer = with_marks
    try:
        yield
    finally:
        cli.BreakHisCLI.instantiate_trainer = original


def checkpoint_save_time(
    build: Callable[[], nn.Module], device: torch.device, path: Path
) -> tuple[float, float, float]:
    """Time one checkpoint write as the pipeline does it (model + AdamW state, ``AtomicCheckpointIO``).

    Returns:
        Seconds the caller is blocked (the training loop's cost; less than the total when the plugin writes in
        the background), seconds until the file is complete, and megabytes of the file.
    """
    from breakhis_lit.checkpoints import AtomicCheckpointIO

    model = build().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # creates the two moment buffers per parameter
    state = {"state_dict": model.state_dict(), "optimizer_states": [opt.state_dict()]}
    io_ = AtomicCheckpointIO()
    sync(device)
    start = time.perf_counter()
    io_.save_checkpoint(state, path)
    blocking = time.perf_counter() - start
    io_.teardown()  # waits for a background write
    total = time.perf_counter() - start
    megabytes = path.stat().st_size / 2**20
    path.unlink()
    del model, opt, state
    free_memory(device)
    return blocking, total, megabytes


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Fit loop time and last-epoch training throughput written by the pipeline run."""
    out: dict[str, Any] = {"fit_time_s": None, "train_img_s_last_epoch": None}
    with contextlib.suppress(OSError, ValueError, KeyError):
        out["fit_time_s"] = round(float(json.loads((run_dir / "fit.json").read_text())["fit_time_s"]), 2)
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
        rows = list(csv.DictReader((run_dir / "history.csv").open()))
        value = rows[-1].get("train/throughput_img_s")
        out["train_img_s_last_epoch"] = round(float(value), 1) if value else None
    return out


# ------------------------------------------------------------------------------------------------ main
def versions() -> dict[str, str | None]:
    import lightning
    import PIL
    import torchvision

    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
    }
    try:
        import timm

        out["timm"] = timm.__version__
    except ImportError:  # pragma: no cover
        out["timm"] = None
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def checks(res: dict[str, Any]) -> dict[str, bool | None]:
    """The benchmark's targets, ``None`` where this run cannot tell (wrong mode or device, value missing)."""

    def test(ok: Callable[[], bool], applies: bool) -> bool | None:
        try:
            return bool(ok()) if applies else None
        except TypeError:  # a value is None
            return None

    full, gpu = not res["quick"], res["device"] != "cpu"
    return {
        "ratio_le_1.3": test(lambda: res["ratio"] <= 1.3, full and gpu),
        "train_compile_ge_6000": test(lambda: res["train_img_s_bs256_compile"] >= 6000, full and gpu),
        "infer_ge_12000": test(lambda: res["infer_img_s_bs256"] >= 12000, full and gpu),
        "decode_all_cores_ge_half_linear": test(
            lambda: res["decode_img_s_all_cores"] >= res["cpu_count"] / 2 * res["decode_img_s_1core"], full
        ),
        "warm_cache_load_le_1s": test(lambda: res["warm_cache_load_s"] <= 1.0, full),
        "quick_ratio_le_1.5": test(lambda: res["ratio"] <= 1.5, res["quick"]),
        "ops_ratio_le_1.15": test(lambda: res["ops_ratio"] <= 1.15, True),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CPU smoke run: 96x64 PNGs (144), 64 px, ResNet18 trunk, 3 epochs, small batches",
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs of (a) and (b) (default 50; --quick 3)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "attn.yaml", help="pipeline config")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile throughput (~1 min)")
    parser.add_argument(
        "--data-only", action="store_true", help="only the PNG tree, decode rates and warm cache load (no training)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="time (a), (b) cold and (b) warm this many times, report the minimum"
    )
    parser.add_argument(
        "--ops-only", action="store_true", help="only count the ops per training step of both paths (CPU, seconds)"
    )
    parser.add_argument("--no-ops", action="store_true", help="skip counting the ops per training step")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the PNGs, caches and runs here")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result to this file")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads for both paths (default: torch's, all cores)"
    )
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


@dataclass
class Run:
    """What the phases of one benchmark run share."""

    args: argparse.Namespace
    device: torch.device
    work: Path
    res: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def quick(self) -> bool:
        """``--quick``: small images and the ResNet18 trunk."""
        return bool(self.args.quick)

    @property
    def cuda(self) -> bool:
        """Whether the run is on a CUDA device."""
        return self.device.type == "cuda"

    def build(self) -> nn.Module:
        """A fresh, randomly initialised benchmark model."""
        return build_model(self.quick)

    def result(self) -> dict[str, Any]:
        """The result so far, with the checks, notes and errors."""
        return {**self.res, "loadavg_end": loadavg(), "checks": checks(self.res), "targets": TARGETS,
                "notes": self.notes, "errors": self.errors}  # fmt: skip

    def save(self, result: dict[str, Any] | None = None) -> None:
        """Write the result so far to ``--out`` (a run killed by a time limit still leaves its numbers)."""
        if self.args.out is not None:
            self.args.out.parent.mkdir(parents=True, exist_ok=True)
            self.args.out.write_text(json.dumps(result or self.result(), indent=1) + "\n")


def measure_data(run: Run) -> tuple[Path, Path]:
    """Write the PNG tree; time decoding on one core, the cache build on all cores and a warm cache load.

    Returns:
        The data root and the (built) reference cache folder.
    """
    res, quick, size = run.res, run.quick, run.res["image_size"]
    cores = res["cpu_count"]
    t0 = time.perf_counter()
    root, pngs, kb = write_tree(run.work / "data", "quick" if quick else "full", cores)
    res.update(n_images=len(pngs), png_kb_mean=rnd(kb, 1), data_generation_s=rnd(time.perf_counter() - t0))
    log(f"wrote {len(pngs)} PNGs ({kb:.0f} KB each) in {res['data_generation_s']} s")

    from breakhis_lit.data.cache import load_or_build

    res["decode_img_s_1core"] = rnd(decode_1core(pngs[: 144 if quick else 64], size), 1)
    files = split_files(root, size)
    cache = run.work / "cache-reference"
    t0 = time.perf_counter()
    built = load_or_build(files, size, cache, progress=False)
    seconds = time.perf_counter() - t0
    if not built.built:
        raise RuntimeError(f"{cache}: a fresh cache folder already held this cache")
    res["decode_img_s_all_cores"] = rnd(len(files) / seconds, 1)
    res["cache_build_s"] = rnd(seconds)
    res["decode_parallel_efficiency"] = rnd(res["decode_img_s_all_cores"] / (cores * res["decode_img_s_1core"]), 3)
    t0 = time.perf_counter()
    warm = load_or_build(files, size, cache, progress=False)
    res["warm_cache_load_s"] = rnd(time.perf_counter() - t0, 3)
    if warm.built:
        raise RuntimeError(f"{cache}: the warm cache load decoded the images again")
    res["cache_mb"] = rnd(warm.images.nbytes / 2**20, 1)
    run.save()
    log(
        f"decode: {res['decode_img_s_1core']} img/s on one core, {res['decode_img_s_all_cores']} img/s on "
        f"{cores} cores ({len(files)} images in {res['cache_build_s']} s); warm cache load "
        f"{res['warm_cache_load_s']} s ({res['cache_mb']} MB)"
    )
    return root, cache


def measure_training(run: Run, root: Path, cache: Path) -> None:
    """Time (a) the hand loop and (b) ``breakhis fit`` (cold, then warm cache), interleaved ``--repeat`` times."""
    from breakhis_lit.data import BreakHisDataModule

    res, device, epochs, size = run.res, run.device, run.res["epochs"], run.res["image_size"]
    dm = BreakHisDataModule(root=str(root), magnification=MAGNIFICATION, image_size=size, cache_dir=str(cache), seed=0)
    t0 = time.perf_counter()
    dm.setup("fit")
    res["datamodule_setup_warm_s"] = rnd(time.perf_counter() - t0, 3)
    tr, va = dm.dataset("train"), dm.dataset("val")
    x_train, y_train, x_val = tr.images[tr.rows].to(device), tr.labels.to(device), va.images[va.rows].to(device)
    res["n_train"], res["n_val"] = len(x_train), len(x_val)
    del dm, tr, va
    log(f"split: {res['n_train']} train, {res['n_val']} val images; hand loop warm-up")

    # Warm-up (untimed): CUDA context, cuDNN autotuning of every batch shape (both paths profit), oneDNN.
    n_warm = len(x_train) if run.cuda else 64
    hand_loop(run.build, (x_train[:n_warm], y_train[:n_warm]), x_val, 1, device)
    blocking, total, megabytes = checkpoint_save_time(run.build, device, run.work / "probe.ckpt")
    res["checkpoint_save_blocking_s"], res["checkpoint_save_s"] = rnd(blocking, 3), rnd(total, 3)
    res["checkpoint_mb"] = rnd(megabytes, 1)
    log(f"one checkpoint write (model + AdamW state, {megabytes:.0f} MB): {total:.3f} s, {blocking:.3f} s blocking")

    # The package's command line, imported once before timing (a process-level cost, not part of fit).
    t0 = time.perf_counter()
    import breakhis_lit.lightning_cli  # noqa: F401  (the Lightning verbs; breakhis_lit.cli imports no torch)

    res["pipeline_import_s"] = rnd(time.perf_counter() - t0)

    # The hand loop, then breakhis fit with an empty image cache, then again with that cache built; with
    # --repeat the minimum of each is reported (load from other processes only ever adds time).
    logs = run.work / "logs"
    times: dict[str, list[float]] = {"reference": [], "cold": [], "warm": []}
    summaries: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": []}
    for r in range(run.args.repeat):
        times["reference"].append(hand_loop(run.build, (x_train, y_train), x_val, epochs, device))
        res[f"reference_s_{r}"] = rnd(times["reference"][-1])
        run.save()
        log(f"reference (hand loop, {epochs} epochs): {times['reference'][-1]:.2f} s")
        for kind in ("cold", "warm"):
            name = f"speed_{kind}_{r}"
            args = pipeline_args(run.args.config, root, run.work / f"cache-pipeline-{r}", logs, name, epochs,
                                 run.quick, size)  # fmt: skip
            try:
                times[kind].append(run_pipeline(args, device))
            except Exception as err:  # report and go on: the other numbers are still worth having
                run.errors.append(f"pipeline {kind}: {err!r}")
                traceback.print_exc()
                continue
            summaries[kind].append(run_summary(logs / name / "version_0"))
            # Free its page cache for the next run: a VM backs never-touched memory lazily, so 130-300 MB writes
            # into fresh pages cost 5-10x more than into reused ones, and repeats would differ by how much was left.
            shutil.rmtree(logs / name / "version_0" / "checkpoints", ignore_errors=True)
            res[f"pipeline_{kind}_s_{r}"] = rnd(times[kind][-1])
            run.save()
            log(f"pipeline ({kind} cache): {times[kind][-1]:.2f} s (fit loop {summaries[kind][-1]['fit_time_s']} s)")
    del x_train, y_train, x_val
    free_memory(device)

    res["repeat"] = run.args.repeat
    res["reference_s"] = rnd(min(times["reference"]))
    for kind in ("cold", "warm"):
        key = f"pipeline_{kind}_s"
        if len(times[kind]) != run.args.repeat:
            res[key] = None
            continue
        best = int(np.argmin(times[kind]))
        res[key] = rnd(times[kind][best])
        fit_loop = summaries[kind][best]["fit_time_s"]
        res[f"pipeline_{kind}_fit_loop_s"] = fit_loop
        # outside the fit loop: CLI parsing, model build, data scan and split, image cache build or load
        res[f"pipeline_{kind}_outside_fit_loop_s"] = None if fit_loop is None else rnd(res[key] - fit_loop)
        res[f"pipeline_{kind}_train_img_s_last_epoch"] = summaries[kind][best]["train_img_s_last_epoch"]
    if run.args.repeat > 1:
        res["reference_s_all"] = [rnd(v) for v in times["reference"]]
        res["pipeline_cold_s_all"] = [rnd(v) for v in times["cold"]]
        res["pipeline_warm_s_all"] = [rnd(v) for v in times["warm"]]
    res["pipeline_s"] = res["pipeline_cold_s"]
    ref = res["reference_s"]
    res["ratio"] = rnd(res["pipeline_s"] / ref, 3) if res["pipeline_s"] else None
    res["ratio_warm"] = rnd(res["pipeline_warm_s"] / ref, 3) if res["pipeline_warm_s"] else None
    for r in range(run.args.repeat):  # partial results, superseded by the keys above
        for key in (f"reference_s_{r}", f"pipeline_cold_s_{r}", f"pipeline_warm_s_{r}"):
            res.pop(key, None)
    run.save()
    log(f"ratio (cold) {res['ratio']}, ratio (warm) {res['ratio_warm']}")


def measure_ops(run: Run) -> None:
    """ATen ops per training step of the hand loop and of ``breakhis fit``, same model, on the CPU.

    Both with fused AdamW (the optimiser of a GPU run), fp32, batch 8 at 32 px on the small tree (op counts do
    not depend on the image or batch size), one epoch; the median over the epoch's inner steps. Deterministic.
    """
    from breakhis_lit.data import BreakHisDataModule

    res, cpu, size, batch = run.res, torch.device("cpu"), 32, 8
    root, _, _ = write_tree(run.work / "ops-data", "quick", 1)
    dm = BreakHisDataModule(root=str(root), magnification=MAGNIFICATION, image_size=size,
                            cache_dir=str(run.work / "cache-ops"), seed=0)  # fmt: skip
    dm.setup("fit")
    tr, va = dm.dataset("train"), dm.dataset("val")
    train, val = (tr.images[tr.rows], tr.labels), va.images[va.rows]
    del dm, tr, va
    hand = OpCounter()
    with hand:
        hand_loop(run.build, train, val, 1, cpu, batch_size=batch, fused=True, on_step=hand.mark)
    pipe = OpCounter()
    fused = '{"class_path": "torch.optim.AdamW", "init_args": {"fused": true}}'
    args = pipeline_args(run.args.config, root, run.work / "cache-ops", run.work / "logs", "ops", 1, run.quick, size)
    args += ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
             "--data.batch_size", str(batch), "--trainer.num_sanity_val_steps", "0",
             "--gradcam.every_n_epochs", "1000", "--model.optimizer", fused,
             "--model.lr", "1e-4", "--model.weight_decay", "1e-4"]  # fmt: skip
    with counting_pipeline(pipe):
        run_pipeline(args, cpu)
    shutil.rmtree(run.work / "logs" / "ops", ignore_errors=True)
    res["ops_per_step_reference"], res["ops_per_step_pipeline"] = hand.per_step(), pipe.per_step()
    res["ops_steps_reference"], res["ops_steps_pipeline"] = hand.windows, pipe.windows
    if res["ops_per_step_reference"] and res["ops_per_step_pipeline"]:
        res["ops_ratio"] = rnd(res["ops_per_step_pipeline"] / res["ops_per_step_reference"], 3)
    run.save()
    log(f"ops per training step: hand loop {res['ops_per_step_reference']}, pipeline {res['ops_per_step_pipeline']}"
        f" (ratio {res.get('ops_ratio')})")  # fmt: skip


def measure_throughput(run: Run) -> None:
    """Training (eager, compiled) and inference img/s on random inputs at batch 256 (``--quick``: 16, small)."""
    res, device = run.res, run.device
    batch, size = (16, res["image_size"]) if run.quick else (256, 224)
    steps, warmup = (3, 1) if run.quick else (20, 5)
    res["throughput_batch"], res["throughput_image_size"] = batch, size
    rate, _ = train_rate(run.build, device, batch, size, steps, warmup)
    free_memory(device)
    res["train_img_s_bs256"] = rnd(rate, 1)
    run.save()
    log(f"train throughput, batch {batch}: {res['train_img_s_bs256']} img/s")
    if not run.cuda:
        run.notes.append("torch.compile throughput is measured on CUDA only (null on a CPU)")
    elif run.args.no_compile:
        run.notes.append("torch.compile throughput skipped (--no-compile)")
    else:
        try:
            rate, warm_s = train_rate(run.build, device, batch, size, 30, 3, compile=True)
            res["train_img_s_bs256_compile"], res["compile_warmup_s"] = rnd(rate, 1), rnd(warm_s, 1)
            run.save()
            log(f"train throughput, batch {batch}, compiled: {rate:.1f} img/s ({warm_s:.0f} s to compile)")
        except Exception as err:
            run.errors.append(f"compile: {err!r}")
            traceback.print_exc()
        free_memory(device)
    res["infer_img_s_bs256"] = rnd(infer_rate(run.build, device, batch, size, steps, warmup), 1)
    free_memory(device)
    log(f"inference throughput, batch {batch}: {res['infer_img_s_bs256']} img/s")
    if run.quick:
        run.notes.append(f"--quick: throughput keys hold batch {batch} at {size} px with the ResNet18 trunk")


RESULT_KEYS = (
    "reference_s", "pipeline_s", "pipeline_cold_s", "pipeline_warm_s", "ratio", "ratio_warm", "train_img_s_bs256",
    "train_img_s_bs256_compile", "compile_warmup_s", "infer_img_s_bs256", "decode_img_s_1core",
    "decode_img_s_all_cores", "warm_cache_load_s", "n_train", "n_val", "ops_per_step_reference",
    "ops_per_step_pipeline", "ops_ratio",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quick = args.quick
    mode = "quick" if quick else "full"
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # one process: applies to the hand loop and to breakhis fit alike
    if cuda:
        torch.backends.cudnn.benchmark = True  # as the pipeline's trainer.benchmark
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/train_speed.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": quick,
        "data_only": args.data_only,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "cpu_model": cpu_model(),
        "cpu_count": cpus_available(),
        "os_cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": loadavg(),
        **versions(),
        "model": "DALAResNet(arch=resnet18)" if quick else "DALAResNet50",
        "precision": "bf16-mixed" if cuda else "32-true",
        "epochs": args.epochs or (3 if quick else 50),
        "batch_size": 32,
        "image_size": TREES[mode]["image_size"],
        "png_size": list(TREES[mode]["png"]),
        **dict.fromkeys(RESULT_KEYS),
    }
    log(f"{mode} run on {res['device']} ({res['cpu_model']}, {res['cpu_count']} cores), torch {torch.__version__}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="breakhis-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    run = Run(args, device, work, res)
    if not cuda:
        run.notes.append("on a CPU the reference and the pipeline run in fp32 (no bf16 autocast)")
    try:
        if args.ops_only:
            run.notes.append("--ops-only: only the op counts measured")
            measure_ops(run)
        else:
            root, cache = measure_data(run)
            if args.data_only:
                run.notes.append("--data-only: no training measured")
            else:
                measure_training(run, root, cache)
                if not args.no_ops:
                    measure_ops(run)
                measure_throughput(run)
    except Exception as err:
        run.errors.append(f"benchmark: {err!r}")
        traceback.print_exc()
    return finish(run, args, work)


def finish(run: Run, args: argparse.Namespace, work: Path) -> int:
    """Remove a temporary work folder, write and print the result; the exit status."""
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    result = run.result()
    run.save(result)
    text = json.dumps(result)
    sys.stderr.flush()
    print(f"\n{text}", flush=True)  # own line even when a progress bar left a partial line on the terminal
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
