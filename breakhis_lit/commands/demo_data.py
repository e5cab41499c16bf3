"""``breakhis demo-data DIR``: write the synthetic BreakHis-shaped demo dataset."""

from __future__ import annotations

import argparse
import re
import shutil
import time
from pathlib import Path

from breakhis_lit.data.demo import DEFAULT_SIZE, DEMO_MARKER, demo_image_count, generate_demo
from breakhis_lit.errors import BreakHisError


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 160x105")
    return int(m[1]), int(m[2])


def build_parser() -> argparse.ArgumentParser:
    """Return the ``breakhis demo-data`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="breakhis demo-data",
        description="Write a small synthetic BreakHis-shaped dataset (DIR/BreaKHis_v1/..., lesion masks in "
        "DIR/masks/...); train on it with --data.root DIR.",
    )
    parser.add_argument("dir", metavar="DIR", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--patients-per-subtype", type=int, default=3, help="patient folders per subtype (default 3)")
    parser.add_argument(
        "--images-per-magnification",
        type=int,
        default=8,
        help="images per malignant patient and magnification (default 8; benign: half)",
    )
    parser.add_argument(
        "--size", type=_size, default=DEFAULT_SIZE, help=f"image size WxH (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})"
    )
    parser.add_argument("--force", action="store_true", help="replace demo data previously written to DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``breakhis demo-data``.

    Args:
        argv: Arguments after ``demo-data`` (default: ``sys.argv[1:]``).

    Returns:
        0 on success.

    Raises:
        BreakHisError: If DIR already holds data (without --force, or not written by demo-data) or an
            argument is invalid.
    """
    args = build_parser().parse_args(argv)
    out = Path(args.dir)
    targets = [out / "BreaKHis_v1", out / "masks"]
    if any(t.exists() for t in targets):
        if not args.force:
            raise BreakHisError(f"{out}: already holds BreaKHis_v1 or masks; choose another DIR or pass --force")
        if not (out / DEMO_MARKER).is_file():
            raise BreakHisError(
                f"{out}: holds data not written by demo-data (no {DEMO_MARKER}); refusing to replace it"
            )
        for t in targets:
            shutil.rmtree(t, ignore_errors=True)
    start = time.perf_counter()
    root = generate_demo(
        out,
        seed=args.seed,
        patients_per_subtype=args.patients_per_subtype,
        images_per_magnification=args.images_per_magnification,
        size=args.size,
    )
    n = demo_image_count(args.patients_per_subtype, args.images_per_magnification)
    print(f"wrote {n} images to {root} (masks in {out / 'masks'}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
