import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from fake_runs import write_fake_runs

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "results.ipynb"


def test_committed_notebook_is_clean():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert any("parameters" in cell.metadata.get("tags", []) for cell in code)


def _kernel_for_this_python(root: Path) -> str:
    """A kernel spec running this interpreter, so the test never picks another Python's kernel."""
    spec = root / "kernels" / "breakhis-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "breakhis test", "language": "python"}))
    return "breakhis-test"


def test_notebook_executes_on_fabricated_runs(tmp_path, monkeypatch):
    logs = tmp_path / "lightning_logs"
    write_fake_runs(logs, models=("DALAResNet50", "resnet50"), magnifications=("40", "100"), seeds=(0, 1), epochs=4)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("BREAKHIS_RUNS", str(logs))
    monkeypatch.setenv("BREAKHIS_FIGURES", str(tmp_path / "figures"))
    kernel = _kernel_for_this_python(tmp_path / "jupyter")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, kernel_name=kernel, timeout=120, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError when a cell fails

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    markdown = "".join(output.get("data", {}).get("text/markdown", "") for output in outputs)
    assert "| DALAResNet50 | DALA-ResNet50 (proposed) | 40 |" in markdown
    assert "paper convergence (s)" in markdown
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 4  # loss, accuracy, Grad-CAM pairs, confusion
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "confusion.png",
        "curves_accuracy.png",
        "curves_loss.png",
        "gradcam_pairs.png",
    ]
    assert "8 finished runs" in "".join(output.get("text", "") for output in outputs)
