"""Fabricated run directories shared by the reporting tests."""

import pytest

from fake_runs import write_fake_run, write_fake_runs

MODELS = ("DALAResNet50", "resnet50", "vit_small_patch14_dinov2")
MAGNIFICATIONS = ("40", "100")
SEEDS = (0, 1)


@pytest.fixture(scope="session")
def fake_logs(tmp_path_factory):
    """A lightning_logs-like folder: 3 models x 2 magnifications x 2 seeds, read-only for tests."""
    root = tmp_path_factory.mktemp("fake") / "lightning_logs"
    write_fake_runs(root, models=MODELS, magnifications=MAGNIFICATIONS, seeds=SEEDS, epochs=5)
    return root


@pytest.fixture(scope="session")
def long_label_logs(tmp_path_factory):
    """Runs whose figure labels are long: one model with a long name, all magnifications, two splits, one run each."""
    root = tmp_path_factory.mktemp("long") / "lightning_logs"
    for version, (split, group_by) in enumerate((("patient", "accession"), ("image", ""))):
        write_fake_run(root / f"version_{version}", model="DALAResNet[resnet18]", magnification=None, split=split,
                       group_by=group_by)  # fmt: skip
    return root
