"""End-to-end tests of the ``breakhis`` command line, in-process and on the CPU, on synthetic demo data."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from breakhis_lit.checkpoints import load_classifier
from breakhis_lit.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def run_cli(*args: str) -> None:
    main(list(args))


@pytest.fixture(scope="module")
def trained(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One short fit, then test without --ckpt_path, on the demo config."""
    logs = tmp_path_factory.mktemp("logs")
    common = [
        "--config", "configs/demo.yaml",
        "--log_root", str(logs),
        "--data.root", str(demo_root),
        "--data.cache_dir", str(logs / "cache"),
        "--trainer.max_epochs", "2",
        "--data.image_size", "48",
        "--trainer.enable_progress_bar", "false",
        "--gradcam.every_n_epochs", "1",
        "--figures.every_n_epochs", "1",
    ]  # fmt: skip
    run_cli("fit", *common)
    run_cli("test", *common)
    return {"logs": logs, "run": logs / "demo" / "version_0", "common": common}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_prints(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(config), "--print_config")
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: breakhis_lit.models." in printed
    assert "experiment:" in printed


def test_fit_then_test_writes_the_run(trained: dict[str, object]) -> None:
    run = trained["run"]
    for name in ("config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt", "splits.csv", "history.csv",
                 "run.json", "fit.json", "test/config.yaml", "test/metrics.json", "test/predictions.csv",
                 "test/gradcam/manifest.csv"):  # fmt: skip
        assert (run / name).is_file(), name
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    assert metrics["model"] == "DALAResNet[resnet18]"
    assert metrics["checkpoint"].endswith("best.ckpt")
    assert json.loads((run / "fit.json").read_text())["epochs"] == 2
    assert metrics["params_total"] == sum(
        p.numel() for p in load_classifier(run / "checkpoints/best.ckpt").parameters()
    )
    for key in ("accuracy", "f1_benign", "f1_malignant", "iba", "gmean", "auroc", "patient_accuracy",
                "patient_recognition_rate"):  # fmt: skip
        assert key in metrics["metrics"], key
    assert len(metrics["confusion_matrix"]) == 2
    with (run / "test" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == metrics["n_images"] > 0
    assert set(rows[0]) >= {"path", "patient_id", "label", "prob_benign", "prob_malignant", "prediction"}
    assert sum(r["label"] == r["prediction"] for r in rows) / len(rows) == pytest.approx(metrics["metrics"]["accuracy"])
    history = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in history] == [0, 1]
    assert {"train/loss", "val/loss", "train/accuracy", "val/accuracy"} <= set(history[0])


def test_tensorboard_holds_scalars_images_and_figures(trained: dict[str, object]) -> None:
    tags: dict[str, list[str]] = {"scalars": [], "images": [], "tensors": []}
    for events in trained["run"].rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
        acc.Reload()
        for kind in tags:
            tags[kind] += acc.Tags()[kind]
    for tag in (
        "train/loss",
        "val/loss",
        "val/accuracy",
        "val/auroc",
        "train/throughput_img_s",
        "lr-AdamW",
        "test/iba",
    ):
        assert tag in tags["scalars"], tag
    for tag in ("val/confusion_matrix", "test/confusion_matrix", "val/gradcam", "test/gradcam"):
        assert tag in tags["images"], tag
    assert "val/pr_curve" in tags["tensors"]
    assert "test/pr_curve" in tags["tensors"]
    raw = b"".join(p.read_bytes() for p in trained["run"].rglob("events.out.tfevents.*"))
    assert b"_hparams_/session_start_info" in raw  # the HPARAMS tab
    assert "hparams/test_accuracy" in tags["scalars"]
    assert "epoch" not in tags["scalars"]  # Lightning's epoch scalar: one point a chart, shown first


