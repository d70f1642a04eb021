"""Fixtures of the data-set run tests: the command-line tests' tiny TorchScript model, small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..cli.conftest import smooth_image, tiny_model  # noqa: F401  (tiny_model: a fixture, used by name)

#: Cheap methods a TorchScript model can run (no hooks), with their cheap parameters.
METHODS = ["gradients", "ig"]
CHEAP = {"ig": {"x_steps": 3}}


def write_images(folder: Path, count: int, size: int = 40, seed: int = 0) -> list[Path]:
    """``count`` PNG images: noisy ones (the tiny model's "sharp" class) and, every third, a smooth ramp."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    paths = []
    for number in range(count):
        if number % 3 == 2:
            pixels = smooth_image(size)
        else:
            pixels = generator.integers(0, 256, (size, size, 3), dtype=np.uint8)
        path = folder / f"image{number:02d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Three small images in ``tmp_path/images``."""
    return write_images(tmp_path / "images", 3)


@pytest.fixture
def spec(tiny_model: Path):  # noqa: F811
    """The tiny model at 32 x 32, on the CPU."""
    from saliencykit.runs import ModelSpec

    return ModelSpec(str(tiny_model), input_size=32, device="cpu")


class Counts:
    """What the patched :meth:`ModelSpec.load` counted: model loads and gradient (map) model calls."""

    def __init__(self) -> None:
        self.loads = 0
        self.calls = 0


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counts:
    """Counts model loads and the model calls of the maps, in this process."""
    from saliencykit.cli.methods import counting_calls
    from saliencykit.runs import ModelSpec

    counts = Counts()
    original = ModelSpec.load

    def load(self: ModelSpec):
        counts.loads += 1
        model = original(self)
        make = model.make_call_model_function

        def make_counted(class_index: int):
            def count(size: int) -> None:
                counts.calls += 1

            return counting_calls(make(class_index), count)

        model.make_call_model_function = make_counted
        return model

    monkeypatch.setattr(ModelSpec, "load", load)
    return counts


class RecordingEngine:
    """The local engine, recording the keys it was asked to compute."""

    def __init__(self, **options) -> None:
        from saliencykit.runs import LocalEngine

        self.engine = LocalEngine(**options)
        self.keys: list[str] = []

    def run(self, spec, items, batch_size, on_result) -> None:
        self.keys.extend(key for item in items for _, key, _ in item.methods)
        self.engine.run(spec, items, batch_size, on_result)
