"""``breakhis data summary|check|split``: inspect a BreakHis root, decode-check it, write a split CSV."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from breakhis_lit.data.breakhis import BreakHis
from breakhis_lit.data.cache import decode_images, find_duplicates
from breakhis_lit.data.index import scan
from breakhis_lit.data.splits import GROUP_BY, SPLIT_NAMES, STRATEGIES, write_split_csv
from breakhis_lit.errors import BreakHisError


def build_parser() -> argparse.ArgumentParser:
    """Return the ``breakhis data`` argument parser."""
    parser = argparse.ArgumentParser(prog="breakhis data", description="Inspect, check and split a BreakHis root.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{summary,check,split}")

    p = sub.add_parser("summary", help="count images, classes, subtypes, patients; compare with the official list")
    p.add_argument("--root", required=True, help="folder holding BreaKHis_v1 (or a folder inside it)")
    p.add_argument("--all-files", action="store_true", help="list every missing/unexpected file (default: 100)")

    p = sub.add_parser(
        "check", help="decode every image; exit 1 and name every unreadable file; list byte-identical files"
    )
    p.add_argument("--root", required=True, help="folder holding BreaKHis_v1 (or a folder inside it)")
    p.add_argument("--magnification", default="all", help="40, 100, 200, 400 or all (default)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")

    p = sub.add_parser(
        "split", help="write a split CSV (path, group, patient_id, label, subtype, magnification, split)"
    )
    p.add_argument("--root", required=True, help="folder holding BreaKHis_v1 (or a folder inside it)")
    p.add_argument("--magnification", default="40", help="40, 100, 200, 400 or all (default 40)")
    p.add_argument("--split", default="patient", choices=STRATEGIES, help="split strategy (default patient)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--group-by", default="accession", choices=GROUP_BY, help="grouping key (default accession)")
    p.add_argument("--fold", type=int, default=1, help="official fold (1-5) or k-fold index")
    p.add_argument("--num-folds", type=int, default=5, help="number of folds for --split kfold")
    p.add_argument("--train-ratio", type=float, default=0.6)
    p.add_argument("--val-ratio", type=float, default=0.1)
    p.add_argument("--test-ratio", type=float, default=0.3)
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    return parser


def _summary(args: argparse.Namespace) -> int:
    index = scan(args.root)
    print(json.dumps(index.summary(max_listed=None if args.all_files else 100), indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    index = scan(args.root)
    images = index.select(args.magnification)
    paths = [index.abspath(im) for im in images]
    result = decode_images(paths, size=8, num_workers=args.workers, desc="checking images")
    copies = find_duplicates({str(paths[i]): digest for i, digest in zip(result.ok, result.digests, strict=True)})
    for same in copies:
        print(f"identical: {' = '.join(same)}")
    if copies:
        print(
            f"{len(copies)} set(s) of byte-identical images ({sum(map(len, copies))} files); a split refuses copies "
            f"on two sides or under two patients",
            file=sys.stderr,
        )
    if result.bad:
        for path, reason in result.bad:
            print(f"unreadable: {path} ({reason})")
        print(
            f"{len(result.bad)} of {len(images)} images unreadable; fix or remove them "
            f"(or train with --data.on_bad_image skip)",
            file=sys.stderr,
        )
        return 1
    print(f"{len(images)} images checked: all readable")
    return 0


def _split(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise BreakHisError(f"{out}: already exists; choose another --out or pass --force to overwrite it")
    rows = BreakHis(
        args.root,
        args.magnification,
        split=args.split,
        group_by=args.group_by,
        ratios=(args.train_ratio, args.val_ratio, args.test_ratio),
        fold=args.fold,
        num_folds=args.num_folds,
        seed=args.seed,
    ).resolve()
    if out.parent != Path():
        out.parent.mkdir(parents=True, exist_ok=True)
    write_split_csv(rows, out)
    counts = Counter(r.split for r in rows)
    groups = {s: len({r.group for r in rows if r.split == s}) for s in SPLIT_NAMES}
    print(f"wrote {out}: " + ", ".join(f"{s} {counts[s]} images / {groups[s]} groups" for s in SPLIT_NAMES))
    return 0


_DATA_OPTION = re.compile(r"--data\.([a-z_]+)")


def verb_options(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with ``--data.NAME`` (the option as ``breakhis fit`` spells it) as this verb spells it.

    The data layer's errors name the options of the Lightning verbs (``--data.val_ratio``); ``breakhis data split``
    takes ``--val-ratio``. Options the verb does not take are left as they are.
    """
    accepted = {flag for action in parser._actions for flag in action.option_strings}

    def swap(match: re.Match[str]) -> str:
        flag = "--" + match.group(1).replace("_", "-")
        return flag if flag in accepted else match.group(0)

    return _DATA_OPTION.sub(swap, message)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    """Run ``breakhis data``.

    Args:
        argv: Arguments after ``data`` (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when ``check`` finds unreadable images.

    Raises:
        BreakHisError: For bad input (missing root, unknown magnification, existing --out...).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"summary": _summary, "check": _check, "split": _split}[args.command](args)
    except BreakHisError as err:
        raise BreakHisError(verb_options(str(err), _subparser(parser, args.command))) from None


if __name__ == "__main__":
    raise SystemExit(main())
