"""Robustness tables: every run with its intervals, each experiment's mean ± std."""

from __future__ import annotations

from breakhis_lit.robustness.table import (
    experiments_table,
    handling,
    level_table,
    runs_table,
    stain_shift_markdown,
)


def test_runs_side_by_side_with_intervals(fake_record):
    table = runs_table([fake_record("demo_hed", 0, 0.1), fake_record("demo_macenko", 1, 0.0)], "accuracy")
    lines = table.splitlines()
    assert lines[0] == "| run | stain handling | k = 0 | k = 1 | k = 2 |"
    assert (
        lines[2]
        == "| demo_hed/version_0 | HED 0.05/0.02 | 0.900 [0.85, 0.95] | 0.800 [0.75, 0.85] | 0.700 [0.65, 0.75] |"
    )
    assert lines[3].startswith("| demo_macenko/version_1 | macenko | 0.900 [0.85, 0.95] |")


def test_experiments_mean_and_std(fake_record):
    records = [fake_record("a", 0, 0.1), fake_record("a", 1, 0.2), fake_record("b", 0, 0.0)]
    lines = experiments_table(records, "auroc").splitlines()
    assert lines[2] == "| a | 2 | 0.900 ± 0.000 | 0.750 ± 0.071 | 0.600 ± 0.141 |"
    assert lines[3] == "| b | 1 | 0.900 | 0.900 | 0.900 |"


def test_handling_and_the_whole_report(fake_record):
    assert handling(fake_record("x", 0, 0)) == "none"
    assert handling(fake_record("x_hed_macenko", 0, 0)) == "HED 0.05/0.02 + macenko"
    text = stain_shift_markdown([fake_record("a", 0, 0.1)])
    assert text.startswith("# Stain-shift robustness\n\nEach run's best checkpoint")
    assert "## AUROC per run" in text
    assert "k = 1: 20.0" in text
    assert "No runs" in stain_shift_markdown([])


def test_the_test_split_table(fake_record):
    records = [fake_record("a", 0, 0.1), fake_record("a", 1, 0.2), fake_record("b_hed", 0, 0.0)]
    lines = level_table(records, metrics=("accuracy", "auroc")).splitlines()
    assert lines[0] == "| experiment / run | stain handling | accuracy | AUROC |"
    assert lines[2] == "| **a** (n=2) | none | **0.900 ± 0.000** | **0.900 ± 0.000** |"
    assert lines[3] == "| a/version_0 (seed 0) | | 0.900 [0.85, 0.95] | 0.900 [0.85, 0.95] |"
    assert lines[5] == "| **b_hed** (n=1) | HED 0.05/0.02 | **0.900** | **0.900** |"
    assert (
        level_table(records, level=2.0, metrics=("accuracy",))
        .splitlines()[3]
        .startswith("| a/version_0 (seed 0) | | 0.700 [0.65, 0.75]")
    )
