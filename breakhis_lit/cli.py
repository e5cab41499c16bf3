"""The ``breakhis`` command line: Lightning's verbs (fit, validate, test, predict, gradcam) plus the package's own.

This module only dispatches, so that the package's verbs start without torch or Lightning: ``breakhis data --help``
imports what ``data`` needs, ``breakhis fit`` imports :mod:`breakhis_lit.lightning_cli` (torch, Lightning, the
models). Its names (``BreakHisCLI``, ``RunPlan``, ...) stay reachable here, imported on first use.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from breakhis_lit.errors import BreakHisError

LIGHTNING_VERBS = ("fit", "validate", "test", "predict", "gradcam")
"""Verbs of :class:`~breakhis_lit.lightning_cli.BreakHisCLI` (``gradcam``: ``predict`` with Grad-CAM overlays)."""

EXTRA_VERBS: dict[str, str] = {
    "data": "breakhis_lit.commands.data",
    "demo-data": "breakhis_lit.commands.demo_data",
    "sweep": "breakhis_lit.commands.sweep",
    "report": "breakhis_lit.commands.report",
    "compare": "breakhis_lit.commands.compare",
    "stain-shift": "breakhis_lit.commands.stain_shift",
}
"""Verbs next to Lightning's, each a module with ``main(argv) -> int``."""

DESCRIPTION = (
    f"BreakHis experiments with PyTorch Lightning. Lightning verbs: {', '.join(LIGHTNING_VERBS)} "
    "(e.g. `breakhis fit --config configs/attn.yaml`). Package verbs: "
    + ", ".join(EXTRA_VERBS)
    + " (e.g. `breakhis data summary --root data/BreaKHis_v1`; `breakhis VERB --help`)."
)


USAGE = f"usage: breakhis {{{','.join((*LIGHTNING_VERBS, *EXTRA_VERBS))}}} ..."
"""The top-level usage line: every verb."""


def _help() -> str:
    """``breakhis --help``: every verb with an example, without building Lightning's parsers."""
    examples = {
        "fit": "breakhis fit --config configs/attn.yaml",
        "validate": "breakhis validate --config configs/attn.yaml --ckpt_path last",
        "test": "breakhis test --config configs/attn.yaml",
        "predict": "breakhis predict --config configs/attn.yaml --data.predict_root my_images/",
        "data": "breakhis data summary --root data/BreaKHis_v1",
        "demo-data": "breakhis demo-data data/demo",
        "gradcam": "breakhis gradcam --config configs/attn.yaml --data.predict_root my_images/",
        "sweep": "breakhis sweep --configs configs/attn.yaml --seeds 0 1 2",
        "report": "breakhis report lightning_logs --out reports/all",
        "compare": "breakhis compare lightning_logs/attn lightning_logs/resnet50 --out reports/attn_vs_resnet50",
        "stain-shift": "breakhis stain-shift lightning_logs/attn --out reports/stain",
    }
    lines = [USAGE, "", DESCRIPTION, "", "verbs:"]
    lines += [
        f"  {verb:12s} {examples.get(verb, f'breakhis {verb} --help')}" for verb in (*LIGHTNING_VERBS, *EXTRA_VERBS)
    ]
    lines += [
        "",
        "`breakhis VERB --help` lists a verb's options (`breakhis fit --model.backbone.help DALAResNet50`: a",
        "backbone's). The package verbs' options take hyphens or underscores (--n-resamples, --n_resamples).",
    ]
    return "\n".join(lines)


def __getattr__(name: str) -> Any:
    """The Lightning side's names (``BreakHisCLI``, ``RunPlan``, ...), imported on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    module = importlib.import_module("breakhis_lit.lightning_cli")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def _extra_verb(name: str) -> Callable[[list[str]], int]:
    return importlib.import_module(EXTRA_VERBS[name]).main


def _hyphenated(argv: list[str]) -> list[str]:
    """The package verbs' options spelled with hyphens: ``--n_resamples`` is ``--n-resamples``.

    What follows a bare ``--`` (``breakhis sweep``'s options for Lightning's verbs) is passed on as given.
    """
    cut = argv.index("--") if "--" in argv else len(argv)
    out = []
    for arg in argv[:cut]:
        if arg.startswith("--") and "_" in arg.split("=", 1)[0]:
            name, *value = arg.split("=", 1)
            arg = "=".join([name.replace("_", "-"), *value])
        out.append(arg)
    return out + argv[cut:]


def main(args: Any = None) -> None:
    """Entry point of ``breakhis`` (and ``python -m breakhis_lit``).

    Args:
        args: Command-line arguments; ``None`` reads ``sys.argv`` (a dict is passed to LightningCLI as is).
    """
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else None
    if argv is not None and (not argv or argv[0] in ("-h", "--help")):
        print(_help(), file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    if argv and not argv[0].startswith("-") and argv[0] not in (*LIGHTNING_VERBS, *EXTRA_VERBS):
        print(
            f"{USAGE}\nerror: unknown verb {argv[0]!r}; use one of {', '.join((*LIGHTNING_VERBS, *EXTRA_VERBS))}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        if argv and argv[0] in EXTRA_VERBS:
            code = _extra_verb(argv[0])(_hyphenated(argv[1:]))
            if code:
                raise SystemExit(code)
            return
        from breakhis_lit.lightning_cli import run

        run(args)
    except BreakHisError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":  # pragma: no cover
    main()
