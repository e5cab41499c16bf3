import pytest
from PIL import Image

from breakhis_lit.reporting.figures import (
    aggregate_series,
    gradcam_kind,
    pick_gradcam,
    plot_confusion,
    plot_curves,
    plot_gradcam_pairs,
    plural,
    wrap_text,
)
from breakhis_lit.reporting.runs import load_runs
from breakhis_lit.rundir import GradCAMEntry, RunDir, read_gradcam_manifest, write_gradcam_manifest

from fake_runs import write_fake_run
from figure_check import assert_readable, saved_figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_side=300, max_side=6000):
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min(image.size) >= min_side
        assert max(image.size) <= max_side


@pytest.fixture(scope="module")
def runs(fake_logs):
    return load_runs(fake_logs)


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_plot_curves(runs, tmp_path, metric):
    out = plot_curves(runs, metric, tmp_path / "sub" / f"curves_{metric}.png")
    assert out == tmp_path / "sub" / f"curves_{metric}.png"
    assert_png(out)


def test_plot_curves_nothing_to_draw(runs, tmp_path):
    assert plot_curves(runs, "no_such_metric", tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_aggregate_series_by_hand():
    epochs, mean, std = aggregate_series([{0: 1.0, 1: 0.5}, {0: 3.0, 1: 0.7, 2: 0.2}])
    assert epochs.tolist() == [0, 1, 2]
    assert mean.tolist() == pytest.approx([2.0, 0.6, 0.2])
    assert std.tolist() == pytest.approx([2**0.5, 0.02**0.5, 0.0])


def test_plot_confusion(runs, tmp_path):
    assert_png(plot_confusion(runs, tmp_path / "confusion.png"))


def test_plot_confusion_subtype(tmp_path):
    write_fake_run(tmp_path / "logs" / "version_0", task="subtype", magnification=None)
    with saved_figures() as figures:
        assert_png(plot_confusion(load_runs(tmp_path / "logs"), tmp_path / "confusion.png"), min_side=200)
    assert_readable(figures[0])


PLOTS = {
    "curves": lambda runs, out: plot_curves(runs, "loss", out),
    "confusion": plot_confusion,
    "gradcam_pairs": plot_gradcam_pairs,
}


@pytest.mark.parametrize("logs", ["fake_logs", "long_label_logs"])
@pytest.mark.parametrize("plot", PLOTS)
def test_every_text_fits_and_stands_clear(request, tmp_path, logs, plot):
    with saved_figures() as figures:
        PLOTS[plot](load_runs(request.getfixturevalue(logs)), tmp_path / "figure.png")
    assert_readable(figures[0])


def test_confusion_titles_count_runs(long_label_logs, tmp_path):
    with saved_figures() as figures:
        plot_confusion(load_runs(long_label_logs), tmp_path / "confusion.png")
    titles = [ax.get_title() for ax in figures[0].axes if ax.get_visible()]
    assert len(titles) == 2
    assert all(title.endswith("(1 run)") for title in titles)


def test_wrap_text_and_plural():
    text = "DALAResNet[resnet18] · patient (accession) · all magnifications (n=3 runs)\ntrue benign"
    wrapped = wrap_text(text, 2.0, 8)
    assert wrapped.replace("\n", " ") == text.replace("\n", " ")
    assert max(len(line) for line in wrapped.split("\n")) <= 2.0 * 72 / (0.55 * 8)
    assert wrapped.endswith("\ntrue benign")
    assert (plural(1, "run"), plural(3, "run")) == ("1 run", "3 runs")


def test_plot_gradcam_pairs(runs, tmp_path):
    assert_png(plot_gradcam_pairs(runs, tmp_path / "gradcam_pairs.png"))


def test_gradcam_pairs_none_without_a_manifest(tmp_path):
    run_dir = write_fake_run(tmp_path / "logs" / "version_0", gradcam=False)
    folder = RunDir(run_dir).evaluation().path / "gradcam"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "test_benign_0.png")  # a class in the name, but no manifest entry
    assert plot_gradcam_pairs(load_runs(tmp_path / "logs"), tmp_path / "g.png") is None
    assert not (tmp_path / "g.png").exists()


def test_gradcam_pairs_with_only_malignant(tmp_path):
    run_dir = write_fake_run(tmp_path / "logs" / "version_0")
    folder = RunDir(run_dir).evaluation().path / "gradcam"
    write_gradcam_manifest(folder, [e for e in read_gradcam_manifest(folder) if e.label == "malignant"])
    assert_png(plot_gradcam_pairs(load_runs(tmp_path / "logs"), tmp_path / "g.png"), min_side=200)


@pytest.mark.parametrize(
    ("label", "kind"),
    [("benign", "benign"), ("malignant", "malignant"), ("DC", "malignant"), ("PT", "benign"), ("", None)],
)
def test_gradcam_kind_from_the_true_class(label, kind):
    assert gradcam_kind(GradCAMEntry("a.png", "a_image.png", "x.png", label, "benign", 0.9)) == kind


def test_pick_gradcam_follows_the_manifest(tmp_path):
    run_dir = write_fake_run(tmp_path / "version_0")
    folder = RunDir(run_dir).evaluation().path / "gradcam"
    entries = read_gradcam_manifest(folder)
    # The overlay named "benign" shows a malignant image: the manifest, not the name, decides.
    swapped = [
        GradCAMEntry(
            e.file, e.input_file, e.image, "malignant" if e.label == "benign" else "benign", e.prediction, e.probability
        )
        for e in entries
    ]
    write_gradcam_manifest(folder, swapped)
    _, entry, path = pick_gradcam(load_runs(tmp_path), "benign")
    assert path.name == "test_malignant_0.png"
    assert entry.label == "benign"
