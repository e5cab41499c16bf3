"""``breakhis stain-shift``: score fitted runs on their test splits under HED stain shifts of growing strength."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import RunDir, find_runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from breakhis_lit.robustness.stain_shift import StainShiftRecord


def build_parser() -> argparse.ArgumentParser:
    """The ``breakhis stain-shift`` argument parser."""
    from breakhis_lit.robustness.stain_shift import DEFAULT_LEVELS, DEFAULT_SEED

    parser = argparse.ArgumentParser(
        prog="breakhis stain-shift",
        description=(
            "Stain-shift robustness: score each run's best checkpoint on its own test split with every image "
            "shifted by HED jitter at k times the training augmentation's strength (scale 0.05, shift 0.02 in OD), "
            "the same draws at every k, then normalised as the run normalises its images. Writes each run's "
            "test/stain_shift.json and .csv (patient-bootstrap 95% intervals of every metric), and into --out "
            "stain_shift.png (accuracy and AUROC against k, one curve per run), stain_shift_examples.png (shifted "
            "test images) and stain_shift.md (every run side by side)."
        ),
    )
    parser.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="a run directory (version_N) or any folder above runs"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder of the figures and the table (created)")
    parser.add_argument(
        "--levels",
        nargs="+",
        type=float,
        default=list(DEFAULT_LEVELS),
        metavar="K",
        help=f"shift strengths, multiples of the training HED jitter (default: {' '.join(map(str, DEFAULT_LEVELS))})",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the shifts (default 0)")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="the run's checkpoint to score: best (default, as `breakhis test`) or last",
    )
    parser.add_argument("--n-resamples", type=int, default=2000, help="bootstrap replicates (default 2000)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1'...")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass (default 128)")
    parser.add_argument("--root", default=None, help="data root (default: each run's data.root)")
    parser.add_argument("--cache-dir", default=None, help="image cache folder (default: each run's, else the default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``breakhis stain-shift``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except BreakHisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from breakhis_lit.robustness.figure import stain_shift_figure
    from breakhis_lit.robustness.stain_shift import check_levels, score_run, write_record
    from breakhis_lit.robustness.table import stain_shift_markdown

    levels = check_levels(args.levels)
    if args.n_resamples < 1 or args.batch_size < 1:
        raise BreakHisError("--n-resamples and --batch-size: must be at least 1; pass e.g. --n-resamples 2000")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = [run for path in args.run_dirs for run in find_runs(path)]
    if not runs:
        raise BreakHisError(f"{' '.join(args.run_dirs)}: no run directories (run.json) found; pass lightning_logs/NAME")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BreakHisError(
            f"--out {args.out}: cannot create it ({err.strerror or err}); pass a writable folder"
        ) from None
    records = []
    for run in runs:
        record = score_run(
            run,
            levels,
            seed=args.seed,
            checkpoint=args.checkpoint,
            n_resamples=args.n_resamples,
            device=device,
            batch_size=args.batch_size,
            root=args.root,
            cache_dir=args.cache_dir,
        )
        json_path, _ = write_record(run, record)
        line = ", ".join(
            f"k={s.level:g}: acc {s.value('accuracy'):.3f} auroc {_fmt(s.value('auroc'))}" for s in record.scores
        )
        print(f"{record.label}: {line} (wrote {json_path})", file=sys.stderr)
        records.append(record)
    figure = stain_shift_figure(records)
    figure.savefig(args.out / "stain_shift.png", dpi=120)
    (args.out / "stain_shift.md").write_text(stain_shift_markdown(records), encoding="utf-8")
    _examples(runs, records, levels, args).savefig(args.out / "stain_shift_examples.png", dpi=72)
    print(f"stain-shift: wrote {args.out / 'stain_shift.png'}, stain_shift_examples.png and stain_shift.md")
    return 0


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _examples(
    runs: list[RunDir], records: list[StainShiftRecord], levels: list[float], args: argparse.Namespace
) -> Figure:
    """Three test images of the first run at every level, and what each normalising run's target makes of them."""
    import yaml

    from breakhis_lit.robustness.figure import shift_examples_figure
    from breakhis_lit.robustness.stain_shift import data_module
    from breakhis_lit.stain.target_file import run_target

    first = runs[0]
    config = yaml.safe_load(first.config.read_text(encoding="utf-8")) or {}
    dm = data_module(first, config, args.root, args.cache_dir)
    dm.setup("test")
    images, _, picked = dm.fixed_examples("test", per_class=2)
    targets = {}
    for run, record in zip(runs, records, strict=True):
        if record.stain_norm != "none" and record.stain_norm not in targets:
            targets[record.stain_norm] = run_target(run.stain_target, record.stain_norm)
    labels = [f"{dm.classes[r.label]} {r.patient_id}" for r in picked]
    return shift_examples_figure(images[:3], levels, targets, seed=args.seed, labels=labels[:3])
