"""Shipped configs: inside the package, one with the checkout's configs/, and ``--config NAME`` finds them."""

from pathlib import Path

import pytest

from breakhis_lit.cli import main
from breakhis_lit.config_files import CONFIG_DIR, resolve_config, shipped_configs

ROOT = Path(__file__).resolve().parents[1]


def test_the_checkout_configs_are_the_shipped_ones() -> None:
    assert CONFIG_DIR == ROOT / "breakhis_lit" / "configs"
    assert (ROOT / "configs").resolve() == CONFIG_DIR
    assert "attn" in shipped_configs()
    assert shipped_configs() == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))


def test_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a folder without configs/, as after pip install
    for value in ("attn", "attn.yaml", "configs/attn.yaml"):
        assert resolve_config(value) == str(CONFIG_DIR / "attn.yaml"), value
    (tmp_path / "attn.yaml").write_text("experiment: mine\n")
    assert resolve_config("attn.yaml") == "attn.yaml"  # an existing file wins
    for value in ("nope", "other/attn.yaml", "attn.json", "{trainer: {max_epochs: 1}}"):
        assert resolve_config(value) == value, value


def test_cli_reads_a_shipped_config_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = []
    monkeypatch.chdir(tmp_path)
    for config in ("demo", str(CONFIG_DIR / "demo.yaml")):
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", config, "--print_config"])
        assert exit_info.value.code in (0, None)
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1]
    assert "experiment: demo" in printed[0]
