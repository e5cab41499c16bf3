"""The run-directory contract: records round-trip, versions are allocated atomically, the README matches it."""

import dataclasses
import json
import re
import threading
from pathlib import Path

import pytest

from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import (
    FILES,
    DataSpec,
    Difference,
    EvalRecord,
    FitRecord,
    GradCAMEntry,
    PredictionRow,
    Resume,
    RunDir,
    RunRecord,
    allocate_run,
    check_eval_name,
    files_markdown,
    read_gradcam_manifest,
    read_predictions,
    read_record,
    run_of_checkpoint,
    versions,
    write_gradcam_manifest,
    write_predictions,
    write_record,
)

README = Path(__file__).resolve().parents[1] / "README.md"
SPEC = DataSpec(40, "binary", "patient", "accession", 0.6, 0.1, 0.3, 1, 5, 0, "error", 224)


def _run_record(**changes) -> RunRecord:
    record = RunRecord(
        experiment="attn",
        version=3,
        model="DALAResNet50",
        backbone="breakhis_lit.models.DALAResNet50",
        root="data/BreaKHis_v1",
        data=SPEC,
        classes=["benign", "malignant"],
        split_hash="ab" * 32,
        data_fingerprint="cd" * 32,
        n_images={"train": 10, "val": 2, "test": 5, "skipped": 0},
        max_epochs=50,
        package_version="0.1.0",
        git_commit=None,
        resumes=[Resume("2026-01-01T00:00:00+00:00", 3, 60)],
    )
    return dataclasses.replace(record, **changes)


def test_records_round_trip(tmp_path):
    run = _run_record()
    assert read_record(write_record(tmp_path / "run.json", run), RunRecord) == run
    fit = FitRecord(12.5, 4, 4, "val/balanced_accuracy", "max", 2, 6.0, 0.9)
    assert read_record(write_record(tmp_path / "fit.json", fit), FitRecord) == fit
    evaluation = EvalRecord(
        name="x40_on_x100",
        model="DALAResNet50",
        data=dataclasses.replace(SPEC, magnification=100),
        differs=[Difference("magnification", 40, 100)],
        classes=["benign", "malignant"],
        split_hash="ef" * 32,
        checkpoint="best.ckpt",
        checkpoint_epoch=2,
        n_images=5,
        n_patients=2,
        n_groups=2,
        metrics={"accuracy": 0.8, "auroc": float("nan")},
        confusion_matrix=[[2, 0], [1, 2]],
        params_total=10,
        params_trainable=10,
    )
    back = read_record(write_record(tmp_path / "metrics.json", evaluation), EvalRecord)
    assert back.metrics == {"accuracy": 0.8, "auroc": None}  # JSON has no NaN
    assert back.cross
    assert dataclasses.replace(back, metrics=evaluation.metrics).differs == evaluation.differs


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable JSON"),
        ("[]", "not a RunRecord"),
        ('{"experiment": "x"}', "missing"),
    ],
)
def test_bad_records_are_one_line_errors(tmp_path, content, message):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(BreakHisError, match=message) as info:
        read_record(tmp_path / "run.json", RunRecord)
    assert "\n" not in str(info.value)
    assert str(tmp_path / "run.json") in str(info.value)


def test_unknown_keys_and_other_schemas_are_refused(tmp_path):
    data = json.loads(json.dumps(dataclasses.asdict(_run_record())))
    (tmp_path / "a.json").write_text(json.dumps({**data, "extra": 1}))
    with pytest.raises(BreakHisError, match="unknown extra"):
        read_record(tmp_path / "a.json", RunRecord)
    (tmp_path / "b.json").write_text(json.dumps({**data, "schema": 99}))
    with pytest.raises(BreakHisError, match="schema"):
        read_record(tmp_path / "b.json", RunRecord)


def test_data_spec_differences():
    other = dataclasses.replace(SPEC, seed=3, magnification="all")
    assert SPEC.differences(other) == [("magnification", 40, "all"), ("seed", 0, 3)]
    options = {**dataclasses.asdict(SPEC), "magnification": "40X", "root": "ignored", "batch_size": 8}
    assert DataSpec.from_options(options) == SPEC


def test_predictions_and_manifest_round_trip(tmp_path):
    rows = [PredictionRow("a.png", "14-1", "14-1", "benign", (0.75, 0.25), "benign")]
    write_predictions(tmp_path / "p.csv", rows, ["benign", "malignant"])
    assert read_predictions(tmp_path / "p.csv", ["benign", "malignant"]) == rows
    with pytest.raises(BreakHisError, match="columns"):
        read_predictions(tmp_path / "p.csv", list("AB"))
    entries = [GradCAMEntry("t_0.png", "t_0_image.png", "a.png", "benign", "malignant", 0.625)]
    write_gradcam_manifest(tmp_path / "gradcam", entries)
    assert read_gradcam_manifest(tmp_path / "gradcam") == entries
    assert read_gradcam_manifest(tmp_path / "nothing") == []


def test_versions_are_allocated_atomically(tmp_path):
    made: list[RunDir] = []
    lock = threading.Lock()

    def allocate() -> None:
        run = allocate_run(tmp_path / "attn")
        with lock:
            made.append(run)

    threads = [threading.Thread(target=allocate) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(run.version for run in made) == list(range(16))
    assert [run.version for run in versions(tmp_path / "attn")] == list(range(15, -1, -1))


def test_run_of_checkpoint(tmp_path):
    run = allocate_run(tmp_path / "attn")
    write_record(run.path / "run.json", _run_record())
    (run.path / "checkpoints").mkdir()
    assert run_of_checkpoint(run.checkpoint("best")) == RunDir(run.path.resolve())
    assert run_of_checkpoint(tmp_path / "elsewhere.ckpt") is None


@pytest.mark.parametrize("name", ["x40_on_x100", "stain.v2", "a-b"])
def test_eval_names(name):
    assert check_eval_name(name) == name


@pytest.mark.parametrize("name", ["test", "predict", "../up", "a/b", "", ".hidden"])
def test_bad_eval_names(name):
    with pytest.raises(BreakHisError, match="--eval_name"):
        check_eval_name(name)


def test_readme_lists_every_file_of_a_run():
    text = README.read_text()
    assert files_markdown() in text
    section = text.split("### What a run writes", 1)[1]
    for name, _ in FILES:
        assert f"`{name}`" in section
    # Every file name the contract defines appears in the table.
    from breakhis_lit import rundir

    names = {v for k, v in vars(rundir).items() if k.isupper() and isinstance(v, str) and re.search(r"\.\w+$", v)}
    table = files_markdown()
    assert all(name in table for name in names), names
