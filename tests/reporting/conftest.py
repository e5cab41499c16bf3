"""Fabricated run directories shared by the reporting tests."""

import pytest

from fake_runs import write_fake_runs

MODELS = ("DALAResNet50", "resnet50", "vit_small_patch14_dinov2")
MAGNIFICATIONS = ("40", "100")
SEEDS = (0, 1)


@pytest.fixture(scope="session")
def fake_logs(tmp_path_factory):
    """A lightning_logs-like folder: 3 models x 2 magnifications x 2 seeds, read-only for tests."""
    root = tmp_path_factory.mktemp("fake") / "lightning_logs"
    write_fake_runs(root, models=MODELS, magnifications=MAGNIFICATIONS, seeds=SEEDS, epochs=5)
    return root
