"""Robustness figures: one curve per run with its intervals, experiments averaged, the shifted images."""

from __future__ import annotations

import torch

from breakhis_lit.robustness.figure import experiments, shift_examples_figure, stain_shift_figure
from breakhis_lit.stain import MacenkoNormalizer

from figure_check import assert_readable


def test_one_curve_per_run_and_a_mean_per_experiment(fake_record, tmp_path):
    records = [fake_record("a", v, 0.1) for v in range(3)] + [fake_record("b_hed", v, 0.02) for v in range(3)]
    assert experiments(records) == ["a", "b_hed"]
    fig = stain_shift_figure(records)
    axes = fig.get_axes()
    assert len(axes) == 4  # accuracy and AUROC, per run and per experiment
    assert len(axes[0].get_lines()) >= 6
    assert len(axes[1].get_legend().get_texts()) == 6  # beside the last column
    assert [t.get_text() for t in axes[3].get_legend().get_texts()] == ["a (n=3)", "b_hed (n=3)"]
    assert_readable(fig)
    fig.savefig(tmp_path / "curves.png", dpi=60)
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_single_runs_get_one_row(fake_record):
    fig = stain_shift_figure([fake_record("a", 0, 0.1), fake_record("b", 0, 0.1)], metrics=("accuracy",))
    assert len(fig.get_axes()) == 1


def test_examples_show_the_shift_and_the_normalisation(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(2, 3, 16, 16, generator=g) * 120 + 100).to(torch.uint8)
    target = MacenkoNormalizer(min_tissue=0).fit(images)
    fig = shift_examples_figure(images, [0.0, 1.0, 2.0], {"macenko": target}, labels=["x", "y"])
    assert len(fig.get_axes()) == 2 * 2 * 3  # (shifted, normalised) x images, x levels
    assert "normalisation" in fig.get_suptitle()
    assert_readable(fig)
    fig.savefig(tmp_path / "examples.png", dpi=50)


def test_examples_without_normalisation_fit_and_say_so():
    images = torch.full((3, 3, 16, 16), 180, dtype=torch.uint8)
    fig = shift_examples_figure(images, [0.0, 1.0, 2.0], labels=["malignant SOB_M_DC_14-2985", "benign 13412", "x"])
    assert len(fig.get_axes()) == 3 * 3
    assert "normalisation" not in fig.get_suptitle()
    assert_readable(fig)
