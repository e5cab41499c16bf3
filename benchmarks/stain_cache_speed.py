"""Stain benchmark: what stain normalisation adds to building the image cache, and to loading it again.

Two sources: the demo tree of ``configs/demo.yaml`` (``breakhis demo-data``: 576 PNGs of 160 x 105, all
magnifications, 96 px), through ``BreakHisDataModule.setup`` exactly as ``breakhis fit`` runs it (decode, split, fit
the target on the training split, normalise every image, write the caches: ``cold_s``; again with the caches on disk,
the target fitted again as a new fit does: ``warm_s``; as ``test`` or a resume, the run's target read back:
``bound_warm_s``; ``fit_s`` the fit alone), and the 18 real BreakHis PNGs of
``../shared/breakhis/samples`` (700 x 460, 224 px) through the cache functions (decode; fit on 12 of them; normalise
all 18). Each measurement starts from an empty cache folder (cold) and is repeated warm (the caches on disk). Times
are the minimum over ``--repeat`` runs (a shared CPU's noise only ever adds time). The last line is one JSON object.

Usage::

    python benchmarks/stain_cache_speed.py --threads 1
    python benchmarks/stain_cache_speed.py --quick        # seconds: shape check only (40X of the demo tree)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / ".." / "shared" / "breakhis" / "samples"
sys.path.insert(0, str(REPO))

from breakhis_lit.data.cache import load_or_build  # noqa: E402
from breakhis_lit.data.datamodule import BreakHisDataModule  # noqa: E402
from breakhis_lit.data.demo import generate_demo  # noqa: E402
from breakhis_lit.stain.registry import get_normalizer  # noqa: E402
from breakhis_lit.stain.target_file import save_target  # noqa: E402

METHODS = ("none", "macenko", "reinhard")


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    """Minimum wall time of ``fn()`` over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def demo_tree(work: Path, magnification: str | int, size: int, repeat: int) -> dict[str, Any]:
    """Cold and warm ``setup("fit")`` of the demo config's data module, per stain method."""
    root = generate_demo(work / "demo", seed=0)
    out: dict[str, Any] = {"magnification": magnification, "image_size": size}
    for method in METHODS:
        cache = work / f"cache-{method}"

        def setup(method: str = method, cache: Path = cache) -> BreakHisDataModule:
            dm = BreakHisDataModule(root=str(root), magnification=magnification, image_size=size,
                                    cache_dir=str(cache), stain_norm=method)  # fmt: skip
            dm.setup("fit")
            return dm

        def cold(cache: Path = cache, setup: Callable[[], BreakHisDataModule] = setup) -> None:
            shutil.rmtree(cache, ignore_errors=True)
            setup()

        cold_s = best_of(repeat, cold)
        warm_s = best_of(repeat, setup)
        dm = setup()
        target = save_target(work / f"{method}.json", dm.stain_norm_target)

        def bound(method: str = method, cache: Path = cache, target: Path = target) -> None:
            BreakHisDataModule(root=str(root), magnification=magnification, image_size=size, cache_dir=str(cache),
                               stain_norm=method, stain_target=str(target)).setup("test")  # fmt: skip

        train = dm.dataset("train")
        images = train.images[train.rows]
        fit = lambda method=method, images=images: get_normalizer(method).fit(images)  # noqa: E731
        fit_s = best_of(repeat, fit) if method != "none" else 0.0
        out[method] = {
            "cold_s": round(cold_s, 3),
            "warm_s": round(warm_s, 3),
            "bound_warm_s": round(best_of(repeat, bound), 3),
            "fit_s": round(fit_s, 3),
            "images": sum(len(dm.records(s)) for s in ("train", "val", "test")),
            "train_images": len(dm.records("train")),
        }
    return out


def samples(work: Path, size: int, repeat: int) -> dict[str, Any] | None:
    """Decode, fit and normalise the 18 real PNGs through the cache functions."""
    paths = sorted(SAMPLES.glob("*.png")) if SAMPLES.is_dir() else []
    if not paths:
        return None
    files = [(p.name, p) for p in paths]
    cache = work / "cache-samples"

    def decode() -> Any:
        shutil.rmtree(cache, ignore_errors=True)
        return load_or_build(files, size, cache, progress=False)

    out: dict[str, Any] = {"images": len(paths), "image_size": size, "decode_cold_s": round(best_of(repeat, decode), 3)}
    raw = decode()
    for method in METHODS[1:]:
        train = torch.from_numpy(raw.images[:12])
        fit_s = best_of(repeat, lambda method=method, train=train: get_normalizer(method).fit(train))
        target = get_normalizer(method).fit(train)

        def normalise(target: Any = target) -> None:
            for stale in cache.glob("*"):
                if stale.name not in (f"breakhis-{raw.key}.npy", f"breakhis-{raw.key}.json"):
                    stale.unlink()
            load_or_build(files, size, cache, stain_target=target, source=raw, progress=False)

        normalise_s = best_of(repeat, normalise)
        warm_s = best_of(repeat, lambda target=target: load_or_build(files, size, cache, stain_target=target))
        out[method] = {
            "fit_s": round(fit_s, 3),
            "normalise_and_write_s": round(normalise_s, 3),
            "warm_load_s": round(warm_s, 4),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and optionally write) its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (minimum reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="40X of the demo tree, one run: checks that all runs")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {
            "threads": torch.get_num_threads(),
            "repeat": repeat,
            "torch": torch.__version__,
            "demo": demo_tree(work, 40 if args.quick else "all", 32 if args.quick else 96, repeat),
            "samples": samples(work, 64 if args.quick else 224, repeat),
        }
    text = json.dumps(result)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
