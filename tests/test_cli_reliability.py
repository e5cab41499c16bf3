"""Reliability of the command line: kill and resume, two processes (DDP on the CPU), bad input, NaN losses.

These run ``python -m breakhis_lit`` in subprocesses, as a user would (DDP re-launches the command line).
"""

import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch  # noqa: F401  # imported here, not under capsys: its log handler keeps the real stderr
import pytest
import torch

from breakhis_lit.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo.yaml")


def _args(demo_root: Path, logs: Path, *extra: str) -> list[str]:
    return [
        "--config", DEMO,
        "--data.root", str(demo_root),
        "--data.cache_dir", str(logs.parent / "cache"),
        "--log_root", str(logs),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.deterministic", "true",
        "--gradcam.every_n_epochs", "1000",
        "--gradcam.on_test", "false",
        "--data.image_size", "48",  # a quarter of the demo's pixels: the same steps, faster
        *extra,
    ]  # fmt: skip


def _breakhis(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "breakhis_lit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def full_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The logs of an uninterrupted 3-epoch fit (experiment ``full``), for the resumed runs to equal."""
    logs = tmp_path_factory.mktemp("full") / "logs"
    full = _breakhis("fit", *_args(demo_root, logs, "--trainer.max_epochs", "3"), "--experiment", "full")
    assert full.returncode == 0, full.stderr[-2000:]
    assert "litlogger" not in full.stderr  # Lightning's advertisement, silenced
    assert "LeafSpec" not in full.stderr  # Lightning's use of a deprecated torch API, silenced
    return logs


def _assert_same_run(full: Path, resumed: Path) -> None:
    """The resumed run's weights equal the uninterrupted one's bit for bit, and so does its history."""
    a = torch.load(full / "checkpoints/last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints/last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    rows_a = list(csv.DictReader((full / "history.csv").open()))
    rows_b = list(csv.DictReader((resumed / "history.csv").open()))
    assert [r["epoch"] for r in rows_b] == ["0", "1", "2"]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        # Every epoch's row is whole, the one last.ckpt was written in too (its training metrics are computed
        # before validation, so the checkpoint holds them), and equal but for timings.
        timing = {"elapsed_s", "train/throughput_img_s"}
        keys = [k for k in row_a if k not in timing]
        assert {k: row_a[k] for k in keys} == {k: row_b[k] for k in keys}
        assert row_b["train/loss"]
        assert row_b["train/balanced_accuracy"]


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell starts children with SIGINT ignored


@pytest.mark.slow
def test_ctrl_c_exits_130_and_resumes_from_the_last_epoch(demo_root: Path, full_run: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    # No best.ckpt, so that last.ckpt is written only by its interval (60 s: after the first epoch alone).
    common = _args(demo_root, logs, "--trainer.max_epochs", "3", "--checkpoint.save_top_k", "0")
    cmd = [sys.executable, "-m", "breakhis_lit", "fit", *common, "--experiment", "ctrl_c"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_default,
    )  # fmt: skip
    run = logs / "ctrl_c" / "version_0"
    history = run / "history.csv"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if history.is_file() and len(history.read_text().splitlines()) >= 3:  # epochs 0 and 1 done, 2 running
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"{run / 'checkpoints' / 'last.ckpt'} now holds the end of epoch 1" in stderr
    assert stderr.rstrip().endswith("interrupted")
    assert torch.load(run / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 1  # not 0, the interval's

    resumed = _breakhis("fit", *common, "--experiment", "ctrl_c", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (logs / "ctrl_c" / "version_1").exists()
    _assert_same_run(full_run / "full" / "version_0", run)


@pytest.mark.slow
def test_killed_fit_resumes_to_the_same_result(demo_root: Path, full_run: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    common = _args(demo_root, logs, "--trainer.max_epochs", "3")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "breakhis_lit", "fit", *common, "--experiment", "killed"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = logs / "killed" / "version_0" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.exists(), "no checkpoint before the deadline"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(last, weights_only=True)["epoch"] < 2, "killed too late to test resuming"

    resumed = _breakhis("fit", *common, "--experiment", "killed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "using checkpoint" in resumed.stderr
    assert not (logs / "killed" / "version_1").exists()  # resumed in place

    _assert_same_run(full_run / "full" / "version_0", logs / "killed" / "version_0")


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(demo_root: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    common = _args(demo_root, logs, "--trainer.max_epochs", "1", "--experiment", "ddp", "--data.sampler", "oversample")
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    fit = _breakhis("fit", *common, *ddp)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run = logs / "ddp" / "version_0"
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert not (logs / "ddp" / "version_1").exists()  # one run directory, written by rank zero

    images = tmp_path / "images"  # gradcam on two processes: each writes its shard's overlays, rank zero the CSV
    images.mkdir()
    sources = sorted((demo_root).rglob("*.png"))[:3]
    for source in sources:
        shutil.copy(source, images / source.name)
    cams = tmp_path / "cams"
    gradcam = _breakhis("gradcam", *common, *ddp, "--data.predict_root", str(images), "--cam.out", str(cams))
    assert gradcam.returncode == 0, gradcam.stderr[-3000:]
    overlays = sorted(f"{s.stem}_gradcam.png" for s in sources)
    assert sorted(p.name for p in cams.iterdir()) == [*overlays, "gradcam.csv"]
    with (cams / "gradcam.csv").open(newline="") as f:
        assert [Path(r["path"]).name for r in csv.DictReader(f)] == [s.name for s in sources]

    two = _breakhis("test", *common, *ddp)
    assert two.returncode == 0, two.stderr[-3000:]
    metrics_two = json.loads((run / "test" / "metrics.json").read_text())
    one = _breakhis("test", *common, "--trainer.devices", "1", "--trainer.accelerator", "cpu")
    assert one.returncode == 0, one.stderr[-3000:]
    metrics_one = json.loads((run / "test" / "metrics.json").read_text())
    assert metrics_one["n_images"] == metrics_two["n_images"]
    assert metrics_one["split_hash"] == metrics_two["split_hash"]
    assert metrics_one["confusion_matrix"] == metrics_two["confusion_matrix"]
    for key, value in metrics_one["metrics"].items():
        if isinstance(value, float):
            assert value == pytest.approx(metrics_two["metrics"][key], abs=1e-5), key
        else:
            assert value == metrics_two["metrics"][key], key


def _fails_with(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code not in (0, None)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def test_bad_input_matrix(demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    base = _args(demo_root, logs, "--trainer.max_epochs", "1")
    missing = tmp_path / "nowhere"
    assert str(missing) in _fails_with(capsys, "fit", *base, "--data.root", str(missing), "--data.demo", "false")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert str(empty) in _fails_with(capsys, "fit", *base, "--data.root", str(empty), "--data.demo", "false")
    assert "magnification" in _fails_with(capsys, "fit", *base, "--data.magnification", "50")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert "--log_root" in _fails_with(capsys, "fit", *base, "--log_root", str(not_a_folder / "logs"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00" * 64)
    assert "not a readable PyTorch checkpoint" in _fails_with(capsys, "test", *base, "--ckpt_path", str(junk))
    assert "--last_checkpoint.min_interval_s -1" in _fails_with(
        capsys, "fit", *base, "--last_checkpoint.min_interval_s", "-1"
    )
    assert "--figures.every_n_epochs -2" in _fails_with(capsys, "fit", *base, "--figures.every_n_epochs", "-2")
    with pytest.raises(SystemExit) as exit_info:  # a config typo: jsonargparse names the key
        main(["fit", *base, "--trainer.max_epohs", "1"])
    assert exit_info.value.code == 2
    assert "max_epohs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # an abbreviated option is a typo, not silently max_epochs
        main(["fit", *base, "--trainer.max_epoch", "1"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --trainer.max_epoch" in capsys.readouterr().err


def test_non_finite_loss_stops_the_run(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from breakhis_lit.models import classifier

    original = classifier.BreakHisClassifier._loss

    def poisoned(self, logits, labels):
        loss = original(self, logits, labels)
        return loss * float("nan") if self.current_epoch == 1 and self.training else loss

    monkeypatch.setattr(classifier.BreakHisClassifier, "_loss", poisoned)
    logs = tmp_path / "logs"
    message = _fails_with(capsys, "fit", *_args(demo_root, logs, "--trainer.max_epochs", "3"))
    assert "non-finite in epoch 1 at step" in message
    last = logs / "demo" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 0  # the last good epoch, not the poisoned one
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 200 MB tmpfs (where mounting is allowed), else a folder whose second checkpoint write finds the disk full."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        saves = {"n": 0}
        real_save = torch.save

        def save(obj: object, f: object, *args: object, **kwargs: object) -> None:
            saves["n"] += 1
            if saves["n"] > 1:  # a checkpoint is ~136 MB: the second one does not fit on 200 MB
                raise OSError(errno.ENOSPC, "No space left on device")
            real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", save)
    yield folder
    if mounted.returncode == 0:
        subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_is_one_line_and_keeps_the_checkpoints(
    demo_root: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = small_disk / "logs"
    args = _args(demo_root, logs, "--trainer.max_epochs", "3", "--last_checkpoint.min_interval_s", "0")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--data.image_size", "32"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    run = logs / "demo" / "version_0"
    assert f"{run / 'checkpoints'}/" in errors[0]
    assert ".ckpt: no space left to write it (" in errors[0]
    assert " free of " in errors[0]
    # The first epoch's checkpoints load; no partial file is left; the run's records are there.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = torch.load(run / "checkpoints" / name, weights_only=True)
        assert checkpoint["epoch"] == 0
    for name in ("run.json", "config.yaml", "splits.csv", "history.csv"):
        assert (run / name).is_file(), name


def test_weights_blowing_up_with_a_finite_loss_stop_the_run(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from breakhis_lit.models import classifier

    def blow_up(self, outputs, batch, batch_idx):
        # After the last optimiser step of epoch 1 (its loss was finite), as a learning rate grown 1e4-fold does.
        if self.current_epoch == 1 and batch_idx == self.trainer.num_training_batches - 1:
            with torch.no_grad():
                for parameter in self.parameters():
                    parameter.fill_(float("inf"))

    monkeypatch.setattr(classifier.BreakHisClassifier, "on_train_batch_end", blow_up, raising=False)
    logs = tmp_path / "logs"
    args = _args(demo_root, logs, "--trainer.max_epochs", "3", "--data.image_size", "32")
    message = _fails_with(capsys, "fit", *args)
    assert "model outputs became non-finite in epoch 1 (validation after step " in message
    assert "--model.lr_scheduler" in message
    last = logs / "demo" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["epoch"] == 0  # the last good epoch
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())
