"""Stain benchmark: HED jitter against ``BatchAugmentation`` per batch, and Macenko/Reinhard normalisation rates.

``batch_augmentation*`` is the training augmentation without its HED step and ``batch_augmentation_hed*`` with it
(the DataModule's default); ``*_apply`` times a batch with its parameter rows already drawn, as in training (an
epoch's rows are drawn at its start), and ``hed_step_relative_cost`` is what the HED step adds to that.

Images are the 18 real BreakHis samples of ``../shared/breakhis/samples`` squashed to the image size (as the
image cache does) and repeated to fill a batch, or random H&E-like colours when the folder is absent. Times
are the minimum over ``--repeat`` runs after one warm-up (a shared CPU's noise only ever adds time), with the
median beside it. The last line printed is one JSON object (``--out`` writes it too).

Usage::

    python benchmarks/stain_speed.py --threads 1            # batch 32 at 224, normalisation of 64 images
    python benchmarks/stain_speed.py --quick --threads 1    # seconds: shape check only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / ".." / "shared" / "breakhis" / "samples"
sys.path.insert(0, str(REPO))

from breakhis_lit.data.transforms import BatchAugmentation  # noqa: E402
from breakhis_lit.stain import hed_jitter  # noqa: E402
from breakhis_lit.stain.hed_jitter import HEDJitter  # noqa: E402
from breakhis_lit.stain.macenko import MacenkoNormalizer  # noqa: E402
from breakhis_lit.stain.reinhard import ReinhardNormalizer  # noqa: E402


def load_images(n: int, size: int) -> tuple[torch.Tensor, str]:
    """``n`` uint8 ``[3, size, size]`` images: the real samples repeated, or synthetic ones without them."""
    paths = sorted(SAMPLES.glob("*.png")) if SAMPLES.is_dir() else []
    if paths:
        small = []
        for path in paths:
            with Image.open(path) as img:
                small.append(np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)))
        stack = torch.from_numpy(np.stack(small)).permute(0, 3, 1, 2)
        return stack[torch.arange(n) % len(paths)].contiguous(), "samples"
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([200.0, 120.0, 180.0]).view(1, 3, 1, 1)
    noise = torch.randn(n, 3, size, size, generator=g) * 40
    return (base + noise).clamp(0, 255).to(torch.uint8), "synthetic"


def timed(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, dict[str, float]]:
    """Seconds of each ``fn()``: minimum and median of ``repeat`` rounds after one warm-up.

    Each round runs every function once, so a burst of load elsewhere slows all of them alike.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: {"min_s": min(t), "median_s": statistics.median(t)} for name, t in times.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally write) its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="augmentation batch size")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--normalize-images", type=int, default=64, help="images per normalisation call")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size, args.normalize_images, args.repeat = 4, 64, 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    images, source = load_images(max(args.batch, args.normalize_images), args.size)
    batch = images[: args.batch]
    generator = torch.Generator().manual_seed(0)
    base_aug, jitter = BatchAugmentation(hed_scale=0, hed_bias=0), HEDJitter()
    hed_aug = BatchAugmentation()  # with its HED step, as the DataModule builds it by default
    floats = batch.float() / 255
    params = jitter.draw(args.batch, generator)
    rows = base_aug.draw(args.batch, args.size, args.size, generator)
    hed_rows = hed_aug.draw(args.batch, args.size, args.size, generator)

    aug = timed(
        {
            "batch_augmentation": lambda: base_aug(batch, generator=generator),
            "batch_augmentation_hed": lambda: hed_aug(batch, generator=generator),
            # As in training: the epoch's rows were drawn at its start, a batch only applies its own.
            "batch_augmentation_apply": lambda: base_aug(batch, rows),
            "batch_augmentation_hed_apply": lambda: hed_aug(batch, hed_rows),
            "hed_jitter_module": lambda: jitter(batch, generator),
            "hed_jitter_apply": lambda: hed_jitter.apply(floats, params),
            "batch_augmentation_then_hed_apply": lambda: hed_jitter.apply(
                base_aug(batch, generator=generator), jitter.draw(args.batch, generator)
            ),
        },
        args.repeat,
    )
    ms = {k: round(v["min_s"] * 1000, 2) for k, v in aug.items()}
    median_ms = {k: round(v["median_s"] * 1000, 2) for k, v in aug.items()}

    to_norm = images[: args.normalize_images]
    normalizers = {"macenko": MacenkoNormalizer(), "reinhard": ReinhardNormalizer()}
    targets = {name: n.fit(to_norm[:1]) for name, n in normalizers.items()}
    runs = timed(
        {
            **{f"{name}_fit": (lambda n=n: n.fit(to_norm)) for name, n in normalizers.items()},
            **{name: (lambda n=n, t=targets[name]: n.normalize(to_norm, t)) for name, n in normalizers.items()},
        },
        args.repeat,
    )
    norm = {
        name: {
            "normalize_img_s": round(len(to_norm) / runs[name]["min_s"], 1),
            "normalize_img_s_median": round(len(to_norm) / runs[name]["median_s"], 1),
            "fit_img_s": round(len(to_norm) / runs[f"{name}_fit"]["min_s"], 1),
        }
        for name in normalizers
    }

    result = {
        "images": source,
        "batch": args.batch,
        "size": args.size,
        "normalize_images": args.normalize_images,
        "threads": torch.get_num_threads(),
        "repeat": args.repeat,
        "torch": torch.__version__,
        "augmentation_ms": ms,
        "augmentation_ms_median": median_ms,
        "hed_apply_relative_to_batch_augmentation": round(ms["hed_jitter_apply"] / ms["batch_augmentation"], 3),
        "hed_step_relative_cost": round(ms["batch_augmentation_hed_apply"] / ms["batch_augmentation_apply"] - 1, 3),
        "normalization": norm,
    }
    text = json.dumps(result)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
