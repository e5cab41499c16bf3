"""``BreakHisDataModule``: patient-aware splits, a decode-once uint8 cache and batched on-device augmentation.

Label choice for the subtype task: patient ``14-13412`` is filed under both ductal (DC) and lobular (LC)
carcinoma with (nearly) the same images. Both folders are kept, each image labelled with its folder's subtype.
With ``group_by`` ``accession`` (default) or ``patient_id`` the two folders always share a split, so duplicated
images never straddle train and test; with ``group_by=folder`` they can, and a split that puts byte-identical
copies on two sides is refused. Byte-identical files are found from the content digests the cache keeps (taken
while decoding); copies on two sides of a ``patient`` or ``kfold`` split, or filed under two patients, are refused
(:func:`~breakhis_lit.data.splits.check_duplicates`).

Stain handling: ``hed_scale``/``hed_bias`` add HED stain jitter to the training augmentation (on by default, at
Tellez et al.'s "HED-light" strength; see :mod:`breakhis_lit.stain.hed_jitter` for why the shift is 0.02 here).
``stain_norm`` (``macenko``, ``reinhard``) normalises every image once, when the image cache is built, to a target
fitted on the training split's images only; the target is part of the cache key, so normalised and raw images
never share a cache. A verb working on a fitted run reads the run's saved target back (``stain_target``, set by the
command line) and never fits it again. Normalising in the cache rather than per batch on the device: it costs
once what per batch would cost every epoch (about 100 images/s at 224 px on one CPU thread, 0.33 s a batch of 32),
and Macenko's eigen-decomposition (``torch.linalg.eigh``) synchronises a CUDA device with the host.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import override

from breakhis_lit.data.cache import CachedImages, bad_images_message, load_or_build
from breakhis_lit.data.dataset import CachedImageDataset, SampleRecord, passthrough_collate
from breakhis_lit.data.demo import generate_demo
from breakhis_lit.data.device import to_device
from breakhis_lit.data.index import (
    IMAGE_EXTENSIONS,
    DatasetIndex,
    find_images,
    scan,
    skipped_files_message,
    skipped_links_message,
)
from breakhis_lit.data.naming import LABELS, SUBTYPE_CODES, parse_magnification, try_parse_filename
from breakhis_lit.data.official import NUM_OFFICIAL_FOLDS
from breakhis_lit.data.samplers import SAMPLERS, BalancedSampler, EpochShuffleSampler
from breakhis_lit.data.splits import (
    GROUP_BY,
    SKIPPED,
    STRATEGIES,
    SplitRow,
    check_duplicates,
    check_ratios,
    check_split,
    make_split,
    mark_skipped,
    read_split_csv,
    split_hash,
    with_sizes,
)
from breakhis_lit.data.transforms import BatchAugmentation
from breakhis_lit.data.transforms import normalize as _normalize
from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import DataSpec
from breakhis_lit.stain import hed_jitter
from breakhis_lit.stain.base import StainTarget
from breakhis_lit.stain.identity import IdentityTarget
from breakhis_lit.stain.registry import NORMALIZERS, get_normalizer
from breakhis_lit.stain.target_file import load_target

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
            :data:`~breakhis_lit.data.index.IMAGE_EXTENSIONS`, other files are skipped with a warning) instead of
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
        self._mag = parse_magnification(magnification)
        _check_choice("task", task, ("binary", "subtype"))
        _check_choice("split", split, STRATEGIES)
        _check_choice("group_by", group_by, GROUP_BY)
        _check_choice("sampler", sampler, SAMPLERS)
        _check_choice("on_bad_image", on_bad_image, ("error", "skip"))
        _check_choice("stain_norm", stain_norm, tuple(NORMALIZERS))
        for name, value in (("hed_scale", hed_scale), ("hed_bias", hed_bias)):
            if not (isinstance(value, int | float) and 0 <= value < 1):
                default = hed_jitter.DEFAULT_SCALE if name == "hed_scale" else hed_jitter.DEFAULT_BIAS
                raise BreakHisError(f"{name} {value!r}: must be in [0, 1); pass e.g. --data.{name} {default}")
        self.ratios = check_ratios((train_ratio, val_ratio, test_ratio))
        if split == "official" and not 1 <= fold <= NUM_OFFICIAL_FOLDS:
            raise BreakHisError(
                f"fold {fold}: the official split has folds 1-{NUM_OFFICIAL_FOLDS}; pass --data.fold 1..5"
            )
        if split == "kfold" and (num_folds < 2 or not 1 <= fold <= num_folds):
            raise BreakHisError(
                f"fold {fold} / num_folds {num_folds}: k-fold needs num_folds >= 2 and fold in 1..num_folds; "
                f"pass e.g. --data.num_folds 5 --data.fold 1"
            )
        for name, value, low in (
            ("image_size", image_size, 8),
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise BreakHisError(f"{name} {value!r}: must be an integer >= {low}; pass e.g. --data.{name} {low}")
        self.save_hyperparameters()
        self.root = root
        self.magnification = magnification
        self.task = task
        self.split = split
        self.group_by = group_by
        self.train_ratio, self.val_ratio, self.test_ratio = self.ratios
        self.fold = fold
        self.num_folds = num_folds
        self.seed = seed
        self.image_size = image_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.sampler = sampler
        self.cache_dir = cache_dir
        self.on_bad_image = on_bad_image
        self.augment = augment
        self.predict_root = predict_root
        self.demo = demo
        self.device_cache = device_cache
        self.split_file = split_file
        self.trained_on = trained_on
        self.drop_last = drop_last
        self.hed_scale = float(hed_scale)
        self.hed_bias = float(hed_bias)
        self.stain_norm = stain_norm
        self.stain_target = stain_target
        self.stain_norm_target: StainTarget | None = None
        """The stain target the images are normalised to (an ``IdentityTarget`` without normalisation), after
        :meth:`setup`; ``fit`` saves it with the run."""
        self.classes: list[str] = list(LABELS) if task == "binary" else list(SUBTYPE_CODES)
        self.num_classes = len(self.classes)
        self.augmentation = BatchAugmentation(hed_scale=self.hed_scale, hed_bias=self.hed_bias)
        self._epoch_draws: tuple[tuple[int, int], Tensor] | None = None  # (trainer id, epoch), parameter rows
        self._epoch_offset = 0
        self._epoch_generator = torch.Generator()
        self.group_names: list[str] = []
        self.index: DatasetIndex | None = None
        self.split_rows: list[SplitRow] = []
        self.skipped: list[tuple[str, str]] = []
        self._group_ids: dict[str, int] = {}
        self._records: dict[str, list[SampleRecord]] = {}
        self._datasets: dict[str, CachedImageDataset] = {}
        self._main_ready = False
        self._predict_ready = False
        self._train_sampler: EpochShuffleSampler | None = None

    # ------------------------------------------------------------------ setup
    @override
    def prepare_data(self) -> None:
        self._ensure_demo()

    @override
    def setup(self, stage: str | None = None) -> None:
        if stage == "predict" and self.predict_root is not None:
            self._setup_predict()
            return
        self._setup_main()
        if stage == "predict" or stage is None:
            self._records["predict"] = self._records["test"]
            self._datasets["predict"] = self._datasets["test"]

    def _ensure_demo(self) -> None:
        """Generate the demo data at ``root`` (once, atomically) when ``demo`` is set and ``root`` is absent."""
        if not self.demo:
            return
        root = Path(self.root).expanduser()
        if root.is_dir() and any(root.iterdir()):
            return
        base = root.parent if root.name == "BreaKHis_v1" else root
        base.parent.mkdir(parents=True, exist_ok=True)
        with _lock(base.parent / f".{base.name}.demo.lock"):
            if root.is_dir() and any(root.iterdir()):
                return
            tmp = base.parent / f".{base.name}.demo-tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            log.info("generating demo data in %s", base)
            generate_demo(tmp, seed=self.seed)
            try:
                if root.is_dir() and root != base:
                    root.rmdir()  # empty
                if not base.exists() or (base.is_dir() and not any(base.iterdir())):
                    if base.exists():
                        base.rmdir()
                    os.replace(tmp, base)
                else:
                    for name in ("BreaKHis_v1", "masks", "demo.json"):
                        if not (base / name).exists():
                            os.replace(tmp / name, base / name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

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

    def _saved_target(self) -> StainTarget | None:
        """The target of ``stain_target`` (``None`` when not given), checked against ``stain_norm``.

        Raises:
            BreakHisError: When the file is unreadable, or its method is not ``stain_norm``.
        """
        if self.stain_target is None:
            return None
        path = Path(self.stain_target)
        if not path.is_file() and self.stain_norm == "none":
            return IdentityTarget()  # a run fitted before stain targets were saved: it had none
        if not path.is_file():
            raise BreakHisError(
                f"--data.stain_target {path}: no such file, so the run was fitted without stain normalisation; "
                "pass --data.stain_norm none"
            )
        target = load_target(path)
        if target.method != self.stain_norm:
            raise BreakHisError(
                f"--data.stain_norm {self.stain_norm}: the run's stain target {path} is {target.method!r}; pass "
                f"--data.stain_norm {target.method}"
            )
        return target

    def _fit_target(self, images: Tensor, row_of: dict[str, int], rows: Sequence[SplitRow]) -> StainTarget:
        """The stain target of ``stain_norm``, fitted on the training split's images only."""
        if self.stain_norm == "none":
            return IdentityTarget()
        train = [row_of[r.path] for r in rows if r.split == "train"]
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

    def _label_of(self, label: str, subtype_code: str) -> int:
        return LABELS.index(label) if self.task == "binary" else SUBTYPE_CODES.index(subtype_code)

    def resolve_split(self) -> list[SplitRow]:
        """Scan the root and fix the split, with every check, before any image is decoded; idempotent.

        The split is computed from the options, or read back from ``split_file`` (its files checked against the
        root); with ``trained_on``, test patients the fitted run trained on are refused. The command line calls
        this before it creates a run directory or a logger, so a refused split (or stain target) writes nothing.

        Returns:
            The split's rows (every image, with its side and file size).
        """
        if self.index is not None:
            return self.split_rows
        self._ensure_demo()
        index = scan(self.root)
        if self.split_file is not None:
            rows = self._bound_rows(index)
        else:
            rows = make_split(
                index.images,
                self.split,
                magnification=self._mag,
                group_by=self.group_by,
                ratios=self.ratios,
                fold=self.fold,
                num_folds=self.num_folds,
                seed=self.seed,
            )
            rows = with_sizes(rows, index.abspath)
        if self.trained_on is not None:
            _check_unseen(rows, self.trained_on)
        self._saved_target()  # a run's stain target that --data.stain_norm contradicts is refused here too
        self.index, self.split_rows = index, rows
        return rows

    def _setup_main(self) -> None:
        if self._main_ready:
            return
        rows = self.resolve_split()
        index = self.index
        live = [r for r in rows if r.split != SKIPPED]
        files = [(r.path, index.abspath(r.path)) for r in live]
        raw = self._load_cache(files)
        paths, bad = raw.paths, list(raw.bad)
        digests = dict(zip(raw.paths, raw.digests, strict=True))
        if bad and self.split_file is not None:
            path, reason = bad[0]
            raise BreakHisError(
                f"{path}: unreadable now ({reason}) but scored by the run's split {self.split_file}; restore the "
                "file, or start a new run"
            )
        if bad:
            rows = mark_skipped(rows, [p for p, _ in bad])
            check_split(rows, self.split, self.group_by)
        check_duplicates(rows, digests, self.split, self.group_by)
        self.split_rows, self.skipped = rows, bad
        row_of = {p: i for i, p in enumerate(paths)}
        target = self._saved_target()
        if target is None:
            target = self._fit_target(torch.from_numpy(raw.images), row_of, rows)
        self.stain_norm_target = target
        if target.method != "none":
            raw = self._load_cache(files, stain_target=target, source=raw)
        images = self._maybe_to_device(torch.from_numpy(raw.images))
        del raw
        self.group_names = sorted({r.group for r in rows})
        self._group_ids = {g: i for i, g in enumerate(self.group_names)}
        for stage in ("train", "val", "test"):
            stage_rows = [r for r in rows if r.split == stage]
            records = [
                SampleRecord(r.path, self._label_of(r.label, r.subtype), r.patient_id, r.group, r.magnification)
                for r in stage_rows
            ]
            self._records[stage] = records
            self._datasets[stage] = CachedImageDataset(
                images,
                [row_of[r.path] for r in stage_rows],
                [rec.label for rec in records],
                [self._group_ids[rec.group] for rec in records],
            )
            if self.task == "subtype":
                absent = [c for i, c in enumerate(self.classes) if all(rec.label != i for rec in records)]
                if absent:
                    log.warning("subtype task: the %s split has no image of %s", stage, ", ".join(absent))
        self._main_ready = True
        counts = Counter(r.split for r in rows)
        log.info(
            "BreakHis %s split (group_by=%s, magnification=%s): %s",
            self.split,
            self.group_by,
            self.magnification,
            ", ".join(f"{k} {counts[k]}" for k in ("train", "val", "test", SKIPPED) if counts[k]),
        )

    def _bound_rows(self, index: DatasetIndex) -> list[SplitRow]:
        """The rows of ``split_file``, checked against the files under ``root``."""
        rows = read_split_csv(self.split_file)
        known = {image.path for image in index.images}
        missing = [r.path for r in rows if r.path not in known]
        changed = [
            r.path
            for r in rows
            if r.path in known and r.split != SKIPPED and r.size >= 0 and _size(index.abspath(r.path)) != r.size
        ]
        if missing or changed:
            example = (missing or changed)[0]
            raise BreakHisError(
                f"--data.root {self.root}: {len(missing)} file(s) of the run's split are missing and {len(changed)} "
                f"differ in size (e.g. {example}); point --data.root at the data the run was fitted on "
                f"({self.split_file})"
            )
        mags = {r.magnification for r in rows}
        if self._mag is not None and mags != {self._mag}:
            raise BreakHisError(
                f"--data.magnification {self.magnification}: the run's split {self.split_file} holds "
                f"{'/'.join(map(str, sorted(mags)))}X images; pass the run's magnification"
            )
        return rows

    def split_hash(self) -> str:
        """Hash of the split in use (see :func:`breakhis_lit.data.splits.split_hash`); after :meth:`setup`."""
        if not self.split_rows:
            raise BreakHisError("split_hash(): the split is not set up; call setup() first")
        return split_hash(self.split_rows)

    def data_spec(self) -> DataSpec:
        """The data options that decide which images the model sees."""
        return DataSpec.from_options(self.hparams)

    def _setup_predict(self) -> None:
        if self._predict_ready:
            return
        root = Path(self.predict_root).expanduser()
        if not root.is_dir():
            raise BreakHisError(f"{root}: predict_root is not an existing folder; pass --data.predict_root DIR")
        found = find_images(root)
        if found.skipped_links:
            log.warning(skipped_links_message(root, found.skipped_links))
        files = [(rel, root / rel) for rel in found.images]
        if not files:
            raise BreakHisError(
                f"{root}: no images ({' '.join(IMAGE_EXTENSIONS)}) found in this folder or below; "
                f"pass --data.predict_root pointing at your images"
            )
        if found.others:
            log.warning(skipped_files_message(root, found.others))
        extra_key = f"predict:{root.resolve()}"
        cached = self._load_cache(files, extra_key=extra_key)
        target = self._saved_target()
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
        records = []
        for rel in paths:
            info = try_parse_filename(Path(rel).name)
            if info is None:
                records.append(SampleRecord(str(abs_of[rel]), -1, "", "", None))
                continue
            pid, code = str(info["patient_id"]), str(info["subtype_code"])
            letter = "B" if info["label"] == "benign" else "M"
            group = {"accession": str(info["accession"]), "patient_id": pid, "folder": f"SOB_{letter}_{code}_{pid}"}
            records.append(
                SampleRecord(
                    str(abs_of[rel]),
                    self._label_of(str(info["label"]), code),
                    pid,
                    group[self.group_by],
                    int(info["magnification"]),
                )
            )
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
        picks: list[int] = []
        for c in range(self.num_classes):
            idx = sorted((i for i, r in enumerate(records) if r.label == c), key=lambda i: records[i].path)
            if idx and per_class > 0:
                take = np.unique(np.linspace(0, len(idx) - 1, min(per_class, len(idx))).round().astype(int))
                picks.extend(idx[t] for t in take)
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


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _check_unseen(rows: Sequence[SplitRow], trained_on: str) -> None:
    """Refuse test rows of patients the fitted run trained or validated on (beyond those it tested on itself)."""
    fitted = read_split_csv(trained_on)
    tested = {r.patient_id for r in fitted if r.split == "test"} | {r.group for r in fitted if r.split == "test"}
    seen = {r.patient_id for r in fitted if r.split in ("train", "val")} | {
        r.group for r in fitted if r.split in ("train", "val")
    }
    seen -= tested
    test = [r for r in rows if r.split == "test"]
    leaked = [r for r in test if r.patient_id in seen or r.group in seen]
    if leaked:
        raise BreakHisError(
            f"{len(leaked)} of {len(test)} test images belong to patients the run trained or validated on (e.g. "
            f"{leaked[0].path}, per {trained_on}); a cross-evaluation scores unseen patients only: keep the run's "
            "--data.split, --data.seed, --data.group_by, ratios and folds"
        )


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise BreakHisError(f"{name} {value!r}: unknown value; use one of {', '.join(choices)} (--data.{name})")


@contextlib.contextmanager
def _lock(path: Path):
    from filelock import FileLock

    with FileLock(str(path)):
        yield
