"""``BreakHisDataModule``: a decode-once uint8 cache of a ``BreakHis`` split, batched loading, on-device augmentation.

The images are those a :class:`~breakhis_lit.data.breakhis.BreakHis` selects (its classes, records and groups);
the cache moves to the GPU when it fits.

Stain handling: ``hed_scale``/``hed_bias`` add HED stain jitter to the training augmentation (Tellez et al.'s
"HED-light"; see :mod:`breakhis_lit.stain.hed_jitter`). ``stain_norm`` (``macenko``, ``reinhard``) normalises every
image once, when the cache is built, to a target fitted on the training split only (part of the cache key); a verb
on a fitted run reads the run's target back (``stain_target``). In the cache rather than per batch: once instead
of every epoch, and Macenko's ``torch.linalg.eigh`` would synchronise a CUDA device with the host.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import override

from breakhis_lit.data.breakhis import BreakHis, SampleRecord, check_choice, example_indices
from breakhis_lit.data.cache import CachedImages, bad_images_message, load_or_build
from breakhis_lit.data.dataset import CachedImageDataset, passthrough_collate
from breakhis_lit.data.device import to_device
from breakhis_lit.data.image_folder import ImageFolder, no_images_message
from breakhis_lit.data.index import DatasetIndex
from breakhis_lit.data.samplers import SAMPLERS, BalancedSampler, EpochShuffleSampler
from breakhis_lit.data.splits import SPLIT_NAMES, SplitRow
from breakhis_lit.data.transforms import BatchAugmentation
from breakhis_lit.data.transforms import normalize as _normalize
from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import DataSpec
from breakhis_lit.stain import hed_jitter
from breakhis_lit.stain.base import StainTarget
from breakhis_lit.stain.identity import IdentityTarget
from breakhis_lit.stain.registry import NORMALIZERS, get_normalizer
from breakhis_lit.stain.target_file import run_target

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test", "predict")
_STAGE_ALIASES = {"fit": "train", "validate": "val", "validation": "val"}
#: Move the cache to the GPU only when it takes less than this fraction of the free GPU memory.
DEVICE_CACHE_FRACTION = 0.25


class BreakHisDataModule(LightningDataModule):
    """BreakHis data: grouped splits, a decode-once uint8 cache and batched augmentation on the model's device.

    Batches are dicts ``{"image": uint8 [B,3,H,W], "label": int64 [B], "group": int64 [B], "index": int64 [B]}``
    (``index`` indexes :meth:`records` of the stage, ``group`` indexes :attr:`group_names`);
    :meth:`on_after_batch_transfer` turns ``image`` into ImageNet-normalised float32, augmented only while the
    trainer is training. The augmentation's random parameters of a whole epoch are drawn at its first training
    batch, in one draw from a ``torch.Generator`` seeded from ``(seed, epoch, rank)``, and copied to the device
    once; each batch then takes its rows (so an epoch's augmentation is the same in a resumed run).

    Args:
        root: BreakHis root: the folder holding ``BreaKHis_v1`` (original or Kaggle layout) or a folder inside it.
        magnification: 40, 100, 200, 400 (``"40X"`` accepted) or ``"all"``.
        task: ``binary`` (benign/malignant) or ``subtype`` (8 classes A F PT TA DC LC MC PC).
        split: ``patient`` (grouped, stratified), ``official`` (official fold), ``kfold`` or ``image`` (leaks).
        group_by: ``accession`` (70 groups, leak-safe), ``patient_id`` (81) or ``folder`` (82).
        train_ratio: Fraction of images in train (``patient``/``image``; with ``val_ratio`` sets the val carve).
        val_ratio: Fraction of images in validation.
        test_ratio: Fraction of images in test (``patient``/``image``).
        fold: Official fold (1-5) or k-fold index (1..num_folds) used as test.
        num_folds: Number of folds for ``split=kfold``.
        seed: Seed of the split, the shuffling, the balanced sampler, the augmentation and the demo data.
        image_size: Side of the (squashed) square images.
        batch_size: Training batch size.
        eval_batch_size: Validation/test/predict batch size.
        num_workers: DataLoader workers (forced to 0 when the images live on the GPU).
        sampler: ``none``, ``oversample`` or ``undersample`` (class-balanced per epoch, imbalanced-learn).
        cache_dir: Image cache folder (default ``$BREAKHIS_CACHE`` or ``~/.cache/breakhis_lit``).
        on_bad_image: ``error`` (name every unreadable image) or ``skip`` (warn, list as ``skipped``).
        augment: Random crops, flips, 90-degree rotations, HED stain jitter and colour jitter in training.
        predict_root: Predict on every image below this folder (recursive; the extensions of
            :data:`~.image_folder.IMAGE_EXTENSIONS`, other files are skipped with a warning) instead of
            the test split.
        demo: Generate synthetic demo data at ``root`` when it does not exist.
        device_cache: Keep the image tensor on the GPU when training on CUDA and it fits comfortably.
        split_file: Read the split from this ``splits.csv`` instead of computing it, and refuse a root whose files
            differ from it (the command line sets it for every verb that works on a fitted run).
        trained_on: The ``splits.csv`` of a fitted run evaluated on other data (``--eval_name``): refuse test
            images of patients that run trained or validated on, beyond those its own test split holds.
        drop_last: Drop the last partial training batch: ``None`` (default) when the model asks for static shapes
            (its ``static_shapes``, true when the classifier compiles: a new batch shape means a new compilation),
            else ``true``/``false``. A 1-sample last batch is always dropped (BatchNorm cannot train on it).
        hed_scale: HED jitter: haematoxylin, eosin and DAB scaled by ``U(1 ± hed_scale)`` (0.05: "HED-light").
        hed_bias: ... and shifted by ``U(±hed_bias)`` in optical density (0 and 0: no jitter; README, Stain).
        stain_norm: ``none``, ``macenko`` or ``reinhard``: normalised once, in the cache, to a train-split target.
        stain_target: The stain target JSON to read instead of fitting one (set to the run's by the command line).
    """

    def __init__(
        self,
        root: str = "data/BreaKHis_v1",
        magnification: int | str = 40,
        task: Literal["binary", "subtype"] = "binary",
        split: Literal["patient", "official", "kfold", "image"] = "patient",
        group_by: Literal["accession", "patient_id", "folder"] = "accession",
        train_ratio: float = 0.6,
        val_ratio: float = 0.1,
        test_ratio: float = 0.3,
        fold: int = 1,
        num_folds: int = 5,
        seed: int = 0,
        image_size: int = 224,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        sampler: Literal["none", "oversample", "undersample"] = "none",
        cache_dir: str | None = None,
        on_bad_image: Literal["error", "skip"] = "error",
        augment: bool = True,
        predict_root: str | None = None,
        demo: bool = False,
        device_cache: bool = True,
        split_file: str | None = None,
        trained_on: str | None = None,
        drop_last: bool | None = None,
        hed_scale: float = hed_jitter.DEFAULT_SCALE,
        hed_bias: float = hed_jitter.DEFAULT_BIAS,
        stain_norm: Literal["none", "macenko", "reinhard"] = "none",
        stain_target: str | None = None,
    ) -> None:
        super().__init__()
        self.breakhis = BreakHis(
            root,
            magnification,
            task,
            split,
            group_by,
            (train_ratio, val_ratio, test_ratio),
            fold,
            num_folds,
            seed,
            split_file=split_file,
            trained_on=trained_on,
            demo=demo,
        )
        """The dataset's domain facts: classes, the split, records and groups of each stage."""
        check_choice("sampler", sampler, SAMPLERS)
        check_choice("on_bad_image", on_bad_image, ("error", "skip"))
        check_choice("stain_norm", stain_norm, tuple(NORMALIZERS))
        for name, value in (("hed_scale", hed_scale), ("hed_bias", hed_bias)):
            if not (isinstance(value, int | float) and 0 <= value < 1):
                default = hed_jitter.DEFAULT_SCALE if name == "hed_scale" else hed_jitter.DEFAULT_BIAS
                raise BreakHisError(f"{name} {value!r}: must be in [0, 1); pass e.g. --data.{name} {default}")
        self.ratios = self.breakhis.ratios
        for name, value, low in (
            ("image_size", image_size, 8),
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise BreakHisError(f"{name} {value!r}: must be an integer >= {low}; pass e.g. --data.{name} {low}")
        self.save_hyperparameters()
        vars(self).update(self.hparams)  # every option an attribute of the same name
        self.train_ratio, self.val_ratio, self.test_ratio = self.ratios
        self.hed_scale, self.hed_bias = float(hed_scale), float(hed_bias)
        self.stain_norm_target: StainTarget | None = None
        """The stain target the images are normalised to (an ``IdentityTarget`` without normalisation), after
        :meth:`setup`; ``fit`` saves it with the run."""
        self.classes: list[str] = list(self.breakhis.classes)
        self.num_classes = len(self.classes)
        self.augmentation = BatchAugmentation(hed_scale=self.hed_scale, hed_bias=self.hed_bias)
        self._epoch_draws: tuple[tuple[int, int], Tensor] | None = None  # (trainer id, epoch), parameter rows
        self._epoch_offset = 0
        self._epoch_generator = torch.Generator()
        self.group_names: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self._group_ids: dict[str, int] = {}
        self._records: dict[str, list[SampleRecord]] = {}
        self._datasets: dict[str, CachedImageDataset] = {}
        self._main_ready = False
        self._predict_ready = False
        self._train_sampler: EpochShuffleSampler | None = None

    # ------------------------------------------------------------------ setup
    @property
    def index(self) -> DatasetIndex | None:
        """The scanned root (after :meth:`resolve_split`)."""
        return self.breakhis.index

    @property
    def split_rows(self) -> list[SplitRow]:
        """The split table (``splits.csv``; after :meth:`resolve_split`, with unreadable images ``skipped``)."""
        return self.breakhis.rows

    @override
    def prepare_data(self) -> None:
        self.breakhis.prepare()

    @override
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_root is not None:
            self._setup_predict()
            return
        self._setup_main()
        if stage == "predict" or stage is None:
            self._records["predict"] = self._records["test"]
            self._datasets["predict"] = self._datasets["test"]

    def _load_cache(
        self,
        files: Sequence[tuple[str, Path]],
        extra_key: str = "",
        stain_target: StainTarget | None = None,
        source: CachedImages | None = None,
    ) -> CachedImages:
        """Load or build the image cache, raw or normalised to ``stain_target`` (under DDP rank zero builds it).

        Raises:
            BreakHisError: With ``on_bad_image=error``, naming every unreadable image.
        """
        kwargs: dict[str, Any] = {
            "size": self.image_size,
            "cache_dir": self.cache_dir,
            "extra_key": extra_key,
            "stain_target": stain_target,
            "source": source,
        }
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            cached = None
            if trainer.is_global_zero:
                cached = load_or_build(files, **kwargs)
            trainer.strategy.barrier("breakhis_lit_image_cache")
            if cached is None:
                cached = load_or_build(files, progress=False, **kwargs)
        else:
            cached = load_or_build(files, **kwargs)
        if cached.bad and self.on_bad_image == "error":
            raise BreakHisError(bad_images_message(cached.bad))
        if source is None:
            for path, reason in cached.bad:
                log.warning("skipping unreadable image %s (%s)", path, reason)
        return cached

    @cached_property
    def _saved_target(self) -> StainTarget | None:
        """The run's target in ``stain_target`` (``None`` when not given), read once: see :func:`run_target`."""
        return None if self.stain_target is None else run_target(self.stain_target, self.stain_norm)

    def _fit_target(self, images: Tensor, train: Sequence[int]) -> StainTarget:
        """The stain target of ``stain_norm``, fitted on the training split's images (rows ``train``) only."""
        if self.stain_norm == "none":
            return IdentityTarget()
        start = time.perf_counter()
        target = get_normalizer(self.stain_norm).fit(images[train])
        log.info(
            "%s stain target fitted on the %d training images in %.1f s",
            self.stain_norm,
            len(train),
            time.perf_counter() - start,
        )
        return target

    def _maybe_to_device(self, images: Tensor) -> Tensor:
        trainer = self.trainer
        if not self.device_cache or trainer is None:
            return images
        device = trainer.strategy.root_device
        if device.type != "cuda":
            return images
        free, _ = torch.cuda.mem_get_info(device)
        if images.numel() > DEVICE_CACHE_FRACTION * free:
            log.info("image cache (%.1f GB) kept in host memory: too large for %s", images.numel() / 1e9, device)
            return images
        log.info("image cache (%.2f GB) moved to %s; num_workers set to 0", images.numel() / 1e9, device)
        return images.to(device)

    def resolve_split(self) -> list[SplitRow]:
        """Scan the root and fix the split, with every check, before any image is decoded; idempotent.

        See :meth:`BreakHis.resolve`; a run's stain target that ``stain_norm`` contradicts is refused here too. The
        command line calls this before it creates a run directory or a logger, so a refused split writes nothing.
        """
        rows = self.breakhis.resolve()
        self.check_stain_target()
        return rows

    def check_stain_target(self) -> None:
        """Refuse, before anything is written, a ``stain_target`` that is unreadable or contradicts ``stain_norm``."""
        _ = self._saved_target

    def _setup_main(self) -> None:
        if self._main_ready:
            return
        domain = self.breakhis
        domain.resolve()
        files = domain.files()
        raw = self._load_cache(files)
        self.skipped = list(raw.bad)
        domain.check_decoded(self.skipped, dict(zip(raw.paths, raw.digests, strict=True)))
        row_of = {p: i for i, p in enumerate(raw.paths)}
        records = {stage: domain.records(stage) for stage in SPLIT_NAMES}
        target = self._saved_target
        if target is None:
            target = self._fit_target(torch.from_numpy(raw.images), [row_of[r.path] for r in records["train"]])
        self.stain_norm_target = target
        if target.method != "none":
            raw = self._load_cache(files, stain_target=target, source=raw)
        images = self._maybe_to_device(torch.from_numpy(raw.images))
        del raw
        self.group_names = domain.groups
        self._group_ids = {g: i for i, g in enumerate(self.group_names)}
        for stage, stage_records in records.items():
            self._records[stage] = stage_records
            self._datasets[stage] = CachedImageDataset(
                images,
                [row_of[r.path] for r in stage_records],
                [r.label for r in stage_records],
                [self._group_ids[r.group] for r in stage_records],
            )
        self._main_ready = True

    def split_hash(self) -> str:
        """Hash of the split in use (see :func:`breakhis_lit.data.splits.split_hash`); after :meth:`setup`."""
        return self.breakhis.split_hash()

    def data_spec(self) -> DataSpec:
        """The data options that decide which images the model sees."""
        return DataSpec.from_options(self.hparams)

    def _setup_predict(self) -> None:
        if self._predict_ready:
            return
        root = Path(self.predict_root).expanduser()
        if not root.is_dir():
            raise BreakHisError(f"{root}: predict_root is not an existing folder; pass --data.predict_root DIR")
        folder = ImageFolder.read(root)
        for line in folder.warnings():
            log.warning(line)
        if not folder.images:
            raise BreakHisError(no_images_message(root, "pass --data.predict_root pointing at your images"))
        files = list(zip(folder.images, folder.paths(), strict=True))
        extra_key = f"predict:{root.resolve()}"
        cached = self._load_cache(files, extra_key=extra_key)
        target = self._saved_target
        if target is None and self.stain_norm != "none":
            raise BreakHisError(
                f"--data.predict_root with --data.stain_norm {self.stain_norm}: the images must be normalised to "
                "the target of the run that is predicting; run `breakhis predict --config ...` on a fitted run"
            )
        self.stain_norm_target = target or IdentityTarget()
        if self.stain_norm_target.method != "none":
            cached = self._load_cache(files, extra_key=extra_key, stain_target=self.stain_norm_target, source=cached)
        paths = cached.paths
        images = self._maybe_to_device(torch.from_numpy(cached.images))
        abs_of = dict(files)
        records = [self.breakhis.file_record(abs_of[rel]) for rel in paths]
        for g in sorted({r.group for r in records if r.group and r.group not in self._group_ids}):
            self._group_ids[g] = len(self.group_names)
            self.group_names.append(g)
        self._records["predict"] = records
        self._datasets["predict"] = CachedImageDataset(
            images,
            list(range(len(records))),
            [r.label for r in records],
            [self._group_ids.get(r.group, -1) for r in records],
        )
        self._predict_ready = True

    # ------------------------------------------------------------ accessors
    def _stage(self, stage: str) -> str:
        name = _STAGE_ALIASES.get(stage, stage)
        if name not in STAGES:
            raise BreakHisError(f"stage {stage!r}: unknown stage; use one of {', '.join(STAGES)}")
        if name not in self._records:
            raise BreakHisError(f"stage {name}: data not set up; call setup() for this stage first")
        return name

    def records(self, stage: str) -> list[SampleRecord]:
        """Return the sample records of ``train``, ``val``, ``test`` or ``predict`` (after :meth:`setup`)."""
        return self._records[self._stage(stage)]

    def dataset(self, stage: str) -> CachedImageDataset:
        """Return the dataset of a stage (after :meth:`setup`)."""
        return self._datasets[self._stage(stage)]

    def train_class_counts(self) -> Tensor:
        """Return the number of training images of each class (int64, ``num_classes``)."""
        labels = self.dataset("train").labels.cpu()
        return torch.bincount(labels, minlength=self.num_classes)

    def fixed_examples(self, stage: str, per_class: int = 1) -> tuple[Tensor, Tensor, list[SampleRecord]]:
        """Pick deterministic examples of each class (evenly spaced in path order), e.g. for Grad-CAM grids.

        Args:
            stage: ``train``, ``val``, ``test`` or ``predict``.
            per_class: Examples per class (fewer when a class has fewer images).

        Returns:
            uint8 images ``[N, 3, H, W]`` (CPU), int64 labels ``[N]`` and the N records.
        """
        records = self.records(stage)
        ds = self.dataset(stage)
        picks = example_indices(records, self.num_classes, per_class)
        if not picks:
            return (
                torch.zeros((0, 3, self.image_size, self.image_size), dtype=torch.uint8),
                torch.zeros(0, dtype=torch.int64),
                [],
            )
        batch = ds.__getitems__(picks)
        return batch["image"].cpu(), batch["label"].cpu(), [records[i] for i in picks]

    def normalize(self, images: Tensor) -> Tensor:
        """ImageNet-normalise a uint8 batch on any device (as :meth:`on_after_batch_transfer` does)."""
        return _normalize(images)

    # ---------------------------------------------------------- dataloaders
    def _loader(self, stage: str, train: bool = False) -> DataLoader:
        ds = self.dataset(stage)
        on_gpu = ds.images.is_cuda
        workers = 0 if on_gpu else self.num_workers
        trainer = self.trainer
        cuda_target = trainer is not None and trainer.strategy.root_device.type == "cuda"
        kwargs: dict[str, Any] = {
            "num_workers": workers,
            "pin_memory": cuda_target and not on_gpu,
            "persistent_workers": workers > 0,
            "collate_fn": passthrough_collate,
            # Creating an iterator draws the workers' base seed from this generator, not from the global RNG,
            # so epoch e's dropout does not depend on when Lightning builds the iterator.
            "generator": torch.Generator().manual_seed(int(self.seed)),
        }
        if not train:
            sampler = None
            if trainer is not None and trainer.world_size > 1:
                # Each image exactly once across processes (no padding repeats), so metrics reduced over ranks
                # equal a single process's; Lightning leaves a DistributedSampler in place.
                sampler = UnrepeatedDistributedSampler(
                    ds, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
                )
            return DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, sampler=sampler, **kwargs)
        labels = ds.labels.cpu().numpy()
        if self.sampler == "none":
            self._train_sampler = EpochShuffleSampler(labels, seed=int(self.seed), epoch_source=self._current_epoch)
        else:
            self._train_sampler = BalancedSampler(
                labels, self.sampler, seed=int(self.seed), epoch_source=self._current_epoch
            )
        n = len(self._train_sampler)
        drop = self.drop_last
        if drop is None:
            drop = bool(getattr(trainer.lightning_module, "static_shapes", False)) if trainer is not None else False
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=self._train_sampler,
            # never every batch; always a 1-sample one (BatchNorm cannot train on it)
            drop_last=(drop and n >= self.batch_size) or (n > self.batch_size and n % self.batch_size == 1),
            **kwargs,
        )

    def _current_epoch(self) -> int | None:
        """The trainer's epoch (restored on resume), which seeds the training order; ``None`` without a trainer."""
        return int(self.trainer.current_epoch) if self.trainer is not None else None

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    @override
    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict) or "image" not in batch:
            return batch
        images = batch["image"]
        trainer = self.trainer
        if self.augment and trainer is not None and trainer.training:
            return {**batch, "image": self.augmentation(images, self._augmentation_rows(images))}
        return {**batch, "image": _normalize(images)}

    def _augmentation_rows(self, images: Tensor) -> Tensor:
        """The rows of the epoch's augmentation parameters for this training batch, on the images' device."""
        trainer = self.trainer
        b, _, h, w = images.shape
        epoch, rank = int(trainer.current_epoch), int(getattr(trainer, "global_rank", 0))
        key = (id(trainer), epoch)
        if self._epoch_draws is None or self._epoch_draws[0] != key:
            sampler = self._train_sampler
            samples = len(sampler) if sampler is not None else len(self.dataset("train"))
            self._epoch_generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, rank))
            rows = self.augmentation.draw(math.ceil(samples / trainer.world_size), h, w, self._epoch_generator)
            self._epoch_draws, self._epoch_offset = (key, to_device(rows, images.device)), 0
        start, rows = self._epoch_offset, self._epoch_draws[1]
        if start + b > rows.shape[0]:  # more samples than planned: draw on from the same generator
            more = self.augmentation.draw(start + b - rows.shape[0], h, w, self._epoch_generator)
            rows = torch.cat([rows, to_device(more, images.device)])
            self._epoch_draws = (key, rows)
        self._epoch_offset = start + b
        return rows[start : start + b]


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A 64-bit seed for epoch ``epoch`` on process ``rank`` of a run seeded with ``seed`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1, np.uint64)[0])
