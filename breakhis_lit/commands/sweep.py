"""``breakhis sweep``: models × magnifications × seeds, each a ``fit`` then a ``test``, resumable, over GPUs."""

from __future__ import annotations

import argparse
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from breakhis_lit.config_files import resolve_config
from breakhis_lit.data.naming import parse_magnification
from breakhis_lit.errors import BreakHisError
from breakhis_lit.rundir import LAST, versions


@dataclass
class SweepRun:
    """One cell of the sweep: a config at one magnification and seed."""

    config: Path
    magnification: str
    seed: int
    experiment: str
    model: str = ""
    """The config's experiment name (``attn``, ``resnet50``...)."""
    status: str = "pending"
    """pending, skipped (already finished), done or failed."""
    seconds: float = 0.0
    log: Path | None = None
    notes: list[str] = field(default_factory=list)


def _experiment_name(config: Path) -> str:
    try:
        loaded = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise BreakHisError(f"--configs {config}: cannot read it as YAML ({err}); fix the file") from None
    if not isinstance(loaded, dict):
        raise BreakHisError(f"--configs {config}: not a YAML mapping; pass a breakhis config file")
    return str(loaded.get("experiment") or config.stem)


def plan(configs: list[Path], magnifications: list[str], seeds: list[int]) -> list[SweepRun]:
    """The sweep's runs in order (config, then magnification, then seed)."""
    runs = []
    configs = [Path(resolve_config(config)) for config in configs]
    for config, mag, seed in itertools.product(configs, magnifications, seeds):
        if not config.is_file():
            raise BreakHisError(f"--configs {config}: no such file")
        model = _experiment_name(config)
        name = f"{model}-{mag}x-seed{seed}"
        runs.append(SweepRun(config=config, magnification=mag, seed=seed, experiment=name, model=model))
    return runs


def _finished(log_root: Path, experiment: str) -> bool:
    return any(run.evaluation().exists() for run in versions(log_root / experiment))


def _has_last(log_root: Path, experiment: str) -> bool:
    return any(run.checkpoint(LAST).is_file() for run in versions(log_root / experiment))


def _commands(run: SweepRun, log_root: Path, extra: list[str], resume: bool) -> list[list[str]]:
    common = [
        "--config", str(run.config),
        "--experiment", run.experiment,
        "--log_root", str(log_root),
        "--data.magnification", run.magnification,
        "--data.seed", str(run.seed),
        "--seed_everything", str(run.seed),
        *extra,
    ]  # fmt: skip
    fit = [sys.executable, "-m", "breakhis_lit", "fit", *common]
    if resume:
        fit += ["--ckpt_path", "last"]
    return [fit, [sys.executable, "-m", "breakhis_lit", "test", *common]]


def log_path(run: SweepRun, log_root: Path) -> Path:
    """Where the output of a run's fit and test goes."""
    return log_root / "sweep" / f"{run.experiment}.log"


def describe(run: SweepRun) -> str:
    """``resnet50 100X seed 2``."""
    mag = "all magnifications" if run.magnification.lower() == "all" else f"{run.magnification.upper()}X"
    return f"{run.model or run.experiment} {mag} seed {run.seed}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def eta(finished: list[float], remaining: int, workers: int) -> str:
    """The time left, from the mean time of the finished runs (``""`` before one finished)."""
    if not finished or remaining <= 0:
        return ""
    return f"ETA {_duration(sum(finished) / len(finished) * remaining / max(workers, 1))}"


def _execute(run: SweepRun, log_root: Path, extra: list[str], device: str | None) -> None:
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    run.log = log_path(run, log_root)
    run.log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    resume = _has_last(log_root, run.experiment)
    if resume:
        run.notes.append("resumed from last.ckpt")
    with run.log.open("a") as log:
        for step, command in zip(("fit", "test"), _commands(run, log_root, extra, resume), strict=False):
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            try:
                code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            except OSError as err:
                code = f"an error ({err})"
            if code != 0:
                run.status = "failed"
                run.notes.append(f"{step} exited with {code}")
                break
        else:
            run.status = "done"
    run.seconds = time.perf_counter() - start


