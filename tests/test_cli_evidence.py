"""A run is evidence: later verbs score it on its own split, refuse what would change it, and never rewrite it."""

import ast
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from breakhis_lit.cli import main
from breakhis_lit.data.splits import read_split_csv
from breakhis_lit.rundir import FITTING_LOCK, RunDir, RunRecord, read_record

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "breakhis_lit"
FAST = [
    "--trainer.max_epochs", "2",
    "--data.image_size", "32",
    "--data.batch_size", "16",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--gradcam.every_n_epochs", "0",
    "--gradcam.on_test", "false",
    "--figures.every_n_epochs", "0",
    "--last_checkpoint.min_interval_s", "0",
]  # fmt: skip


def _hashes(folder: Path) -> dict[str, str]:
    """Content hash of every file below ``folder`` (the run directory's state)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def fitted(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One 2-epoch demo fit; tests that write copy its experiment folder first."""
    logs = tmp_path_factory.mktemp("logs")
    common = ["--config", "configs/demo.yaml", "--data.root", str(demo_root), "--data.cache_dir",
              str(logs / "cache"), *FAST]  # fmt: skip
    main(["fit", *common, "--log_root", str(logs)])
    return {"logs": logs, "common": common}


def _copy(fitted: dict[str, object], tmp_path: Path) -> tuple[list[str], RunDir]:
    logs = tmp_path / "logs"
    shutil.copytree(fitted["logs"] / "demo", logs / "demo", copy_function=os.link)  # files are replaced, not edited
    return [*fitted["common"], "--log_root", str(logs)], RunDir(logs / "demo" / "version_0")


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize(
    ("option", "value"),
    [("seed", "3"), ("train_ratio", "0.5"), ("split", "image"), ("group_by", "folder"), ("magnification", "40"),
     ("task", "subtype"), ("image_size", "48")],
)  # fmt: skip
def test_test_refuses_options_that_change_the_split(fitted, tmp_path, capsys, option, value):
    args, run = _copy(fitted, tmp_path)
    before = _hashes(run.path)
    extra = ["--data.val_ratio", "0.2"] if option == "train_ratio" else []
    message = _refused(["test", *args, f"--data.{option}", value, *extra], capsys)
    assert f"--data.{option} {value}" in message
    assert "--eval_name" in message
    assert _hashes(run.path) == before


def test_test_refuses_a_root_with_other_files(fitted, demo_root, tmp_path, capsys):
    args, run = _copy(fitted, tmp_path)
    other = tmp_path / "other" / "BreaKHis_v1"
    shutil.copytree(demo_root, other, copy_function=os.link)
    victim = next(other.rglob("*.png"))
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data + b"\0")
    before = _hashes(run.path)
    with pytest.raises(SystemExit) as info:
        main(["test", *args, "--data.root", str(other)])
    assert info.value.code == 2
    assert "differ in size" in capsys.readouterr().err
    assert _hashes(run.path) == before


def test_test_scores_the_runs_own_test_split_and_keeps_the_fit_record(fitted, tmp_path):
    args, run = _copy(fitted, tmp_path)
    fit_files = {k: v for k, v in _hashes(run.path).items() if "/" not in k or k.startswith("checkpoints/")}
    main(["test", *args])
    after = _hashes(run.path)
    assert {k: after[k] for k in fit_files} == fit_files  # config.yaml, splits.csv, history, checkpoints, records
    test_rows = {r.path for r in read_split_csv(run.splits) if r.split == "test"}
    with (run.evaluation().path / "predictions.csv").open() as f:
        scored = [row["path"] for row in csv.DictReader(f)]
    assert scored
    assert set(scored) <= test_rows
    assert len(scored) == len(test_rows)
    record = run.evaluation().record()
    assert record.split_hash == run.record().split_hash
    assert (run.evaluation().path / "config.yaml").is_file()
    main(["validate", *args])
    assert {k: _hashes(run.path)[k] for k in fit_files} == fit_files
    assert (run.path / "validate" / "config.yaml").is_file()


def test_cross_evaluation_goes_to_its_own_folder(fitted, tmp_path, capsys):
    args, run = _copy(fitted, tmp_path)
    before = _hashes(run.path)
    main(["test", *args, "--data.magnification", "100", "--eval_name", "on_100x"])
    after = _hashes(run.path)
    assert {k: v for k, v in after.items() if k in before} == before
    assert {k.split("/")[0] for k in set(after) - set(before)} == {"evals"}
    record = run.evaluation("on_100x").record()
    assert [(d.option, d.fit, d.eval) for d in record.differs] == [("magnification", "all", 100)]
    assert record.split_hash != run.record().split_hash
    # Another split seed would score patients the run trained on: refused, nothing written.
    message = _refused(["test", *args, "--data.seed", "3", "--eval_name", "seed3"], capsys)
    assert "patients the run trained or validated on" in message
    assert not (run.path / "evals" / "seed3" / "metrics.json").exists()


def test_report_keeps_cross_evaluations_apart(fitted, tmp_path):
    from breakhis_lit.reporting import load_runs, table5

    args, run = _copy(fitted, tmp_path)
    main(["test", *args])
    main(["test", *args, "--data.magnification", "100", "--eval_name", "on_100x"])
    rows = table5(load_runs(run.path))
    assert [(r["magnification"], r["evaluation"]) for r in rows] == [("all", "test"), ("100", "on_100x")]
    assert rows[0]["test_splits"] == run.record().split_hash[:8]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--data.magnification", "100", "--data.seed", "5"], "--data.magnification 100"),
        (["--model.lr", "1e6"], "--model.lr 1000000.0"),
        (["--trainer.precision", "bf16-mixed"], "--trainer.precision bf16-mixed"),
    ],
)
def test_resume_refuses_other_data_model_or_numerics(fitted, tmp_path, capsys, extra, named):
    args, run = _copy(fitted, tmp_path)
    before = _hashes(run.path)
    message = _refused(["fit", *args, "--ckpt_path", "last", *extra], capsys)
    assert named in message
    assert "start a new run" in message
    assert _hashes(run.path) == before


