"""``breakhis stain-shift``: every run's records in its test folder, the figures and the side-by-side table."""

from __future__ import annotations

from pathlib import Path

import pytest

from breakhis_lit.cli import main
from breakhis_lit.robustness.stain_shift import read_record

from stain_runs import fit_and_test


@pytest.fixture(scope="module")
def runs(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("stain_shift_cmd")
    fit_and_test(demo_root, tmp, "configs/demo_hed.yaml")
    fit_and_test(demo_root, tmp, "configs/demo_macenko.yaml")
    return tmp


def test_writes_records_figures_and_table(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = runs / "report"
    cache = str(runs / "cache")
    args = ["--out", str(out), "--levels", "0", "1", "3", "--n_resamples", "100", "--cache_dir", cache]
    main(["stain-shift", str(runs / "logs"), *args])
    for name in ("stain_shift.png", "stain_shift_examples.png", "stain_shift.md"):
        assert (out / name).stat().st_size > 1000, name
    for experiment in ("demo_hed", "demo_macenko"):
        record = read_record(runs / "logs" / experiment / "version_0" / "test" / "stain_shift.json")
        assert [s.level for s in record.scores] == [0.0, 1.0, 3.0]
        assert (runs / "logs" / experiment / "version_0" / "test" / "stain_shift.csv").is_file()
    table = (out / "stain_shift.md").read_text()
    assert "| demo_hed/version_0 | HED 0.05/0.02 |" in table
    assert "| demo_macenko/version_0 | macenko |" in table
    assert "k=3: acc" in capsys.readouterr().err
    main(["stain-shift", str(runs / "logs" / "demo_hed"), *args, "--checkpoint", "last"])
    assert (runs / "logs" / "demo_hed" / "version_0" / "test" / "stain_shift_last.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--levels", "-1"], "--levels -1.0: distinct multiples"),
        (["--n_resamples", "0"], "--n-resamples and --batch-size: must be at least 1"),
    ],
)
def test_bad_options_are_named(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["stain-shift", str(runs / "logs"), "--out", str(tmp_path), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_folder_without_runs_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["stain-shift", str(tmp_path), "--out", str(tmp_path / "out")])
    assert "no run directories (run.json) found" in capsys.readouterr().err