def run_sweep(runs: list[SweepRun], log_root: Path, extra: list[str], devices: list[str] | None) -> list[SweepRun]:
    """Run every unfinished run, ``len(devices)`` at a time (one per GPU).

    Each run is announced when it starts (``[3/40] start  resnet50 100X seed 2: ..., log PATH (ETA 2 h 10 min)``, the
    ETA from the mean time of the runs finished so far) and reported when it ends.
    """
    todo: queue.Queue[SweepRun] = queue.Queue()
    for run in runs:
        if _finished(log_root, run.experiment):
            run.status = "skipped"
            print(f"skip   {run.experiment}: already tested", flush=True)
        else:
            todo.put(run)
    total, started, done = todo.qsize(), itertools.count(1), itertools.count(1)
    lock = threading.Lock()
    workers = len(devices or [None])
    finished: list[float] = []  # seconds of the runs that ended, for the ETA

    def worker(device: str | None) -> None:
        while True:
            with lock:
                try:
                    run = todo.get_nowait()
                except queue.Empty:
                    return
                n = next(started)
                where = f" on GPU {device}" if device is not None else ""
                left = eta(finished, total - n + 1, workers)
                print(
                    f"[{n}/{total}] start  {describe(run)}{where}: {run.experiment}, log {log_path(run, log_root)}"
                    + (f" ({left})" if left else ""),
                    flush=True,
                )
            _execute(run, log_root, extra, device)
            with lock:
                finished.append(run.seconds)
                notes = f" ({'; '.join(run.notes)})" if run.notes else ""
                print(
                    f"[{next(done)}/{total}] {run.status:6s} {run.experiment}{where} in {_duration(run.seconds)}"
                    f"{notes} — log {run.log}",
                    flush=True,
                )

    threads = [threading.Thread(target=worker, args=(d,)) for d in (devices or [None])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``breakhis sweep``."""
    parser = argparse.ArgumentParser(
        prog="breakhis sweep",
        description="Fit and test every config at every magnification and seed. Finished runs (test results "
        "present) are skipped, interrupted ones resume from last.ckpt, a failed run is reported and the sweep "
        "goes on. Arguments after -- go to every fit and test, e.g. -- --data.root /data/BreaKHis_v1.",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        type=Path,
        required=True,
        help="One config per model (a file or a shipped config's name).",
    )
    parser.add_argument("--magnifications", nargs="+", default=["40", "100", "200", "400"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--devices",
        nargs="+",
        default=None,
        help="GPU ids: one run at a time per GPU (CUDA_VISIBLE_DEVICES).",
    )
    parser.add_argument("--log-root", type=Path, default=Path("lightning_logs"))
    parser.add_argument("--dry-run", action="store_true", help="Print the commands and exit.")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``breakhis sweep``; returns 1 when any run failed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    mags = []
    for given in args.magnifications:
        try:
            mag = parse_magnification(given)
        except BreakHisError:
            raise BreakHisError(f"--magnifications {given}: unknown; use 40, 100, 200, 400 or all") from None
        mags.append("all" if mag is None else str(mag))
    runs = plan(args.configs, mags, args.seeds)
    if args.dry_run:
        for run in runs:
            for command in _commands(run, args.log_root, extra, resume=False):
                print(" ".join(command[2:]))
        return 0
    run_sweep(runs, args.log_root, extra, args.devices)
    failed = [r for r in runs if r.status == "failed"]
    finished = sum(r.status in ("done", "skipped") for r in runs)
    print(f"sweep: {finished}/{len(runs)} runs finished, {len(failed)} failed")
    for run in failed:
        print(f"  failed: {run.experiment} ({'; '.join(run.notes)}), see {run.log}")
    print(f"tables and figures: breakhis report {args.log_root} --out reports/sweep")
    return 1 if failed else 0
