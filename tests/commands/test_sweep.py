"""Tests of ``breakhis sweep``: planning, skipping finished runs, going on after a failure."""

import sys
from pathlib import Path

import pytest

from breakhis_lit.commands import sweep
from breakhis_lit.errors import BreakHisError


@pytest.fixture
def configs(tmp_path: Path) -> list[Path]:
    a = tmp_path / "a.yaml"
    a.write_text("experiment: alpha\n")
    b = tmp_path / "b.yaml"
    b.write_text("model: {}\n")
    return [a, b]


def test_plan_names_every_cell(configs: list[Path]) -> None:
    runs = sweep.plan(configs, ["40", "100"], [0, 1])
    assert [r.experiment for r in runs][:4] == [
        "alpha-40x-seed0",
        "alpha-40x-seed1",
        "alpha-100x-seed0",
        "alpha-100x-seed1",
    ]
    assert runs[-1].experiment == "b-100x-seed1"  # no experiment key: the file name


def test_dry_run_prints_fit_and_test(configs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = sweep.main(
        [
            "--configs",
            str(configs[0]),
            "--magnifications",
            "40X",
            "--seeds",
            "3",
            "--dry-run",
            "--",
            "--trainer.max_epochs",
            "1",
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("breakhis_lit fit --config")
    assert "--experiment alpha-40x-seed3" in out[0]
    assert out[0].endswith("--trainer.max_epochs 1")
    assert out[1].startswith("breakhis_lit test")


def test_unknown_magnification(configs: list[Path]) -> None:
    with pytest.raises(BreakHisError, match="--magnifications 50"):
        sweep.main(["--configs", str(configs[0]), "--magnifications", "50"])


def test_skips_finished_and_continues_after_failure(
    configs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "logs"
    (root / "alpha-40x-seed0" / "version_0" / "test").mkdir(parents=True)
    (root / "alpha-40x-seed0" / "version_0" / "test" / "metrics.json").write_text("{}")

    def fake_commands(run, log_root, extra, resume):
        ok = [sys.executable, "-c", "print('ok')"]
        if run.seed == 1:
            return [[sys.executable, "-c", "import sys; sys.exit(3)"]]
        return [ok, ok]

    monkeypatch.setattr(sweep, "_commands", fake_commands)
    code = sweep.main(
        [
            "--configs",
            str(configs[0]),
            "--magnifications",
            "40",
            "--seeds",
            "0",
            "1",
            "2",
            "--log-root",
            str(root),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "skip   alpha-40x-seed0" in out
    assert "failed alpha-40x-seed1" in out
    assert "done   alpha-40x-seed2" in out
    assert "2/3 runs finished, 1 failed" in out
    assert (root / "sweep" / "alpha-40x-seed1.log").is_file()


def test_announces_each_run_with_its_log_and_an_eta(
    configs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "logs"
    monkeypatch.setattr(sweep, "_commands", lambda *args: [[sys.executable, "-c", "print('ok')"]])
    code = sweep.main(["--configs", str(configs[0]), "--magnifications", "100", "--seeds", "0", "1", "2",
                       "--log-root", str(root)])  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    starts = [line for line in out if " start  " in line]
    log = root / "sweep" / "alpha-100x-seed0.log"
    assert starts[0] == f"[1/3] start  alpha 100X seed 0: alpha-100x-seed0, log {log}"  # no ETA before a run ended
    assert starts[1].startswith("[2/3] start  alpha 100X seed 1: ")
    assert starts[1].endswith(" s)")
    assert " (ETA " in starts[1]
    assert out.index(starts[1]) > next(i for i, line in enumerate(out) if line.startswith("[1/3] done"))


def test_eta_scales_with_runs_left_and_workers() -> None:
    assert sweep.eta([], 5, 1) == ""
    assert sweep.eta([600.0, 1200.0], 4, 1) == "ETA 1 h 00 min"
    assert sweep.eta([600.0, 1200.0], 4, 2) == "ETA 30 min"
    assert sweep.eta([10.0], 3, 1) == "ETA 30 s"
