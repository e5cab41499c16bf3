"""The run's stain target (``RunRecorder``): written by a fresh fit, read back by test, resume and predict."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from breakhis_lit.cli import main
from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import STAIN_TARGET
from breakhis_lit.stain import MacenkoNormalizer, load_target


def _common(demo_root: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        "--config", "configs/demo_macenko.yaml",
        "--data.root", str(demo_root), "--data.cache_dir", str(tmp / "cache"), "--log_root", str(tmp / "logs"),
        "--data.magnification", "40", "--data.image_size", "32", "--data.batch_size", "16",
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false", "--gradcam.every_n_epochs", "0",
        *extra,
    ]  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def macenko_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    tmp = tmp_path_factory.mktemp("stain_run")
    common = _common(demo_root, tmp)
    main(["fit", *common])
    return tmp / "logs" / "demo_macenko" / "version_0", common


def test_fit_saves_the_target_fitted_on_its_training_split(macenko_run: tuple[Path, list[str]]) -> None:
    run, _ = macenko_run
    target = load_target(run / STAIN_TARGET)
    assert target.method == "macenko"
    config = (run / "config.yaml").read_text()
    assert "stain_norm: macenko" in config
    assert "stain_target: null" in config  # fitted, not given


def test_test_and_resume_reuse_the_saved_target(
    macenko_run: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, common = macenko_run
    saved = (run / STAIN_TARGET).read_text()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stain target was fitted again")

    monkeypatch.setattr(MacenkoNormalizer, "fit", refuse)
    main(["test", *common])
    assert json.loads((run / "test" / "metrics.json").read_text())["n_images"] > 0
    assert f"stain_target: {run / STAIN_TARGET}" in (run / "test" / "config.yaml").read_text()
    main(["fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", "last"])  # one more epoch
    assert (run / STAIN_TARGET).read_text() == saved
    assert len(json.loads((run / "run.json").read_text())["resumes"]) == 1


def test_a_test_with_another_stain_option_is_refused(
    macenko_run: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    run, common = macenko_run
    before = _files(run)
    with pytest.raises(SystemExit) as info:
        main(["test", *common, "--data.stain_norm", "none"])
    assert info.value.code == 2
    assert "pass --data.stain_norm macenko" in capsys.readouterr().err
    assert _files(run) == before  # refused before any logger or evaluation folder is made
    with pytest.raises(SystemExit):
        main(["test", *common, "--data.stain_target", str(run / "other.json")])
    assert "a fitted run is scored with its own stain target" in capsys.readouterr().err


def test_a_fit_without_normalisation_saves_the_none_target(demo_root: Path, tmp_path: Path) -> None:
    main(["fit", *_common(demo_root, tmp_path, "--data.stain_norm", "none", "--experiment", "plain")])
    assert load_target(tmp_path / "logs" / "plain" / "version_0" / STAIN_TARGET).method == "none"


def test_the_recorder_needs_the_data_module() -> None:
    from types import SimpleNamespace

    from breakhis_lit.callbacks.run_record import RunRecorder
    from breakhis_lit.rundir import RunDir

    trainer = SimpleNamespace(is_global_zero=True, datamodule=object())
    with pytest.raises(BreakHisError, match="BreakHisDataModule"):
        RunRecorder(RunDir(Path("x"))).setup(trainer, None, "fit")


def test_gradcam_and_predict_use_the_runs_target(
    macenko_run: tuple[Path, list[str]], demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's test images score in gradcam as in `test`: normalised to the run's target.

    A predict folder with a contradicting --data.stain_norm is refused before anything is written.
    """
    run, common = macenko_run
    main(["test", *common])
    with (run / "test" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))[:6]
    folder = tmp_path / "folder"
    folder.mkdir()
    for row in rows:
        shutil.copy(next(demo_root.rglob(Path(row["path"]).name)), folder)
    main(["gradcam", *common, "--data.predict_root", str(folder), "--cam.out", str(tmp_path / "cams")])
    with (tmp_path / "cams" / "gradcam.csv").open() as f:
        scored = {Path(r["path"]).name: float(r["prob_malignant"]) for r in csv.DictReader(f)}
    assert scored == pytest.approx({Path(r["path"]).name: float(r["prob_malignant"]) for r in rows}, abs=1e-4)

    before = _files(run)
    with pytest.raises(SystemExit) as info:
        main(["predict", *common, "--data.predict_root", str(folder), "--data.stain_norm", "none"])
    assert info.value.code == 2
    assert "pass --data.stain_norm macenko" in capsys.readouterr().err
    assert _files(run) == before
