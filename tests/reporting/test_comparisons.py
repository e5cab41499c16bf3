"""The report's comparisons equal a direct computation on the fake runs' predictions; refusals are named."""

import csv

import pytest

from breakhis_lit.evaluation.paired_runs import compare_pairs, shared_images
from breakhis_lit.evaluation.rows import predictions_from_rows
from breakhis_lit.reporting import load_runs, write_report
from breakhis_lit.reporting.comparisons import comparison_rows, headline, report_comparisons
from breakhis_lit.reporting.options import BootstrapOptions
from breakhis_lit.rundir import RunDir
from breakhis_lit.stats import holm

from fake_runs import BINARY_CLASSES, write_fake_run

FAST = BootstrapOptions(n_resamples=300)


def _predictions(run_dir):
    rows = RunDir(run_dir).evaluation().predictions(BINARY_CLASSES)
    return predictions_from_rows(rows, BINARY_CLASSES, str(run_dir))


def _cell(value: str) -> float | None:
    return float(value) if value not in ("", "None") else None


def test_comparison_table_matches_a_direct_computation(fake_logs, tmp_path) -> None:
    written = write_report(load_runs(fake_logs), tmp_path, bootstrap=FAST)
    assert (tmp_path / "comparisons.md") in written
    with (tmp_path / "comparisons.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 4  # 2 baselines x 2 magnifications, accuracy
    expected_p = []
    for row in table:
        model = row["b"]
        pairs = []
        for version in (0, 1):  # seed 0 with seed 0, seed 1 with seed 1: the same test images
            reference = fake_logs / f"dalaresnet50_{row['magnification']}x" / f"version_{version}"
            other = fake_logs / f"{model.lower()}_{row['magnification']}x" / f"version_{version}"
            pairs.append((_predictions(reference), _predictions(other)))
        result = compare_pairs(pairs, metrics=["accuracy"], n_resamples=300, seed=0, method="bca")
        found = result.differences["accuracy"]
        assert row["a"] == "DALAResNet50"
        assert _cell(row["difference"]) == pytest.approx(found.difference.estimate, abs=1e-12)
        assert _cell(row["low"]) == pytest.approx(found.difference.low, abs=1e-12)
        assert _cell(row["high"]) == pytest.approx(found.difference.high, abs=1e-12)
        assert _cell(row["p_value"]) == pytest.approx(found.p_value)
        assert _cell(row["mcnemar_patient_p"]) == pytest.approx(result.mcnemar_patient.p_value)
        assert _cell(row["mcnemar_image_p"]) == pytest.approx(result.mcnemar_image.p_value)
        assert int(row["n_pairs"]) == 2
        expected_p.append(found.p_value)
    adjusted = holm(expected_p)
    assert [_cell(row["p_adjusted"]) for row in table] == pytest.approx(adjusted.adjusted)
    assert [row["significant"] == "True" for row in table] == adjusted.reject
    report = (tmp_path / "report.md").read_text()
    first = report.split("\n\n")[1]
    assert first.startswith("**Does DALAResNet50 beat each baseline here?**")


def test_image_split_against_patient_split_on_shared_images(tmp_path) -> None:
    image = write_fake_run(tmp_path / "logs" / "demo-image" / "version_0", model="DALAResNet50", split="image",
                           quality=0.97, n_images=200)  # fmt: skip
    patient = write_fake_run(tmp_path / "logs" / "demo" / "version_0", model="DALAResNet50", quality=0.75,
                             n_images=200)  # fmt: skip
    notes: list[str] = []
    models, splits = report_comparisons(load_runs(tmp_path / "logs"), options=FAST, note=notes.append)
    assert models == []
    (comparison,) = splits
    assert comparison.pairing == "shared images"
    direct = compare_pairs([shared_images(_predictions(image), _predictions(patient))], metrics=["accuracy"],
                           n_resamples=300, seed=0, method="bca")  # fmt: skip
    assert comparison.result.differences == direct.differences
    (row,) = comparison_rows(splits)
    assert row["difference"] > 0.1
    assert row["significant"]
    written = write_report(load_runs(tmp_path / "logs"), tmp_path / "out", bootstrap=FAST)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "**Does the image split flatter the model?** Yes" in text
    assert any(path.name == "reliability.png" for path in written)


def test_runs_on_different_patients_are_not_compared_and_say_why(tmp_path) -> None:
    write_fake_run(tmp_path / "logs" / "attn" / "version_0", model="DALAResNet50", seed=0)
    write_fake_run(tmp_path / "logs" / "r50" / "version_0", model="resnet50", seed=1)
    notes: list[str] = []
    models, _ = report_comparisons(load_runs(tmp_path / "logs"), options=FAST, note=notes.append)
    assert models == []
    (message,) = notes
    assert "resnet50 vs DALAResNet50 at 40x not compared" in message
    assert "scored on different test patients" in message
    assert "attn/version_0 (test split" in message
    assert "r50/version_0 (test split" in message


def test_headline_answers_the_question() -> None:
    base = {"metric": "accuracy", "magnification": "40", "low": -0.1, "high": 0.1, "p_adjusted": 0.01, "n_pairs": 2}
    better = {**base, "b": "resnet50", "difference": 0.05, "significant": True}
    same = {**base, "b": "vgg16", "difference": 0.01, "significant": False}
    assert headline([better], "DALAResNet50").startswith("**Does DALAResNet50 beat each baseline here?** Yes")
    text = headline([better, same], "DALAResNet50")
    assert "Only partly" in text
    assert "no significant difference from vgg16 at 40×" in text
    assert headline([same], "X").startswith("**Does X beat each baseline here?** No")
    assert "Not answered" in headline([], "X")


def test_headline_summarises_every_metric_and_says_what_one_run_leaves_out() -> None:
    base = {"magnification": "40", "b": "B", "low": 0.01, "high": 0.1, "p_adjusted": 0.01, "n_pairs": 1}
    accuracy = {**base, "metric": "accuracy", "difference": 0.05, "significant": True}
    auroc = {**base, "metric": "auroc", "difference": 0.01, "significant": False}
    text = headline([accuracy, auroc], "A", "B")
    assert text.startswith("**Does A beat B here?** Only partly, after Holm's correction.")
    assert "On accuracy: significantly better in the one comparison." in text
    assert "On AUROC: no significant difference from B at 40×" in text
    assert "Each side is a single run (one training seed)" in text
    assert "`breakhis sweep`" in text
    several = [{**accuracy, "n_pairs": 2}, {**accuracy, "magnification": "100", "n_pairs": 2}]
    text = headline(several, "A", "B")
    assert "On accuracy: significantly better in all 2 comparisons." in text
    assert "single run" not in text
