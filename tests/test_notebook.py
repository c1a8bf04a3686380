"""examples/mnist_cnn.ipynb executes top to bottom (on 1,000 digits, 1 epoch) and prints the
seed tutorial's lines; the committed file has no outputs and matches its generator script."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOK = EXAMPLES / "mnist_cnn.ipynb"
KERNEL = "minicnn-test"


def _kernel_spec(root: Path) -> None:
    """A kernel spec running *this* interpreter (the venv's), whatever else is installed: a
    user-level 'python3' spec could otherwise point at another Python without minicnn."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "minicnn test",
                "language": "python",
            }
        )
    )


@pytest.mark.slow
def test_notebook_executes_on_a_small_subset(tmp_path, monkeypatch):
    _kernel_spec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MINICNN_NOTEBOOK_SMALL", "1")
    # The notebook is under test here, not the kernels: NumPy's need no JIT compile.
    monkeypatch.setenv("MINICNN_BACKEND", "numpy")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name=KERNEL, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    text = "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )
    for line in [
        "x_train shape: (1000, 28, 28, 1)",
        "1000 train samples",
        "test samples",
        'Model: "sequential"',
        "Total params: 54,410",
        "Epoch 1/1",
        "Test loss:",
        "Test accuracy:",
        "(3, 3, 1, 32)",
        "(1, 26, 26, 32)",
    ]:
        assert line in text, line
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 7  # the seed's figures: filters, 2 probability charts, histogram,
    #                          learned filters, activations, plus the training curves


def test_committed_notebook_has_no_outputs_and_matches_its_script():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    spec = importlib.util.spec_from_file_location("make_notebook", EXAMPLES / "make_notebook.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    assert [c.source for c in make.build().cells] == [c.source for c in nb.cells], (
        "examples/mnist_cnn.ipynb is out of date: run examples/make_notebook.py"
    )
