"""The ``breakhis`` command line: LightningCLI (fit, validate, test, predict) plus the package's own verbs."""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")  # Lightning 2.6 on jsonargparse >= 4.49

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from breakhis_lit.callbacks import (
    EvaluationFigures,
    GradCAMCallback,
    LastCheckpoint,
    PredictionCSVWriter,
    RunHistory,
    TestReport,
    Throughput,
)
from breakhis_lit.checkpoints import AtomicCheckpointIO, check_checkpoint_matches, find_run_checkpoint
from breakhis_lit.data import BreakHisDataModule
from breakhis_lit.errors import BreakHisError
from breakhis_lit.models import BreakHisClassifier

EXTRA_VERBS: dict[str, str] = {
    "data": "breakhis_lit.commands.data",
    "demo-data": "breakhis_lit.commands.demo_data",
    "gradcam": "breakhis_lit.commands.gradcam",
    "sweep": "breakhis_lit.commands.sweep",
    "report": "breakhis_lit.commands.report",
}
"""Verbs next to Lightning's, each a module with ``main(argv) -> int``."""

_DESCRIPTION = (
    "BreakHis experiments with PyTorch Lightning. Lightning verbs: fit, validate, test, predict "
    "(e.g. `breakhis fit --config configs/attn.yaml`). Package verbs: "
    + ", ".join(EXTRA_VERBS)
    + " (e.g. `breakhis data summary --root data/BreaKHis_v1`; `breakhis VERB --help`)."
)


class BreakHisCLI(LightningCLI):
    """LightningCLI with the package's defaults, run-directory layout and checkpoint resolution.

    * ``experiment`` names the run: TensorBoard writes to ``<log_root>/<experiment>/version_N``.
    * ``checkpoint.*`` configures the :class:`ModelCheckpoint` writing ``best.ckpt``; ``last_checkpoint.*`` the
      :class:`LastCheckpoint` writing ``last.ckpt`` for resuming (at most once a minute, and at the end).
    * ``test``/``validate``/``predict`` without ``--ckpt_path`` use the best checkpoint of the newest run
      of the experiment (``best``/``last`` pick that run's files) and write into that run's directory;
      ``fit --ckpt_path last`` resumes the newest run in place.
    * ``trainer.precision`` left empty means bf16 mixed precision on a GPU and 32-bit on a CPU.
    * Only the parser of the verb being run is built (``breakhis fit ...`` does not build those of test,
      validate and predict): each costs about 0.1 s of start-up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("args")
        argv = [] if isinstance(given, dict) else list(sys.argv[1:] if given is None else given)
        self._verb: str | None = argv[0] if argv and argv[0] in LightningCLI.subcommands() else None
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]  # a staticmethod upstream
        """Lightning's verbs, or only the one on the command line (the others' parsers are never used)."""
        every = LightningCLI.subcommands()
        verb = getattr(self, "_verb", None)
        return {verb: every[verb]} if verb else every

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str, default="default", help="Run name: logs go to LOG_ROOT/NAME.")
        parser.add_argument("--log_root", type=str, default="lightning_logs", help="Folder of all runs.")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/balanced_accuracy",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": False,  # last.ckpt comes from its own callback, written every epoch
                "checkpoint.save_top_k": 1,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(EvaluationFigures, "figures")
        parser.add_lightning_class_args(GradCAMCallback, "gradcam")
        parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")
        parser.set_defaults(
            {
                "trainer.max_epochs": 50,
                "trainer.benchmark": True,
                "trainer.log_every_n_steps": 10,
                # A Grad-CAM grid costs ~0.4 s to draw on a CPU: every 10 epochs (and at test) during long fits.
                "gradcam.every_n_epochs": 10,
            }
        )

    @override
    def _parse_ckpt_path(self) -> None:
        # Lightning rebuilds the model from an explicit checkpoint's hyper-parameters, silently replacing the
        # config's model. Refuse a checkpoint of another architecture (or a file that is not a checkpoint) first.
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt and ckpt not in ("best", "last"):
            if not Path(ckpt).is_file():
                raise BreakHisError(f"--ckpt_path {ckpt}: no such file; pass an existing .ckpt file, 'best' or 'last'")
            check_checkpoint_matches(ckpt, self.config[subcommand].model.backbone)
        super()._parse_ckpt_path()

    def _cfg(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    @override
    def before_instantiate_classes(self) -> None:
        cfg = self._cfg()
        self._run_version: int | None = None
        trainer = cfg.trainer
        if trainer.precision is None:
            gpu = trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
            trainer.precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
        if trainer.deterministic:
            trainer.benchmark = False  # cuDNN autotuning picks kernels by timing: not reproducible
        if cfg.get("weights_only") is None and "weights_only" in cfg:
            cfg.weights_only = True
        experiment_dir = Path(cfg.log_root) / cfg.experiment
        _check_writable(experiment_dir, "--log_root")
        ckpt = cfg.get("ckpt_path")
        if self.subcommand == "fit":
            if ckpt is None:
                return
            path, self._run_version = find_run_checkpoint(experiment_dir, ckpt, default="last")
        elif self.subcommand in ("test", "validate", "predict"):
            path, self._run_version = find_run_checkpoint(experiment_dir, ckpt, default="best")
        else:
            return
        check_checkpoint_matches(path, cfg.model.backbone)
        cfg.ckpt_path = str(path)
        print(f"{self.subcommand}: using checkpoint {path}", file=sys.stderr)

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self._cfg()
        if cfg.trainer.logger in (None, True):
            kwargs["logger"] = TensorBoardLogger(
                save_dir=cfg.log_root, name=cfg.experiment, version=self._run_version, default_hp_metric=False
            )
        if not cfg.trainer.plugins:
            kwargs["plugins"] = [AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)


def _check_writable(folder: Path, option: str) -> None:
    """Fail early, in one line, when the run directory cannot be written (instead of after the first epoch)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise BreakHisError(
            f"{option} {folder.parent}: cannot write {folder} ({err.strerror or err}); pass a writable folder"
        ) from None


