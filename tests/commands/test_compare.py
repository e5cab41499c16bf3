"""``breakhis compare``: a model against itself gives 0 and p = 1; bad input is one line and exit status 2."""

import csv
import shutil

import pytest

from breakhis_lit.cli import main

from fake_runs import write_fake_run

FAST = ["--n-resamples", "300"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare") / "lightning_logs"
    for seed in (0, 1):
        write_fake_run(root / "attn" / f"version_{seed}", model="DALAResNet50", seed=seed, gradcam=False)
        write_fake_run(root / "r50" / f"version_{seed}", model="resnet50", seed=seed, gradcam=False)
    return root


def _refused(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(["compare", *args, *FAST])
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


def test_a_model_against_itself(logs, tmp_path, capsys) -> None:
    main(["compare", str(logs / "attn"), str(logs / "attn"), "--metric", "accuracy", "--metric", "auroc",
          "--out", str(tmp_path), *FAST])  # fmt: skip
    printed = capsys.readouterr().out
    assert "**Does DALAResNet50 · patient (accession) beat DALAResNet50 · patient (accession) here?** No" in printed
    with (tmp_path / "comparisons.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["metric"] for row in rows] == ["accuracy", "auroc"]
    for row in rows:
        assert float(row["difference"]) == 0
        assert (float(row["low"]), float(row["high"])) == (0, 0)
        assert float(row["p_value"]) == 1
        assert float(row["p_adjusted"]) == 1
        assert float(row["mcnemar_patient_p"]) == 1
        assert row["n_pairs"] == "2"
    assert float(rows[1]["delong_p"]) == 1


def test_two_models_pair_by_split(logs, capsys) -> None:
    main(["compare", str(logs / "attn"), str(logs / "r50"), *FAST])
    printed = capsys.readouterr().out
    assert "| 40× | DALAResNet50 · patient (accession) − resnet50 · patient (accession) | accuracy |" in printed


def test_different_patients_are_refused(logs, capsys) -> None:
    line = _refused([str(logs / "attn" / "version_0"), str(logs / "r50" / "version_1")], capsys)
    assert "attn/version_0 (test split" in line
    assert "r50/version_1 (test split" in line
    assert "different test patients" in line


def test_different_tasks_are_refused(tmp_path, logs, capsys) -> None:
    write_fake_run(tmp_path / "sub" / "version_0", task="subtype", gradcam=False)
    line = _refused([str(logs / "attn" / "version_0"), str(tmp_path / "sub" / "version_0")], capsys)
    assert "different tasks" in line


def test_run_without_predictions_is_refused(tmp_path, logs, capsys) -> None:
    shutil.copytree(logs / "attn" / "version_0", tmp_path / "attn" / "version_0")
    (tmp_path / "attn" / "version_0" / "test" / "predictions.csv").unlink()
    line = _refused([str(tmp_path / "attn" / "version_0"), str(logs / "r50" / "version_0")], capsys)
    assert "predictions.csv: no such file" in line


def test_class_with_one_patient_is_refused(tmp_path, capsys) -> None:
    for model in ("DALAResNet50", "resnet50"):
        write_fake_run(tmp_path / model / "version_0", model=model, task="subtype", n_images=120, gradcam=False)
    line = _refused([str(tmp_path / "DALAResNet50"), str(tmp_path / "resnet50")], capsys)
    assert "test patient(s), fewer than 2" in line


def test_unknown_metric_is_refused(logs, capsys) -> None:
    line = _refused([str(logs / "attn"), str(logs / "r50"), "--metric", "acuracy"], capsys)
    assert "--metric acuracy: unknown" in line


def test_runs_of_one_model_are_told_apart_by_where_they_lie(tmp_path, capsys) -> None:
    for version, quality in ((0, 0.95), (1, 0.8)):
        write_fake_run(tmp_path / "demo" / f"version_{version}", quality=quality, n_images=400, gradcam=False)
    main(["compare", str(tmp_path / "demo" / "version_0"), str(tmp_path / "demo" / "version_1"),
          "--metric", "accuracy", "--metric", "auroc", *FAST])  # fmt: skip
    title, question = capsys.readouterr().out.split("\n\n")[:2]
    a, b = "DALAResNet50 · patient (accession) · demo/version_0", "DALAResNet50 · patient (accession) · demo/version_1"
    assert title == f"# {a} against {b}"
    assert question.startswith(f"**Does {a} beat {b} here?** Yes, after Holm's correction.")
    assert "On accuracy: significantly better in the one comparison." in question
    assert "On AUROC: significantly better in the one comparison." in question
    assert "training-seed variation" in question
