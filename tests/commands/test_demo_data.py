import json

import pytest

from breakhis_lit.commands.demo_data import main
from breakhis_lit.data.index import scan
from breakhis_lit.errors import BreakHisError


def test_demo_data_cli(tmp_path, capsys):
    out = tmp_path / "demo"
    args = [
        str(out),
        "--seed",
        "2",
        "--patients-per-subtype",
        "2",
        "--images-per-magnification",
        "2",
        "--size",
        "64x40",
    ]
    assert main(args) == 0
    assert "wrote 96 images" in capsys.readouterr().out
    assert len(scan(out).images) == 96
    assert json.loads((out / "demo.json").read_text())["size"] == [64, 40]
    assert any((out / "masks").rglob("*.png"))
    with pytest.raises(BreakHisError, match="--force"):
        main(args)
    assert main([*args, "--force", "--images-per-magnification", "4"]) == 0
    assert len(scan(out).images) == 2 * 4 * 4 * (4 + 2)


def test_force_refuses_foreign_data(tmp_path):
    (tmp_path / "BreaKHis_v1").mkdir()
    with pytest.raises(BreakHisError, match="not written by demo-data"):
        main([str(tmp_path), "--force"])


def test_bad_size(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--size", "big"])
