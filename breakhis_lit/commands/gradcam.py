"""``breakhis gradcam``: Grad-CAM overlays and class probabilities of a trained checkpoint on image files."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from breakhis_lit.errors import BreakHisError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``breakhis gradcam``."""
    parser = argparse.ArgumentParser(
        prog="breakhis gradcam",
        description=(
            "Explain a trained model on image files: writes OUT/<stem>_gradcam.png (the Grad-CAM heat map of "
            "the predicted class, or of --target-class, over the image) and OUT/gradcam.csv (path, predicted "
            "class, class probabilities, explained class). Images are squashed to the training image size, "
            "stain-normalised to the run's target when the run normalised its images, and ImageNet-normalised, "
            "as in training."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="Image files or folders (recursive).")
    parser.add_argument(
        "--ckpt_path",
        "--ckpt-path",
        dest="ckpt_path",
        help="Checkpoint written by `breakhis fit`; with --config also 'best' (default) or 'last' of the "
        "newest run of that config's experiment.",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="CFG",
        help="The run's config, a file or a shipped config's name (repeatable, later files win): finds the "
        "checkpoint by its experiment and log_root.",
    )
    parser.add_argument("--experiment", help="With --config: the run name (default: the config's experiment).")
    parser.add_argument(
        "--log_root", "--log-root", dest="log_root", help="With --config: folder of all runs (default: lightning_logs)."
    )
    parser.add_argument("--out", required=True, type=Path, help="Output folder (created when missing).")
    parser.add_argument(
        "--target-class",
        "--target_class",
        dest="target_class",
        metavar="NAME|INDEX",
        help="Explain this class for every image instead of the predicted one.",
    )
    parser.add_argument(
        "--image-size",
        "--image_size",
        dest="image_size",
        type=int,
        help="Model input side in pixels; default: the checkpoint's data.image_size (else 224).",
    )
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=16)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1'...")
    parser.add_argument("--force", action="store_true", help="Replace existing output files.")
    return parser


def _read_configs(paths: Sequence[str]) -> dict[str, str]:
    """``experiment`` and ``log_root`` of LightningCLI config files (later files win), to find the run.

    Read as plain YAML: LightningCLI's parser would build the model, the data and a run directory to tell them.
    """
    from breakhis_lit.config_files import resolve_config

    merged: dict[str, str] = {}
    for name in paths:
        path = Path(resolve_config(name))
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BreakHisError(f"--config {path}: cannot read it as YAML ({reason}); pass a breakhis config") from None
        if not isinstance(loaded, dict):
            raise BreakHisError(f"--config {path}: not a YAML mapping; pass a breakhis config file")
        merged.update({key: str(loaded[key]) for key in ("experiment", "log_root") if loaded.get(key) is not None})
    return merged


def _resolve_checkpoint(ckpt: str | None, config: dict[str, Any], use_config: bool) -> Path:
    if use_config:
        from breakhis_lit.checkpoints import find_run_checkpoint

        experiment_dir = Path(config.get("log_root", "lightning_logs")) / config.get("experiment", "default")
        path, _ = find_run_checkpoint(experiment_dir, ckpt, default="best")
        return Path(path)
    if ckpt is None:
        raise BreakHisError("--ckpt_path: missing; pass the .ckpt file written by `breakhis fit` (or --config CFG)")
    path = Path(ckpt)
    if not path.is_file():
        raise BreakHisError(f"--ckpt_path {path}: no such file; pass an existing .ckpt file written by `breakhis fit`")
    return path


def _side(value: Any, source: str) -> int:
    if isinstance(value, list | tuple) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BreakHisError(f"{source}={value!r}: not a positive image side; pass --image-size N")
    return value


def _data(explicit_size: int | None, datamodule_hparams: dict[str, Any]) -> Any:
    """The data module of the checkpoint's data options: its classes, image size and normalisation."""
    from breakhis_lit.data import BreakHisDataModule

    size = trained = datamodule_hparams.get("image_size")
    if trained is not None:
        size = trained = _side(trained, "data.image_size")
    if explicit_size is not None:
        size = _side(explicit_size, "--image-size")
        if trained is not None and size != trained:
            print(f"warning: --image-size {size} differs from the training image size {trained}", file=sys.stderr)
    options = {"task": datamodule_hparams.get("task"), "image_size": size}
    return BreakHisDataModule(**{k: v for k, v in options.items() if v is not None})


def _stain_target(ckpt_path: Path, datamodule_hparams: dict[str, Any]) -> Any:
    """The stain target the checkpoint's run normalised its images to, or ``None`` when it normalised none."""
    from breakhis_lit.rundir import run_of_checkpoint
    from breakhis_lit.stain.target_file import run_target

    method = datamodule_hparams.get("stain_norm") or "none"
    if method == "none":
        return None
    run = run_of_checkpoint(ckpt_path)
    if run is None:
        raise BreakHisError(
            f"{ckpt_path}: its run normalised every image ({method}), and its stain target lies in the run "
            "directory; pass the checkpoint inside its run (version_N/checkpoints/)"
        )
    return run_target(run.stain_target, method)


def _target_index(target: str | None, classes: list[str]) -> int | None:
    if target is None:
        return None
    lowered = [c.lower() for c in classes]
    if target.lower() in lowered:
        return lowered.index(target.lower())
    if target.lstrip("-").isdigit():
        index = int(target)
        if 0 <= index < len(classes):
            return index
    raise BreakHisError(
        f"--target-class {target}: not a class of this model; use one of {', '.join(classes)} "
        f"or an index 0-{len(classes) - 1}"
    )