def test_tensorboard_opens_on_train_vs_val_curves(trained: dict[str, object]) -> None:
    from tensorboard.plugins.custom_scalar import layout_pb2

    from breakhis_lit.tensorboard import CURVES

    (events,) = trained["run"].glob("events.out.tfevents.*")  # the fit's own (test writes into test/)
    acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
    acc.Reload()
    (config,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    (category,) = layout.category
    assert category.title == CURVES
    charts = {chart.title: list(chart.multiline.tag) for chart in category.chart}
    assert charts == {
        "loss": ["^train/loss$", "^val/loss$"],
        "balanced accuracy": ["^train/balanced_accuracy$", "^val/balanced_accuracy$"],
        "AUROC": ["^train/auroc$", "^val/auroc$"],
    }
    scalars = set(acc.Tags()["scalars"])
    for tags in charts.values():
        assert {tag.strip("^$") for tag in tags} <= scalars


def test_checkpoint_reloads_with_weights_only(trained: dict[str, object]) -> None:
    ckpt = torch.load(trained["run"] / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["backbone"]["class_path"] == "breakhis_lit.models.DALAResNet"
    model = load_classifier(trained["run"] / "checkpoints" / "best.ckpt")
    assert model.num_classes == 2


def test_test_without_a_run_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("test", "--config", "configs/demo.yaml", "--log_root", str(tmp_path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: no run of experiment 'demo'")


def test_checkpoint_of_another_architecture_is_refused(trained: dict[str, object], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("test", *trained["common"], "--config", "configs/resnet50.yaml", "--experiment", "demo",
                "--ckpt_path", str(trained["run"] / "checkpoints" / "best.ckpt"))  # fmt: skip
    assert exit_info.value.code == 2
    assert "holds a DALAResNet" in capsys.readouterr().err


def test_predict_any_folder(trained: dict[str, object], demo_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, png in enumerate(sorted(demo_root.rglob("*.png"))[:5]):
        (folder / f"img{i}.png").write_bytes(png.read_bytes())
    out = tmp_path / "pred.csv"
    run_cli("predict", *trained["common"], "--data.predict_root", str(folder), "--prediction_writer.output", str(out))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5
    assert {"prob_benign", "prob_malignant", "prediction"} <= set(rows[0])
    assert abs(float(rows[0]["prob_benign"]) + float(rows[0]["prob_malignant"]) - 1) < 1e-4
    with pytest.raises(SystemExit):  # never overwrite
        run_cli(
            "predict", *trained["common"], "--data.predict_root", str(folder), "--prediction_writer.output", str(out)
        )


def test_empty_predict_folder(trained: dict[str, object], tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("predict", *trained["common"], "--data.predict_root", str(tmp_path))
    assert exit_info.value.code == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_unknown_option_is_jsonargparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", "configs/demo.yaml", "--data.magnificaton", "40")
    assert exit_info.value.code != 0
    assert "magnificaton" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["data", "sweep", "demo-data", "report"])
def test_package_verbs_start_without_torch(verb: str) -> None:
    # `breakhis data --help` took 5.4 s when the command line imported torch and Lightning for every verb.
    probe = (
        "import sys\nfrom breakhis_lit.cli import main\n"
        f"try:\n    main([{verb!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "print('heavy:', sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=root, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage: breakhis" in out.stdout
    assert "heavy: []" in out.stdout


def test_lightning_names_stay_reachable_from_cli() -> None:
    from breakhis_lit import cli, lightning_cli

    assert cli.BreakHisCLI is lightning_cli.BreakHisCLI
    with pytest.raises(AttributeError):
        _ = cli.no_such_name


def test_top_level_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    from breakhis_lit.cli import EXTRA_VERBS, LIGHTNING_VERBS

    with pytest.raises(SystemExit) as exit_info:
        run_cli("--help")
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out.splitlines()[0]
    assert usage.startswith("usage: breakhis {")
    for verb in (*LIGHTNING_VERBS, *EXTRA_VERBS):
        assert verb in usage, verb


def test_unknown_verb_names_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fitt")
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]]
    assert "'fitt'" in errors[0]
    assert "sweep" in errors[0]


def test_fit_help_is_short_and_lists_only_package_backbones(capsys: pytest.CaptureFixture[str]) -> None:
    # 2,260 lines when every nn.Module subclass importable was a choice for --model.backbone.
    with pytest.raises(SystemExit):
        run_cli("fit", "--help")
    text = capsys.readouterr().out
    assert text.startswith("usage: breakhis [options] fit")
    assert len(text.splitlines()) < 1000
    assert "breakhis_lit.models.DALAResNet50" in text
    assert "torchvision" not in text
    with pytest.raises(SystemExit):
        run_cli("fit", "--model.backbone.help", "DALAResNet50")
    assert "--model.backbone.gate_position" in capsys.readouterr().out


def _options_named_in_messages() -> dict[str, str]:
    """Every ``--a.b`` option named in a string of the package's code (f-string templates aside), with its file."""
    import ast
    import re

    package = Path(__file__).resolve().parents[1] / "breakhis_lit"
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(r"--([a-z_]+(?:\.[a-z_]+)+)(?![a-z_{])", node.value):
                    found.setdefault(flag, path.relative_to(package.parent).as_posix())
    return found


def test_every_option_a_message_names_is_accepted_by_fit_or_gradcam() -> None:
    # `--model.init_args.backbone.init_args.weights` was suggested offline and refused by the parser.
    from breakhis_lit.data import BreakHisDataModule
    from breakhis_lit.lightning_cli import BreakHisCLI
    from breakhis_lit.models import BreakHisClassifier

    class ParseOnly(BreakHisCLI):
        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

        def _run_subcommand(self, subcommand: str) -> None:
            pass

    configs = [
        ParseOnly(
            model_class=BreakHisClassifier,
            datamodule_class=BreakHisDataModule,
            auto_configure_optimizers=False,
            args=[verb, "--config", str(CONFIGS[0].parent / "demo.yaml")],
        ).config[subcommand]
        for verb, subcommand in (("fit", "fit"), ("gradcam", "predict"))  # gradcam: predict with its cam.* options
    ]
    named = _options_named_in_messages()
    assert "model.backbone.init_args.weights" in named
    assert "cam.target_class" in named
    unknown = {
        flag: where
        for flag, where in named.items()
        if all(flag.removesuffix(".help") not in config for config in configs)
        and flag != "trainer.max_epoch"  # the refused abbreviation
    }
    assert unknown == {}


def test_yaml_error_names_the_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("trainer:\n  max_epochs: [1\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(config))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "<unicode string>" not in err
    expected = f"error: --config {config}: not valid YAML at line 3, column 1 (expected ',' or ']', but got "
    assert err.strip() == expected + "'<stream end>'); fix the file"
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(tmp_path / "missing.yaml"))
    assert exit_info.value.code == 2
    assert f"--config {tmp_path / 'missing.yaml'}: no such file" in capsys.readouterr().err


def test_package_verbs_take_underscored_options_as_hyphenated() -> None:
    from breakhis_lit.cli import _hyphenated

    assert _hyphenated(["runs", "--n_resamples", "10", "--log_root=a_b", "--out", "x_y"]) == [
        "runs", "--n-resamples", "10", "--log-root=a_b", "--out", "x_y",
    ]  # fmt: skip
    forwarded = ["--configs", "a.yaml", "--dry_run", "--", "--trainer.max_epochs", "1", "--data.cache_dir", "c"]
    assert _hyphenated(forwarded) == ["--configs", "a.yaml", "--dry-run", *forwarded[3:]]  # sweep's Lightning options
