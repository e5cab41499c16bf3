"""The TensorBoard confusion-matrix figure: labelled, and its title inside the figure."""

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from breakhis_lit.callbacks.figures import confusion_figure


@pytest.mark.parametrize("classes", [["benign", "malignant"], ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"]])
def test_title_and_counts_fit_in_the_figure(classes: list[str]) -> None:
    n = len(classes)
    confusion = torch.arange(n * n).view(n, n)
    fig = confusion_figure(confusion, classes, "test, checkpoint of epoch 12")
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    title = ax.title.get_window_extent(renderer)
    box = fig.bbox
    assert box.x0 <= title.x0, "the title is clipped on the left"
    assert title.x1 <= box.x1, "the title is clipped on the right"
    assert sorted(int(t.get_text()) for t in ax.texts) == list(range(n * n))
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
