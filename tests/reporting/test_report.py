import shutil

import pytest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting import load_runs, write_report
from breakhis_lit.reporting.report import base_experiment

from fake_runs import write_fake_run


def test_write_report(fake_logs, tmp_path):
    notes = []
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    written = write_report(load_runs(fake_logs), tmp_path / "out", log=notes.append)
    names = [path.name for path in written]
    assert names == [
        "comparisons.md",
        "comparisons.csv",
        "table5.md",
        "table5.csv",
        "table6.md",
        "table6.csv",
        "calibration.md",
        "calibration.csv",
        "curves_loss.png",
        "curves_accuracy.png",
        "confusion.png",
        "gradcam_pairs.png",
        "reliability.png",
        "report.md",
    ]
    assert all(path.is_file() and path.stat().st_size > 0 for path in written)
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
    report = (tmp_path / "out" / "report.md").read_text()
    for name in names[:-1]:
        assert f"({name})" in report
    assert "image-level" in report
    assert "DALA-ResNet50 (proposed)" in report
    assert "no paper counterpart" not in report
    # Each row averages two split seeds, so two test sets: said once per row.
    assert len(notes) == 6
    assert all("scored on 2 different test splits" in note for note in notes)
    table5_md = (tmp_path / "out" / "table5.md").read_text()
    assert table5_md.count("| patient (accession) | 2 splits | 2 | 2 splits, union of 6 patients |") == 6


def test_write_report_again_overwrites_own_files(fake_logs, tmp_path):
    runs = load_runs(fake_logs / "resnet50_40x")
    write_report(runs, tmp_path, formats=["md"])
    (tmp_path / "table5.md").write_text("old")
    written = write_report(runs, tmp_path, formats=["md"])
    assert (tmp_path / "table5.md").read_text() != "old"
    assert not (tmp_path / "table5.csv").exists()
    assert "table5.csv" not in [p.name for p in written]


def test_skipped_gradcam_is_said_not_silent(tmp_path):
    for seed in (0, 1):
        write_fake_run(tmp_path / "logs" / f"x-seed{seed}" / "version_0", seed=seed, gradcam=False)
    notes = []
    written = write_report(load_runs(tmp_path / "logs"), tmp_path / "out", log=notes.append)
    assert "gradcam_pairs.png" not in [p.name for p in written]
    assert any("skipped gradcam_pairs.png" in note for note in notes)
    assert "Skipped: no run has a benign or malignant Grad-CAM overlay" in (tmp_path / "out" / "report.md").read_text()


def test_stale_file_is_reported_not_deleted(fake_logs, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(fake_logs / "resnet50_40x", logs / "resnet50_40x")
    write_report(load_runs(logs), tmp_path / "out")
    for png in logs.rglob("gradcam/*.png"):
        png.unlink()
    notes = []
    write_report(load_runs(logs), tmp_path / "out", log=notes.append)
    assert (tmp_path / "out" / "gradcam_pairs.png").exists()
    assert any("left from an earlier report" in note and "gradcam_pairs.png" in note for note in notes)


def test_mixed_tasks_get_separate_tables(tmp_path):
    write_fake_run(tmp_path / "logs" / "b" / "version_0")
    write_fake_run(tmp_path / "logs" / "s" / "version_0", task="subtype")
    names = [p.name for p in write_report(load_runs(tmp_path / "logs"), tmp_path / "out")]
    assert {"table5.md", "table5_subtype.md", "table6.md", "table6_subtype.csv"} <= set(names)
    subtype = (tmp_path / "out" / "table5_subtype.md").read_text()
    assert "benign/malignant task only" in subtype
    assert "F1 macro" in subtype
    assert "F1 benign" not in subtype


def test_notes_flag_leakage_duplicates_and_unknown_models(tmp_path):
    write_fake_run(tmp_path / "logs" / "a" / "version_0", test={"accuracy": 0.99})
    write_fake_run(tmp_path / "logs" / "a" / "version_1")  # same seed 0 again
    write_fake_run(tmp_path / "logs" / "b" / "version_0", model="convnext_tiny", experiment="other-40x-seed0")
    write_fake_run(tmp_path / "logs" / "c" / "version_0", model="convnext_tiny", experiment="else-40x-seed1", seed=1)
    notes = []
    write_report(load_runs(tmp_path / "logs"), tmp_path / "out", log=notes.append)
    text = "\n".join(notes)
    assert "share seed 0" in text
    assert "red flag" not in text  # the mean of 0.99 and the other run is below 0.97
    assert "no paper counterpart for: convnext_tiny" in text
    assert "experiments else, other are averaged together" in text


def test_leakage_red_flag(tmp_path):
    write_fake_run(tmp_path / "logs" / "version_0", test={"accuracy": 0.99})
    notes = []
    write_report(load_runs(tmp_path / "logs"), tmp_path / "out", log=notes.append)
    assert any("red flag" in note for note in notes)


def test_bad_arguments(fake_logs, tmp_path):
    runs = load_runs(fake_logs)
    with pytest.raises(BreakHisError, match="no runs"):
        write_report([], tmp_path)
    with pytest.raises(BreakHisError, match="--format"):
        write_report(runs, tmp_path, formats=["html"])
    (tmp_path / "file").write_text("")
    with pytest.raises(BreakHisError, match="not a directory"):
        write_report(runs, tmp_path / "file")


@pytest.mark.parametrize(
    ("name", "base"),
    [("attn-40x-seed1", "attn"), ("attn_100x_seed0", "attn"), ("base-allx-seed2", "base"), ("r50x", "r50x")],
)
def test_base_experiment(name, base):
    assert base_experiment(name) == base