def _lightning_main(args: ArgsType) -> None:
    # jsonargparse >= 4.49 warns about Lightning 2.6's use of its API; nothing a user can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"jsonargparse.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # The backbone's hyper-parameters are saved as its plain config (class_path + init_args) by LightningCLI.
    warnings.filterwarnings("ignore", message=r"Attribute 'backbone' is an instance of `nn.Module`.*")
    # Epoch metrics are reduced across processes by the module itself (torchmetrics and strategy.reduce).
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
    BreakHisCLI(
        model_class=BreakHisClassifier,
        datamodule_class=BreakHisDataModule,
        seed_everything_default=0,
        trainer_defaults={
            "callbacks": [
                RunHistory(),
                TestReport(),
                Throughput(),
                LearningRateMonitor("epoch"),
            ]
        },
        save_config_kwargs={"overwrite": True},
        # No abbreviated options: `--trainer.max_epoch 5` must be an error, not silently `max_epochs`.
        parser_kwargs={"description": _DESCRIPTION, "allow_abbrev": False},  # verbs' parsers inherit it
        auto_configure_optimizers=False,
        args=args,
    )


def _extra_verb(name: str) -> Callable[[list[str]], int]:
    return importlib.import_module(EXTRA_VERBS[name]).main


def main(args: ArgsType = None) -> None:
    """Entry point of ``breakhis`` (and ``python -m breakhis_lit``).

    Args:
        args: Command-line arguments; ``None`` reads ``sys.argv``.
    """
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else None
    try:
        if argv and argv[0] in EXTRA_VERBS:
            code = _extra_verb(argv[0])(argv[1:])
            if code:
                raise SystemExit(code)
            return
        _lightning_main(args)
    except BreakHisError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
