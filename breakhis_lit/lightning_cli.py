"""Lightning's verbs of ``breakhis`` (fit, validate, test, predict, gradcam): the LightningCLI with the run contract.

Imported by :func:`breakhis_lit.cli.main` only for those verbs: it loads torch and Lightning (about 4 s), which the
package's own verbs do not need.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")  # Lightning 2.6 on jsonargparse >= 4.49

import lightning.pytorch as pl
import torch
import yaml
from jsonargparse import ActionConfigFile
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from breakhis_lit.callbacks import (
    EvaluationFigures,
    EvaluationReport,
    GradCAMCallback,
    GradCAMWriter,
    LastCheckpoint,
    PredictionCSVWriter,
    ResumableInterrupt,
    RunHistory,
    RunRecorder,
    Throughput,
)
from breakhis_lit.callbacks.prediction_writer import predicted_name
from breakhis_lit.checkpoints import AtomicCheckpointIO, check_checkpoint_matches, find_run_checkpoint
from breakhis_lit.cli import DESCRIPTION
from breakhis_lit.config_files import resolve_config, shipped_configs
from breakhis_lit.data import BreakHisDataModule
from breakhis_lit.errors import BreakHisError
from breakhis_lit.models import BreakHisClassifier
from breakhis_lit.rundir import (
    BEST,
    DEFAULT_EVAL,
    LAST,
    RUN_RECORD,
    DataSpec,
    Difference,
    RunDir,
    allocate_run,
    check_eval_name,
    run_of_checkpoint,
)
from breakhis_lit.tensorboard import RunLogger


@dataclass(frozen=True)
class RunPlan:
    """Where a verb works and writes, decided before anything is built.

    Attributes:
        verb: ``fit``, ``validate``, ``test`` or ``predict``.
        run: The run directory (``None`` on the ranks of a multi-process run that do not write).
        created: Whether this process created the run directory (a fresh fit).
        resume: Whether a fit resumes the run.
        eval_name: The cross-evaluation's name (``--eval_name``), or ``None``.
        differs: What that cross-evaluation changes against the fit.
    """

    verb: str
    run: RunDir | None
    created: bool = False
    resume: bool = False
    eval_name: str | None = None
    differs: tuple[Difference, ...] = ()
    explain: str | None = None

    @property
    def output_dir(self) -> Path | None:
        """Where this verb's files go: the run directory for ``fit``, else its verb or evaluation folder.

        ``gradcam`` writes into ``gradcam/<explain>/`` of the run (the explained folder's name, ``test`` for the
        run's test split, or the ``--eval_name``), never into ``predict/``.
        """
        if self.run is None:
            return None
        if self.explain:
            return self.run.output_dir("gradcam") / self.explain
        return self.run.path if self.verb == "fit" else self.run.output_dir(self.verb, self.eval_name)


_RUN_ENV = "BREAKHIS_RUN_DIR"
"""Set by rank zero to the run directory it allocated; processes launched after it (DDP) inherit it."""

_RESUME_FROZEN = (
    "model.",
    "data.",
    "seed_everything",
    "trainer.precision",
    "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val",
    "trainer.gradient_clip_algorithm",
    "checkpoint.monitor",
    "checkpoint.mode",
)
"""Options a resumed fit must keep (prefixes of dotted keys): the model, optimiser, data and numerics."""
_RESUME_FREE = {
    "model.compile",
    "model.tta",  # test-time augmentation: used by test and predict only
    "model.channels_last",
    "data.num_workers",
    "data.cache_dir",
    "data.device_cache",
    "data.eval_batch_size",
    "data.root",  # its files are checked against the run's splits.csv instead
    "data.predict_root",
    "data.split_file",
    "data.trained_on",
    "data.stain_target",  # the run's own stain_target.json, bound like split_file
}
"""Options under those prefixes that only change speed or where files are, not what is trained."""

_FOLDER_OPTIONS = ("task", "image_size")
"""Data options a run's predictions on a folder of images (``--data.predict_root``) must share with its fit."""

_BEFORE_OPTION: dict[str, Any] = {"data.hed_scale": 0.0, "data.hed_bias": 0.0, "data.stain_norm": "none"}
"""What a run did before these options existed (its config.yaml lacks them): no HED jitter, no stain normalisation."""


_GRADCAM_HELP = (
    "Explain a fitted run's predictions with Grad-CAM: `breakhis predict` writing, instead of the CSV of class "
    "probabilities, CAM_OUT/<stem>_gradcam.png (the heat map of the predicted class, or of --cam.target_class, over "
    "each image) and CAM_OUT/gradcam.csv (path, label, prediction, prob_<class>..., target). E.g. `breakhis gradcam "
    "--config configs/attn.yaml --data.predict_root my_images/` (--ckpt_path best, last or a checkpoint of the run)."
)


class ShippedConfigFile(ActionConfigFile):
    """``--config``: a config file, or the name of one shipped with the package (:func:`resolve_config`)."""

    @override
    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
        super().__call__(parser, cfg, resolve_config(values), option_string)


class BreakHisCLI(LightningCLI):
    """LightningCLI with the package's defaults, run-directory contract and checkpoint resolution.

    * ``experiment`` names the run: a fresh ``fit`` allocates ``<log_root>/<experiment>/version_N`` with an atomic
      ``mkdir`` (two fits started together get two directories) and removes it again when it fails before its
      first checkpoint (it holds nothing of value, and would show up in TensorBoard and as the newest run).
    * A run is evidence (:mod:`breakhis_lit.rundir`): ``test``, ``validate``, ``predict`` (on the test split) and
      ``fit --ckpt_path last`` read the split back from the run's ``splits.csv`` and refuse data options that
      would change which images are on which side; ``--eval_name NAME`` scores a run on other data on purpose,
      into ``evals/NAME/``, refusing patients the run trained on. A resumed fit refuses changes to the model,
      optimiser, data and precision (a longer ``trainer.max_epochs`` is allowed and recorded in ``run.json``).
      Later verbs write their config next to their own outputs, never over the fit's.
    * ``checkpoint.*`` configures the :class:`ModelCheckpoint` writing ``best.ckpt``; ``last_checkpoint.*`` the
      :class:`LastCheckpoint` writing ``last.ckpt`` for resuming (at most once a minute, and at the end).
    * ``test``/``validate``/``predict`` without ``--ckpt_path`` use the best checkpoint of the newest run of the
      experiment (``best``/``last`` pick that run's files).
    * ``trainer.precision`` left empty means bf16 mixed precision on a GPU and 32-bit on a CPU.
    * ``gradcam`` is ``predict`` with the :class:`GradCAMWriter` (options ``cam.*``) instead of the CSV writer.
    * Only the parser of the verb being run is built (``breakhis fit ...`` does not build those of test,
      validate and predict): each costs about 0.1 s of start-up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("args")
        argv = [] if isinstance(given, dict) else list(sys.argv[1:] if given is None else given)
        self._cam = bool(argv) and argv[0] == "gradcam"
        if self._cam:  # `breakhis gradcam`: predict, with the Grad-CAM writer in place of the CSV writer
            argv = kwargs["args"] = ["predict", *argv[1:]]
        self._verb: str | None = argv[0] if argv and argv[0] in LightningCLI.subcommands() else None
        self._plan: RunPlan | None = None
        self._experiment_dir = Path()
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]  # a staticmethod upstream
        """Lightning's verbs, or only the one on the command line (the others' parsers are never used)."""
        every = LightningCLI.subcommands()
        verb = getattr(self, "_verb", None)
        return {verb: every[verb]} if verb else every

    @override
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # LightningCLI's own, with --config also taking a shipped config's name.
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={pl.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument(
            "-c",
            "--config",
            action=ShippedConfigFile,
            help=f"A config file (YAML), or a shipped config: {', '.join(shipped_configs())} (e.g. --config attn).",
        )
        return parser

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=str, default="default", help="Run name: logs go to LOG_ROOT/NAME.")
        parser.add_argument("--log_root", type=str, default="lightning_logs", help="Folder of all runs.")
        if self._verb != "fit":
            parser.add_argument(
                "--eval_name",
                type=str | None,
                default=None,
                help="Score the run on other data on purpose (other magnification, task, root...): outputs go to "
                "the run's evals/NAME/ folder, never over its own test results; patients it trained on are refused.",
            )
        # The module's class names are the data's (metric names, figures); not an option of their own.
        parser.link_arguments("data.classes", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/balanced_accuracy",
                "checkpoint.mode": "max",
                "checkpoint.filename": BEST,
                "checkpoint.save_last": False,  # last.ckpt comes from its own callback, written every epoch
                "checkpoint.save_top_k": 1,
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(EvaluationFigures, "figures")
        parser.add_lightning_class_args(GradCAMCallback, "gradcam")
        if self._cam:
            parser.add_lightning_class_args(GradCAMWriter, "cam")
        else:
            parser.add_lightning_class_args(PredictionCSVWriter, "prediction_writer")
        parser.add_lightning_class_args(EvaluationReport, "evaluation")
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
    def setup_parser(self, *args: Any) -> None:
        super().setup_parser(*args)
        if self._cam:
            predict = self._subcommand_parsers["predict"]
            predict.prog, predict.description = "breakhis gradcam", _GRADCAM_HELP

    @override
    def _parse_ckpt_path(self) -> None:
        # Lightning rebuilds the model from an explicit checkpoint's hyper-parameters, silently replacing the
        # config's model. Refuse a checkpoint of another architecture (or a file that is not a checkpoint) first.
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt and ckpt not in (BEST, LAST):
            if not Path(ckpt).is_file():
                raise BreakHisError(f"--ckpt_path {ckpt}: no such file; pass an existing .ckpt file, 'best' or 'last'")
            check_checkpoint_matches(ckpt, self.config[subcommand].model.backbone)
        super()._parse_ckpt_path()

    def _cfg(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    @override
    def before_instantiate_classes(self) -> None:
        cfg = self._cfg()
        trainer = cfg.trainer
        if trainer.precision is None:
            gpu = trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
            trainer.precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
        if trainer.deterministic:
            trainer.benchmark = False  # cuDNN autotuning picks kernels by timing: not reproducible
        if cfg.get("weights_only") is None and "weights_only" in cfg:
            cfg.weights_only = True
        if self.subcommand in ("fit", "validate", "test", "predict"):
            experiment_dir = Path(cfg.log_root) / cfg.experiment
            _check_writable(experiment_dir, "--log_root")
            self._plan = self._plan_run(cfg, experiment_dir)
            if self._cam:
                name = cfg.get("eval_name") or predicted_name(cfg.data.get("predict_root"))
                self._plan = replace(self._plan, explain=name)

    def _plan_run(self, cfg: Any, experiment_dir: Path) -> RunPlan:
        verb = str(self.subcommand)
        ckpt = cfg.get("ckpt_path")
        if verb == "fit" and ckpt is None:
            self._experiment_dir = experiment_dir  # allocated once the model and data are built
            return RunPlan(verb, None, created=True)
        shown = self._shown_verb
        path, run = _resolve_checkpoint(experiment_dir, ckpt, default=LAST if verb == "fit" else BEST, verb=shown)
        check_checkpoint_matches(path, cfg.model.backbone)
        cfg.ckpt_path = str(path)
        print(f"{shown}: using checkpoint {path}", file=sys.stderr)
        given_split = cfg.data.get("split_file")
        if given_split not in (None, str(run.splits)):
            raise BreakHisError(
                f"--data.split_file {given_split}: a fitted run is scored on its own split ({run.splits}); drop "
                "the option"
            )
        if verb == "fit":
            self._check_resume(cfg, run)
            cfg.data.split_file = str(run.splits)
            _bind_stain_target(cfg, run)
            return RunPlan(verb, run, resume=True)
        _bind_stain_target(cfg, run)
        record = run.record()
        spec = DataSpec.from_options(cfg.data)
        eval_name = cfg.get("eval_name")
        if eval_name is not None:
            check_eval_name(eval_name)
            cfg.data.trained_on = str(run.splits)
            differs = tuple(Difference(o, a, b) for o, a, b in record.data.differences(spec))
            if str(cfg.data.root) != record.root:
                differs += (Difference("root", record.root, str(cfg.data.root)),)
            return RunPlan(verb, run, eval_name=eval_name, differs=differs)
        folder = verb == "predict" and cfg.data.get("predict_root") is not None
        changed = record.data.differences(spec)
        if folder:
            changed = [c for c in changed if c[0] in _FOLDER_OPTIONS]
        if changed:
            option, fitted, given = changed[0]
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            if folder:
                raise BreakHisError(
                    f"--data.{option} {given} differs from the run's {fitted}{more} ({run.path / RUN_RECORD}): a run "
                    "predicts on images prepared as it was trained; drop the option"
                )
            raise BreakHisError(
                f"--data.{option} {given} differs from the run's {fitted}{more} ({run.path / RUN_RECORD}): a run "
                "is scored on its own split; start a new run with `breakhis fit`, or score other data on purpose "
                "with --eval_name NAME"
            )
        if not folder:
            cfg.data.split_file = str(run.splits)
        return RunPlan(verb, run)

    def _check_resume(self, cfg: Any, run: RunDir) -> None:
        """Refuse a resumed fit whose model, optimiser, data or numerics differ from the run's config."""
        if not run.config.is_file():
            raise BreakHisError(f"{run.config}: missing, so the run cannot be checked for resuming; start a new run")
        try:
            saved = _flatten(yaml.safe_load(run.config.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError) as err:
            raise BreakHisError(f"{run.config}: not readable YAML ({err}); start a new run") from None
        current = _flatten(yaml.safe_load(self._parser(self.subcommand).dump(cfg, skip_none=False)) or {})
        changed = sorted(
            key
            for key in set(saved) | set(current)
            if key.startswith(_RESUME_FROZEN)
            and key not in _RESUME_FREE
            and saved.get(key, _BEFORE_OPTION.get(key)) != current.get(key)
        )
        if changed:
            key = changed[0]
            more = f" (and {len(changed) - 1} more: {', '.join(changed[1:4])})" if len(changed) > 1 else ""
            raise BreakHisError(
                f"--{key} {current.get(key)} differs from the run's {saved.get(key, _BEFORE_OPTION.get(key))}{more} "
                f"({run.config}): a resumed "
                "fit trains the run it resumes; start a new run (without --ckpt_path), or change only "
                "--trainer.max_epochs"
            )

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        cfg = self._cfg()
        plan = self._plan
        datamodule = self.datamodule
        scores_split = plan is not None and isinstance(datamodule, BreakHisDataModule)
        if scores_split and (plan.verb != "predict" or datamodule.predict_root is None):
            datamodule.resolve_split()  # a refused split stops here: no run directory, no logger files
        elif scores_split:
            datamodule.check_stain_target()  # predict_root: the run's stain target checked before any logger
        writer = self._get(self.config_init, "cam" if self._cam else "prediction_writer")
        if isinstance(writer, PredictionCSVWriter) and plan is not None and plan.verb == "predict" and plan.output_dir:
            writer.check_free(plan.output_dir, datamodule)  # before the logger writes its first file
        if plan is not None and plan.created:
            run = _fresh_run(self._experiment_dir)
            plan = self._plan = replace(plan, run=run, created=run is not None and rank_zero_only.rank == 0)
        if plan is not None and cfg.trainer.logger in (None, True):
            kwargs["logger"] = _logger(plan)
        if not cfg.trainer.plugins:
            kwargs["plugins"] = [AtomicCheckpointIO()]
        if plan is not None:
            report = self._get(self.config_init, "evaluation")
            if isinstance(report, EvaluationReport):
                report.for_evaluation(plan.eval_name or DEFAULT_EVAL, plan.differs)
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": _default_callbacks(plan)}
            if plan.resume:
                self.save_config_callback = None  # the fit's config.yaml stays; run.json records the resume
            self.save_config_kwargs = {"overwrite": plan.verb != "fit"}
        try:
            return super().instantiate_trainer(**kwargs)
        except BaseException:
            self._remove_failed_run()
            raise

    def _remove_failed_run(self) -> None:
        """Remove the run directory this process created, when no checkpoint was written into it."""
        plan = self._plan
        if plan is not None and plan.created and plan.run is not None and not plan.run.has_checkpoints():
            shutil.rmtree(plan.run.path, ignore_errors=True)
            print(f"{plan.verb}: removed {plan.run.path}: it failed before its first checkpoint", file=sys.stderr)

    @property
    def _shown_verb(self) -> str:
        """The verb as typed: ``gradcam`` runs Lightning's ``predict``."""
        return "gradcam" if self._cam else str(self.subcommand)

    @override
    def _run_subcommand(self, subcommand: str) -> None:
        plan = self._plan
        where = plan.output_dir if plan is not None and rank_zero_only.rank == 0 else None
        if where is not None:
            print(f"{self._shown_verb}: writing to {where}", file=sys.stderr)
        fitting = plan is not None and plan.verb == "fit" and plan.run is not None and rank_zero_only.rank == 0
        try:
            with plan.run.fitting() if fitting else contextlib.nullcontext():
                super()._run_subcommand(subcommand)
        except BaseException as err:
            self._remove_failed_run()
            # Lightning answers Ctrl-C with sys.exit(1) after its graceful shutdown; the command line exits 130.
            interrupted = any(getattr(cb, "interrupted", False) for cb in getattr(self.trainer, "callbacks", []))
            if isinstance(err, SystemExit) and interrupted:
                raise KeyboardInterrupt from None
            raise
        if where is not None:
            print(f"{self._shown_verb}: done, see {where}", file=sys.stderr)


def _fresh_run(experiment_dir: Path) -> RunDir | None:
    """The run directory of a fresh fit: allocated by rank zero, inherited by the processes it launches."""
    if rank_zero_only.rank == 0:
        run = allocate_run(experiment_dir)
        os.environ[_RUN_ENV] = str(run.path)
        return run
    inherited = os.environ.get(_RUN_ENV)
    return RunDir(Path(inherited)) if inherited else None


def _resolve_checkpoint(experiment_dir: Path, ckpt: str | None, default: str, verb: str) -> tuple[Path, RunDir]:
    """The checkpoint file and the fitted run it belongs to (refused when it belongs to none)."""
    path, _ = find_run_checkpoint(experiment_dir, ckpt, default=default)
    run = run_of_checkpoint(path)
    if run is None:
        what = "resume a run" if verb == "fit" else f"{verb} a run on its own split"
        raise BreakHisError(
            f"--ckpt_path {path}: not in the checkpoints/ folder of a run made by `breakhis fit` (no {RUN_RECORD} "
            f"beside it), so its split is unknown; to {what} pass 'best', 'last' or a checkpoint inside its run"
            + ("; to start from its weights use --model.backbone.init_args.weights" if verb == "fit" else "")
        )
    if not run.splits.is_file():
        raise BreakHisError(f"{run.splits}: missing, so the run's split is unknown; start a new run")
    if rank_zero_only.rank == 0:  # the processes a resumed DDP fit launches find their rank zero holding it
        run.check_not_fitting()
    return path, run


def _bind_stain_target(cfg: Any, run: RunDir) -> None:
    """Score a fitted run on images normalised to its own saved stain target, never to one fitted again."""
    saved, given = str(run.stain_target), cfg.data.get("stain_target")
    if given not in (None, saved):
        raise BreakHisError(
            f"--data.stain_target {given}: a fitted run is scored with its own stain target ({saved}); drop the option"
        )
    cfg.data.stain_target = saved


def _logger(plan: RunPlan) -> TensorBoardLogger | bool:
    if plan.run is None:
        return RunLogger(save_dir=os.devnull, name="", default_hp_metric=False)
    run = plan.run.path
    sub_dir = None if plan.verb == "fit" else plan.output_dir.relative_to(run).as_posix()
    return RunLogger(
        save_dir=run.parent.parent,
        name=run.parent.name,
        version=plan.run.version,
        sub_dir=sub_dir,
        default_hp_metric=False,
        curves=plan.verb == "fit",
    )


def _default_callbacks(plan: RunPlan) -> list[Any]:
    if plan.verb == "fit":
        recorder = [RunRecorder(plan.run, resume=plan.resume)] if plan.run is not None else []
        return [*recorder, RunHistory(), Throughput(), LearningRateMonitor("epoch"), ResumableInterrupt()]
    return [ResumableInterrupt()]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": value}`` (lists and scalars are values)."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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


class _DropMessages(logging.Filter):
    """A logging filter dropping records whose message contains one of ``needles``."""

    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(needle in message for needle in self.needles)


def _quiet_lightning_tips() -> None:
    """Drop Lightning's advertisement for its cloud logger, printed at every start (only that message)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropMessages) for f in logger.filters):
        logger.addFilter(_DropMessages("try installing [litlogger]"))


def check_config_files(argv: list[str]) -> None:
    """Refuse a ``--config`` file that is missing or not YAML, naming the file, the line and the column.

    jsonargparse reports a YAML syntax error in a config file as one in ``"<unicode string>"``.

    Raises:
        BreakHisError: For the first such file.
    """
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            continue
        path = Path(value)
        if not path.is_file():
            if path.suffix.lower() in (".yaml", ".yml", ".json"):
                raise BreakHisError(f"--config {value}: no such file; pass a config file such as configs/demo.yaml")
            continue  # an inline YAML string, parsed by jsonargparse
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise BreakHisError(f"--config {path}: cannot read it ({err}); pass a readable YAML file") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise BreakHisError(f"--config {path}: not valid YAML{where} ({problem}); fix the file") from None


def run(args: ArgsType) -> None:
    """Run a Lightning verb (``args`` as for :func:`breakhis_lit.cli.main`)."""
    if not isinstance(args, dict):
        check_config_files(list(sys.argv[1:] if args is None else args))
    # jsonargparse >= 4.49 warns about Lightning 2.6's use of its API; nothing a user can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"jsonargparse.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # The backbone's and criterion's hyper-parameters are saved as their plain config by LightningCLI.
    warnings.filterwarnings("ignore", message=r"Attribute '(backbone|criterion)' is an instance of `nn.Module`.*")
    # Epoch metrics are reduced across processes by the module itself (torchmetrics and strategy.reduce).
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
    # Evaluation verbs restore the weights only: the fit's callbacks (history) have nothing to do there.
    warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used to create.*")
    # They also restore the fit's ModelCheckpoint state, whose folder is the same run's, written another way.
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from .*")
    # Lightning 2.6 builds torch pytree specs the way torch 2.10+ deprecates; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated.*")
    # `breakhis gradcam` hands LightningCLI its arguments as predict's, which differ from sys.argv on purpose.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within.*")
    _quiet_lightning_tips()
    BreakHisCLI(
        model_class=BreakHisClassifier,
        datamodule_class=BreakHisDataModule,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": False},
        # No abbreviated options: `--trainer.max_epoch 5` must be an error, not silently `max_epochs`.
        parser_kwargs={"prog": "breakhis", "description": DESCRIPTION, "allow_abbrev": False},
        auto_configure_optimizers=False,
        args=args,
    )
