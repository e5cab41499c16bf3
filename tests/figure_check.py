"""Readability checks of matplotlib figures: every text inside the figure and clear of every other text."""

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import combinations
from unittest import mock

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text


@contextmanager
def saved_figures() -> Iterator[list[Figure]]:
    """Collect every figure saved (``Figure.savefig``) inside the block, in order; they are saved as usual."""
    figures: list[Figure] = []
    savefig = Figure.savefig

    def save(figure: Figure, *args, **kwargs):
        figures.append(figure)
        return savefig(figure, *args, **kwargs)

    with mock.patch.object(Figure, "savefig", save):
        yield figures


def assert_readable(figure: Figure) -> None:
    """Every text drawn (titles, suptitle, axis and tick labels, legends) lies inside ``figure``; none overlap."""
    drawn: list[Text] = []
    draw = Text.draw

    def record(text: Text, renderer) -> None:
        if text.get_visible() and text.get_text().strip():
            drawn.append(text)
        draw(text, renderer)

    with mock.patch.object(Text, "draw", record):
        FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    assert drawn
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in drawn]
    frame = figure.bbox
    for text, box in boxes:
        inside = box.x0 >= frame.x0 - 1 and box.y0 >= frame.y0 - 1 and box.x1 <= frame.x1 + 1 and box.y1 <= frame.y1 + 1
        assert inside, f"{text!r} at {box.extents} leaves the figure {frame.extents}"
    for (text_a, a), (text_b, b) in combinations(boxes, 2):
        assert not _overlap(a, b), f"{text_a!r} overlaps {text_b!r}"


def _overlap(a, b) -> bool:
    """Whether two boxes share more than a pixel's strip."""
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1
