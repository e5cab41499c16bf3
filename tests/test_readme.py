"""The README's parameter table matches the models the configs build."""

import re
from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from breakhis_lit.models import Backbone

ROOT = Path(__file__).resolve().parents[1]


def _readme_rows() -> list[tuple[str, int]]:
    rows = []
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\| `configs/(\w+)\.yaml` \|.*\| ([\d,]+)\b", line)
        if match:
            rows.append((match.group(1), int(match.group(2).replace(",", ""))))
    return rows


def test_readme_lists_every_config() -> None:
    assert sorted(name for name, _ in _readme_rows()) == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize(("name", "count"), _readme_rows())
def test_parameter_count(name: str, count: int) -> None:
    backbone = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["model"]["backbone"]
    parser = ArgumentParser()
    parser.add_subclass_arguments(Backbone, "backbone")
    with torch.device("meta"):  # shapes only: no memory, no weights
        model = parser.instantiate_classes(parser.parse_object({"backbone": backbone})).backbone
    assert sum(p.numel() for p in model.parameters()) == count
