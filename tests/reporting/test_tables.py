import csv
import json
import math

import pytest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.runs import load_runs
from breakhis_lit.reporting.tables import (
    format_cell,
    load_paper_table5,
    load_paper_table6,
    mean_std,
    table5,
    table5_columns,
    table6,
    table6_columns,
    to_markdown,
    write_csv,
)

from fake_runs import write_fake_run


@pytest.fixture
def three_seeds(tmp_path):
    """DALAResNet50 at 40x with accuracies 0.80, 0.85, 0.90 and fit times 100, 130, 160 s."""
    for seed, (accuracy, fit) in enumerate([(0.80, 100.0), (0.85, 130.0), (0.90, 160.0)]):
        run_dir = write_fake_run(
            tmp_path / "logs" / f"attn-40x-seed{seed}" / "version_0",
            seed=seed,
            test={"accuracy": accuracy, "patient_accuracy": 0.5 + 0.25 * seed},
            gradcam=False,
        )
        fit_json = run_dir / "fit.json"
        fit_json.write_text(json.dumps({**json.loads(fit_json.read_text()), "fit_time_s": fit}))
    return load_runs(tmp_path / "logs")


def test_mean_std_by_hand():
    mean, std, n = mean_std([0.80, 0.85, 0.90, None])
    assert (mean, n) == (pytest.approx(0.85), 3)
    assert std == pytest.approx(0.05)  # sqrt(((-.05)^2 + 0 + .05^2) / (3 - 1))
    assert mean_std([0.7]) == (0.7, None, 1)
    assert mean_std([]) == (None, None, 0)


def test_table5_mean_std_n_and_paper(three_seeds):
    (row,) = table5(three_seeds)
    assert row["model"] == "DALAResNet50"
    assert row["paper_model"] == "DALA-ResNet50 (proposed)"
    assert row["magnification"] == "40"
    assert row["split_label"] == "patient (accession)"
    assert row["n"] == 3
    assert row["seeds"] == "0,1,2"
    assert row["accuracy_mean"] == pytest.approx(0.85)
    assert row["accuracy_std"] == pytest.approx(0.05)
    assert row["patient_accuracy_mean"] == pytest.approx(0.75)
    assert row["patient_accuracy_std"] == pytest.approx(0.25)
    f1 = [run.evaluation.metrics["f1_malignant"] for run in three_seeds]
    assert row["f1_malignant_mean"] == pytest.approx(sum(f1) / 3)
    # the paper's Table 5, DALA-ResNet50 at 40x
    assert row["paper_accuracy"] == pytest.approx(0.985)
    assert row["paper_f1_benign"] == pytest.approx(0.970)
    assert row["paper_gmean"] == pytest.approx(0.980)
    assert format_cell(row, "accuracy") == "0.850 ± 0.050"
    markdown = to_markdown([row], table5_columns([row]))
    lines = markdown.splitlines()
    assert lines[0].startswith("| Model | Paper model | Mag. | Split | Test split | n | Accuracy | paper |")
    assert row["test_splits"] == "3 splits"  # three split seeds: three different test sets
    assert (
        "| DALAResNet50 | DALA-ResNet50 (proposed) | 40 | patient (accession) | 3 splits | 3 | 0.850 ± 0.050 | 0.985 |"
        in lines[2]
    )


def test_table6_times_params_and_paper(three_seeds):
    (row,) = table6(three_seeds)
    assert row["n"] == 3
    assert row["params_total"] == 25_611_842
    assert row["fit_time_s_mean"] == pytest.approx(130.0)
    assert row["fit_time_s_std"] == pytest.approx(30.0)
    assert row["paper_convergence_s"] == pytest.approx(2133.02)
    assert row["paper_total_parameters"] == 25_611_842
    markdown = to_markdown([row], table6_columns([row]))
    assert "| 25,611,842 | 25,611,842 | 25,611,842 | 130.0 ± 30.0 |" in markdown
    assert "2133.0" in markdown