def collect_images(inputs: Sequence[str], exclude: Path | None = None) -> list[Path]:
    """Image files named directly, or found recursively in folders, in input order then sorted per folder.

    Folders are read with :class:`breakhis_lit.data.image_folder.ImageFolder` (its extensions; the other files
    are counted in one warning line on stderr, with an example). Files named directly are always tried.

    Args:
        inputs: Files and folders.
        exclude: A folder whose files are left out (the output folder, so earlier overlays are not re-read).

    Raises:
        BreakHisError: When an input does not exist, a folder cannot be read, or nothing is found.
    """
    from breakhis_lit.data.image_folder import ImageFolder, no_images_message

    found: list[Path] = []
    seen: set[Path] = set()
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            folder = ImageFolder.read(path, exclude=exclude)
            candidates = sorted(folder.paths())
            for line in folder.warnings():
                print(f"warning: {line}", file=sys.stderr)
        elif path.is_file():
            candidates = [path]
        else:
            raise BreakHisError(f"{path}: no such file or folder; pass image files or folders of images")
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    if not found:
        raise BreakHisError(no_images_message(" ".join(inputs), "pass image files or folders of images"))
    return found


def _output_paths(images: list[Path], out: Path, force: bool) -> list[Path]:
    outputs: dict[str, Path] = {}
    for image in images:
        name = f"{image.stem}_gradcam.png"
        if name in outputs:
            raise BreakHisError(
                f"{image}: same output name {name} as {outputs[name]}; explain files with equal names separately"
            )
        outputs[name] = image
    paths = [out / name for name in outputs]
    if not force:
        existing = [p for p in [*paths, out / "gradcam.csv"] if p.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise BreakHisError(f"{existing[0]} exists{more}; pass another --out or --force to replace")
    return paths


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BreakHisError(f"--device {name}: unknown device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BreakHisError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def _load_model(path: Path) -> Any:
    from breakhis_lit.checkpoints import load_classifier

    try:
        return load_classifier(path, map_location="cpu")
    except BreakHisError:
        raise
    except Exception as err:  # mismatched keys, unknown class paths, ...: one line for the user
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise BreakHisError(
            f"{path}: cannot rebuild the model from this checkpoint ({type(err).__name__}: {reason}); "
            "pass a .ckpt written by `breakhis fit` with this version of breakhis_lit"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Run ``breakhis gradcam``.

    Args:
        argv: Arguments after ``gradcam``; ``None`` reads ``sys.argv``.

    Returns:
        The exit status (0).

    Raises:
        BreakHisError: Missing or unreadable checkpoint or images, unknown class, existing outputs.
    """
    from breakhis_lit.checkpoints import read_checkpoint
    from breakhis_lit.data.cache import BadImageError, decode_image
    from breakhis_lit.files import atomic_write_text
    from breakhis_lit.gradcam import compute_cams, overlay, save_png
    from breakhis_lit.stain import normalize_to

    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise BreakHisError(f"--batch-size {args.batch_size}: must be at least 1")
    config = _read_configs(args.config)
    if (args.experiment or args.log_root) and not args.config:
        raise BreakHisError("--experiment/--log_root: only used with --config; pass --config CFG or --ckpt_path PATH")
    config.update({k: v for k, v in (("experiment", args.experiment), ("log_root", args.log_root)) if v})
    ckpt_path = _resolve_checkpoint(args.ckpt_path, config, bool(args.config))
    checkpoint = read_checkpoint(ckpt_path)
    datamodule_hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    del checkpoint
    images = collect_images(args.inputs, exclude=args.out)
    outputs = _output_paths(images, args.out, args.force)
    device = _device(args.device)

    data = _data(args.image_size, datamodule_hparams)
    stain = _stain_target(ckpt_path, datamodule_hparams)
    model = _load_model(ckpt_path)
    backbone = model.backbone.to(device).eval()
    classes, size = list(data.classes), int(data.image_size)
    if len(classes) != backbone.num_classes:
        raise BreakHisError(
            f"{ckpt_path}: the model has {backbone.num_classes} classes but data.task {data.task!r} has "
            f"{len(classes)}; pass the run's --config"
        )
    target = _target_index(args.target_class, classes)
    print(
        f"gradcam: {len(images)} image(s), checkpoint {ckpt_path}, input {size}x{size}, classes {', '.join(classes)}",
        file=sys.stderr,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["path", "prediction", *[f"prob_{c}" for c in classes], "target"])
    with tqdm(total=len(images), desc="gradcam", unit="img") as progress:
        for start in range(0, len(images), args.batch_size):
            batch = images[start : start + args.batch_size]
            try:
                resized = torch.stack([torch.from_numpy(decode_image(p, size)) for p in batch])
                originals = [decode_image(p, None) for p in batch]
            except BadImageError as err:
                raise BreakHisError(f"{err.path}: cannot read the image ({err.reason}); remove or replace it") from None
            if stain is not None:  # as the run's cache holds its images: normalised before the ImageNet step
                resized = normalize_to(resized, stain)
            targets = None if target is None else [target] * len(batch)
            cams, probs = compute_cams(backbone, data.normalize(resized), targets, batch_size=args.batch_size)
            for k, image in enumerate(batch):
                save_png(overlay(originals[k], cams[k]), outputs[start + k])
                pred = int(probs[k].argmax())
                explained = pred if target is None else target
                row = [f"{p:.6f}" for p in probs[k].tolist()]
                writer.writerow([str(image), classes[pred], *row, classes[explained]])
            progress.update(len(batch))
    atomic_write_text(args.out / "gradcam.csv", table.getvalue())
    print(f"wrote {len(images)} overlay(s) and gradcam.csv to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
