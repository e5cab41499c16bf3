"""Reliability diagram: one curve per run with its ECE in the legend, the diagonal, counts; written as a PNG."""

import numpy as np
import pytest
from PIL import Image
from scipy.special import expit

from breakhis_lit.errors import BreakHisError
from breakhis_lit.reporting.calibration import plot_report_reliability
from breakhis_lit.reporting.reliability import plot_reliability
from breakhis_lit.reporting.runs import load_runs
from breakhis_lit.stats import reliability_bins

from figure_check import assert_readable, saved_figures


def runs() -> dict:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    evidence = rng.normal(size=2000) + 1.5 * (2 * labels - 1)
    out = {}
    # The true log-odds are 3 * evidence: scale 3 is calibrated, 6 overconfident, 1 underconfident.
    for name, scale in (("overconfident", 6.0), ("calibrated", 3.0), ("underconfident", 1.0)):
        p1 = expit(scale * evidence)
        out[name] = reliability_bins(np.stack([1 - p1, p1], axis=1), labels)
    return out


def test_png_with_one_curve_per_run(tmp_path) -> None:
    bins = runs()
    out = tmp_path / "reliability.png"
    figure = plot_reliability(bins, title="binary, 40X", out=out)
    curve_ax, count_ax = figure.axes
    legend = [text.get_text() for text in curve_ax.get_legend().get_texts()]
    assert legend[0] == "perfect calibration"
    assert legend[1:] == [f"{name} (ECE {b.ece:.3f})" for name, b in bins.items()]
    assert len(curve_ax.lines) == 1 + len(bins)
    np.testing.assert_allclose(curve_ax.lines[0].get_xydata(), [[0, 0], [1, 1]])
    assert len(count_ax.patches) == len(bins)  # one count outline per run
    assert count_ax.get_yscale() == "log"
    with Image.open(out) as image:
        assert image.size == (520, 600)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # not blank


def test_long_run_names_fit_and_class_1_is_named() -> None:
    long = "DALAResNet[resnet18] · patient (accession) · all magnifications"
    bins = {f"{long} ({name})": b for name, b in runs().items()}
    figure = plot_reliability(bins, title=f"{long} (n=3 runs)", positive="malignant")
    assert figure.axes[1].get_xlabel() == "predicted probability of malignant"
    assert figure.axes[0].get_ylabel() == "observed frequency of malignant"
    assert_readable(figure)


def test_report_names_the_positive_class(long_label_logs, tmp_path) -> None:
    with saved_figures() as figures:
        assert plot_report_reliability(load_runs(long_label_logs), tmp_path) == [tmp_path / "reliability.png"]
    assert figures[0].axes[1].get_xlabel() == "predicted probability of malignant"
    assert_readable(figures[0])


def test_refusals() -> None:
    with pytest.raises(BreakHisError, match="no runs"):
        plot_reliability({})
    binary = runs()["calibrated"]
    probs = np.full((30, 3), 1 / 3)
    multiclass = reliability_bins(probs, np.arange(30) % 3)
    with pytest.raises(BreakHisError, match="mix binary and multiclass"):
        plot_reliability({"a": binary, "b": multiclass})