def test_single_run_has_no_std(tmp_path):
    write_fake_run(tmp_path / "version_0", model="vgg16", magnification="400", test={"accuracy": 0.8})
    (row,) = table5(load_runs(tmp_path))
    assert row["n"] == 1
    assert row["accuracy_std"] is None
    assert format_cell(row, "accuracy") == "0.800"
    assert row["paper_accuracy"] == pytest.approx(0.837)


def test_groups_split_models_and_magnifications(fake_logs):
    rows = table5(load_runs(fake_logs))
    assert [(r["model"], r["magnification"], r["n"]) for r in rows] == [
        ("DALAResNet50", "40", 2),
        ("resnet50", "40", 2),
        ("vit_small_patch14_dinov2", "40", 2),
        ("DALAResNet50", "100", 2),
        ("resnet50", "100", 2),
        ("vit_small_patch14_dinov2", "100", 2),
    ]
    assert rows[4]["paper_accuracy"] == pytest.approx(0.936)  # ResNet50 at 100x
    assert rows[5]["paper_model"] == "DINOv2-ViT-S/14"


def test_mixed_tasks_get_their_own_metrics(tmp_path):
    write_fake_run(tmp_path / "b" / "version_0", task="binary")
    write_fake_run(tmp_path / "s" / "version_0", task="subtype")
    rows = table5(load_runs(tmp_path))
    assert [row["task"] for row in rows] == ["binary", "subtype"]
    binary, subtype = rows
    assert "f1_benign_mean" in binary
    assert "f1_macro_mean" in subtype
    assert "f1_benign_mean" not in subtype
    assert subtype["paper_accuracy"] is None  # the paper has subtype numbers for none of its models
    headers = to_markdown([subtype], table5_columns([subtype])).splitlines()[0]
    assert "F1 macro" in headers
    assert "paper" not in headers


def test_untested_runs_left_out_of_table5(tmp_path):
    write_fake_run(tmp_path / "version_0")
    write_fake_run(tmp_path / "version_1", seed=1, evaluate=False)
    runs = load_runs(tmp_path)
    assert table5(runs)[0]["n"] == 1
    assert table6(runs)[0]["n"] == 2


def test_paper_tables_shipped():
    table5_rows = load_paper_table5()
    assert len(table5_rows) == 40
    assert table5_rows[("VGG16", "100")]["accuracy"] == pytest.approx(0.8736)
    table6_rows = load_paper_table6()
    assert table6_rows["ResNet50"]["total_parameters"] == 21_797_672


def test_custom_and_bad_paper_table(tmp_path, three_seeds):
    custom = tmp_path / "paper.csv"
    custom.write_text("model,magnification,accuracy\nDALA-ResNet50 (proposed),40X,0.5\n")
    (row,) = table5(three_seeds, paper_table=custom)
    assert row["paper_accuracy"] == 0.5
    assert row["paper_f1_benign"] is None
    bad = tmp_path / "bad.csv"
    bad.write_text("name,acc\nx,1\n")
    with pytest.raises(BreakHisError, match="missing column"):
        table5(three_seeds, paper_table=bad)
    with pytest.raises(BreakHisError, match="no such file"):
        table6(three_seeds, paper_table=tmp_path / "none.csv")


def test_markdown_escapes_pipes_and_formats():
    rows = [{"model": "a|b", "n": 2, "params_total": 1234567, "paper_iba": 0.85, "fit_time_s_mean": 1.25}]
    markdown = to_markdown(rows, ["model", ("n", "runs"), "params_total", "paper_iba", ("fit_time_s", "fit")])
    assert markdown.splitlines() == [
        "| model | runs | params_total | paper_iba | fit |",
        "| --- | --- | --- | --- | --- |",
        "| a\\|b | 2 | 1,234,567 | 0.850 | 1.2 |",
    ]


def test_write_csv_round_trip(tmp_path, three_seeds):
    rows = table5(three_seeds)
    path = write_csv(rows, tmp_path / "t.csv")
    with path.open(newline="") as handle:
        (read,) = list(csv.DictReader(handle))
    assert float(read["accuracy_mean"]) == pytest.approx(0.85)
    assert float(read["paper_accuracy"]) == pytest.approx(0.985)
    assert read["n"] == "3"
    assert math.isclose(float(read["accuracy_std"]), 0.05)
