import pytest

from breakhis_lit.commands.report import main, parse_formats
from breakhis_lit.errors import BreakHisError

from fake_runs import write_fake_runs


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "lightning_logs"
    write_fake_runs(root, models=("DALAResNet50", "seresnet50"), magnifications=("40",), seeds=(0, 1), epochs=4)
    return root


def test_main_writes_report(logs, tmp_path, capsys):
    out = tmp_path / "reports" / "demo"
    assert main([str(logs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report: 4 evaluation(s) in 2 model × magnification group(s)" in printed
    for name in ("table5.md", "table5.csv", "table6.md", "table6.csv", "curves_loss.png", "gradcam_pairs.png"):
        assert (out / name).is_file()
        assert f"wrote {out / name}" in printed
    assert (out / "report.md").is_file()
    table5 = (out / "table5.md").read_text()
    assert "SEResNet50" in table5
    assert "| 0.856 |" in table5  # the paper's SEResNet50 accuracy at 40x


def test_main_csv_only_and_one_run_dir(logs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(logs / "seresnet50_40x" / "version_1"), "--out", str(out), "--format", "csv"]) == 0
    assert (out / "table5.csv").is_file()
    assert not (out / "table5.md").exists()
    assert "report: 1 evaluation(s)" in capsys.readouterr().out


def test_main_empty_directory_fails_cleanly(tmp_path):
    (tmp_path / "lightning_logs" / "attn").mkdir(parents=True)
    with pytest.raises(BreakHisError, match="no fitted runs") as info:
        main([str(tmp_path / "lightning_logs"), "--out", str(tmp_path / "out")])
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_main_missing_directory_names_it(tmp_path):
    with pytest.raises(BreakHisError, match="nope: no such folder"):
        main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")])


def test_main_needs_out(logs):
    with pytest.raises(SystemExit) as info:
        main([str(logs)])
    assert info.value.code == 2


@pytest.mark.parametrize(("text", "formats"), [("md,csv", ["md", "csv"]), ("CSV", ["csv"]), (" md ", ["md"])])
def test_parse_formats(text, formats):
    assert parse_formats(text) == formats


@pytest.mark.parametrize("text", ["", "html", "md,pdf"])
def test_parse_formats_rejects(text):
    with pytest.raises(BreakHisError, match="--format"):
        parse_formats(text)
