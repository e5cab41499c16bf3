"""Test helper: a short demo fit and test of a shipped config (32 px, 40X, two epochs), for the stain tests."""

from __future__ import annotations

from pathlib import Path

from breakhis_lit.cli import main


def fit_and_test(demo_root: Path, tmp: Path, config: str) -> None:
    """``breakhis fit`` then ``breakhis test`` of ``config`` into ``tmp/logs`` (image cache ``tmp/cache``)."""
    common = [
        "--config", config,
        "--data.root", str(demo_root), "--data.cache_dir", str(tmp / "cache"), "--log_root", str(tmp / "logs"),
        "--data.magnification", "40", "--data.image_size", "32", "--data.batch_size", "16",
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false", "--gradcam.every_n_epochs", "0",
    ]  # fmt: skip
    main(["fit", *common])
    main(["test", *common])