def test_resume_may_extend_max_epochs_and_records_it(fitted, tmp_path):
    args, run = _copy(fitted, tmp_path)
    config = run.config.read_bytes()
    splits = run.splits.read_bytes()
    main(["fit", *args, "--ckpt_path", "last", "--trainer.max_epochs", "3"])
    record = read_record(run.path / "run.json", RunRecord)
    assert [(r.from_epoch, r.max_epochs) for r in record.resumes] == [(2, 3)]
    assert record.max_epochs == 2
    assert run.fit().epochs == 3
    assert run.config.read_bytes() == config
    assert run.splits.read_bytes() == splits
    assert not (run.path.parent / "version_1").exists()


def test_checkpoint_outside_a_run_is_refused(fitted, tmp_path, capsys):
    args, run = _copy(fitted, tmp_path)
    loose = tmp_path / "loose.ckpt"
    shutil.copy(run.checkpoint("best"), loose)
    message = _refused(["test", *args, "--ckpt_path", str(loose)], capsys)
    assert "its split is unknown" in message


def test_failed_fit_leaves_no_run_directory(fitted, tmp_path, capsys):
    args, run = _copy(fitted, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(["fit", *args, "--data.root", str(empty), "--data.demo", "false"], capsys)
    assert sorted(p.name for p in run.path.parent.iterdir()) == ["version_0"]


def test_two_fits_started_together_get_two_runs(demo_root, tmp_path):
    common = ["--config", "configs/demo.yaml", "--data.root", str(demo_root), "--data.cache_dir",
              str(tmp_path / "cache"), "--log_root", str(tmp_path / "logs"), *FAST, "--trainer.max_epochs", "1",
              "--data.magnification", "40", "--data.image_size", "16"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "breakhis_lit", "fit", *common], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    errors = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    runs = sorted((tmp_path / "logs" / "demo").iterdir())
    assert [p.name for p in runs] == ["version_0", "version_1"]
    for path in runs:
        run = RunDir(path)
        assert run.record().version == run.version
        assert run.fit().epochs == 1
        assert run.checkpoint("best").is_file()
        assert run.checkpoint("last").is_file()
        assert json.loads((path / "fit.json").read_text())["epochs"] == 1


def test_callbacks_read_the_module_and_data_through_typed_hooks():
    found = []
    for path in [*(PACKAGE / "callbacks").rglob("*.py"), PACKAGE / "files.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and node.args:
                target = ast.unparse(node.args[0])
                if target in ("pl_module", "trainer.datamodule", "datamodule", "trainer", "self.trainer"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} getattr({target}, ...)")
    assert found == []


def test_predict_on_the_test_split_uses_the_runs_split(fitted, tmp_path, capsys):
    args, run = _copy(fitted, tmp_path)
    _refused(["predict", *args, "--data.seed", "4"], capsys)
    main(["predict", *args])
    out = run.path / "predict" / "predictions-test.csv"
    with out.open() as f:
        scored = {row["path"] for row in csv.DictReader(f)}
    assert scored == {r.path for r in read_split_csv(run.splits) if r.split == "test"}


def test_resume_of_a_run_from_before_the_stain_options(fitted, tmp_path, capsys):
    """A config.yaml without hed_*/stain_norm is a run without jitter or normalisation: resumable as such."""
    args, run = _copy(fitted, tmp_path)
    config = yaml.safe_load(run.config.read_text())
    for key in ("hed_scale", "hed_bias", "stain_norm", "stain_target"):
        config["data"].pop(key, None)
    run.config.unlink()  # a hard link to the fixture's file
    run.config.write_text(yaml.safe_dump(config))
    message = _refused(["fit", *args, "--ckpt_path", "last", "--trainer.max_epochs", "3"], capsys)
    assert "differs from the run's 0.0" in message
    assert "--data.hed_" in message
    main(["fit", *args, "--ckpt_path", "last", "--trainer.max_epochs", "3", "--data.hed_scale", "0",
          "--data.hed_bias", "0"])  # fmt: skip
    assert run.fit().epochs == 3


def test_resume_refuses_another_stain_target(fitted, tmp_path, capsys):
    args, run = _copy(fitted, tmp_path)
    before = _hashes(run.path)
    message = _refused(["fit", *args, "--ckpt_path", "last", "--data.stain_target", str(tmp_path / "t.json")], capsys)
    assert "its own stain target" in message
    assert _hashes(run.path) == before


def test_a_run_being_fitted_is_refused(fitted: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from filelock import FileLock

    args, run = _copy(fitted, tmp_path)
    run = run.path
    with FileLock(str(run / FITTING_LOCK)):  # as a fit in another process holds it
        for verb in (["test"], ["fit", "--ckpt_path", "last"]):
            with pytest.raises(SystemExit) as info:
                main([*verb, *args])
            assert info.value.code == 2
            errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
            assert errors == [
                f"error: {run}: a fit of this run is still going (another process holds its {FITTING_LOCK}); wait "
                "for it to end, or pass --ckpt_path with a checkpoint of a finished run"
            ]
