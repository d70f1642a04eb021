"""The command line's parts, in process: images, options, method parameters, pictures, panel, report."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saliencykit.cli.display import pictures_of, saliency_2d
from saliencykit.cli.errors import CliError
from saliencykit.cli.images import load_image, resize_image
from saliencykit.cli.methods import (
    METHODS,
    MethodResult,
    choose_methods,
    method_parameters,
    parse_method_names,
)
from saliencykit.cli.models import Prediction, to_probabilities
from saliencykit.cli.options import parse_input_size

from .test_bad_input import png_header

# ----------------------------------------------------------------------------- images


def test_rgba_is_composited_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, :] = (255, 0, 0, 255)  # opaque red on top, fully transparent black below
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.pixels.shape == (4, 4, 3) and loaded.pixels.dtype == np.uint8
    assert (loaded.pixels[:2] == (255, 0, 0)).all() and (loaded.pixels[2:] == 255).all()
    assert loaded.notes == ["the image has an alpha channel: composited onto white, alpha dropped"]


@pytest.mark.parametrize("mode", ["L", "1", "P", "LA", "I;16", "CMYK"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    gray = np.tile(np.linspace(0, 255, 8).astype(np.uint8), (6, 1))
    image = Image.fromarray(gray, "L")
    if mode == "I;16":
        image = Image.fromarray(gray.astype(np.uint16) * 257)
        assert image.mode.startswith("I;16")
    else:
        image = image.convert(mode)
    suffix = "jpg" if mode == "CMYK" else "png"
    image.save(tmp_path / f"image.{suffix}")
    loaded = load_image(tmp_path / f"image.{suffix}")
    assert loaded.pixels.shape == (6, 8, 3) and loaded.pixels.dtype == np.uint8
    if mode in ("L", "I;16"):
        np.testing.assert_array_equal(loaded.pixels[..., 0], gray)


def test_images_over_the_pixel_limit_are_refused(tmp_path: Path) -> None:
    """Above Image.MAX_IMAGE_PIXELS Pillow only warns; the command refuses those too."""
    (tmp_path / "warns.png").write_bytes(png_header(10_000, 10_000))  # 1e8 > 89,478,485 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning escapes
        with pytest.raises(CliError, match="decompression bomb"):
            load_image(tmp_path / "warns.png")


def test_large_images_are_resized() -> None:
    large = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    resized = resize_image(large, (224, 224))
    assert resized.shape == (224, 224, 3) and resized.dtype == np.float32
    assert 0 <= resized.min() and resized.max() <= 255
    assert abs(float(resized.mean()) - float(large.mean())) < 2


def test_an_image_of_the_right_size_is_unchanged() -> None:
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    np.testing.assert_array_equal(resize_image(image, (32, 32)), image.astype(np.float32))


# ----------------------------------------------------------------------------- options


def test_parse_input_size() -> None:
    assert parse_input_size(None) is None
    assert parse_input_size("224") == (224, 224)
    assert parse_input_size("240x320") == (240, 320)
    for bad in ("", "x", "4", "10x10x3", "big", "100000"):
        with pytest.raises(CliError, match="--input-size"):
            parse_input_size(bad)


def test_parse_method_names() -> None:
    assert parse_method_names(None) is None
    assert parse_method_names("all") is None
    assert parse_method_names("IG, Blur_IG,ig,xrai") == ["ig", "blur-ig", "xrai"]
    with pytest.raises(CliError, match="unknown method 'lime'"):
        parse_method_names("ig,lime")


def test_method_parameters_order_of_precedence() -> None:
    parameters = method_parameters(
        ["ig", "smoothgrad", "xrai", "occlusion", "gradcam"],
        (224, 224),
        steps=7,
        samples=5,
        batch_size=3,
        overrides=["ig.x_steps=9", "occlusion.value=127.5", "smoothgrad.seed=4"],
    )
    assert parameters["ig"] == {"x_steps": 9, "batch_size": 3}  # --param beats --steps
    assert parameters["smoothgrad"] == {"nsamples": 5, "stdev_spread": 0.15, "batch_size": 3, "seed": 4}
    assert parameters["xrai"]["steps"] == 7
    assert parameters["occlusion"] == {"size": 32, "stride": 16, "value": 127.5, "batch_size": 3}
    assert parameters["gradcam"] == {}
    assert method_parameters(["occlusion"], (64, 48))["occlusion"]["size"] == 6  # a seventh of the side


def test_every_default_method_set_is_known() -> None:
    for spec in METHODS.values():
        assert spec.display in ("grayscale", "diverging", "heatmap")
        assert spec.needs <= {"gradcam", "guided"}


def test_choose_methods() -> None:
    notes: list[str] = []

    def probe(keys: list[str]) -> None:
        if any("GUIDED" in key.upper() for key in keys):
            raise RuntimeError("no ReLU modules\nsecond line")

    chosen, skipped = choose_methods(None, list(METHODS), {}, probe, notes.append)
    assert "guided-backprop" not in chosen and "gradcam" in chosen
    assert skipped == {
        "guided-backprop": "RuntimeError: no ReLU modules",
        "guided-gradcam": "RuntimeError: no ReLU modules",
    }
    assert notes == [
        "guided-backprop left out: RuntimeError: no ReLU modules",
        "guided-gradcam left out: RuntimeError: no ReLU modules",
    ]
    with pytest.raises(CliError, match="--methods: guided-backprop is not available for this model"):
        choose_methods(["ig", "guided-backprop"], list(METHODS), {}, probe, notes.append)


# ----------------------------------------------------------------------------- models


def test_to_probabilities() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    probabilities = to_probabilities(logits)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities[0].argmax() == 0
    np.testing.assert_array_equal(to_probabilities(probabilities), probabilities)  # already probabilities
    with pytest.raises(CliError, match=r"\[batch, classes\]"):
        to_probabilities(np.zeros((1, 3, 2)))


# ----------------------------------------------------------------------------- pictures, panel, report


@pytest.mark.parametrize("display", ["grayscale", "diverging", "heatmap"])
@pytest.mark.parametrize("kind", ["random", "constant"])
def test_pictures_of_every_kind_of_map(display: str, kind: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (20, 30, 3))
    shape = (20, 30) if display == "heatmap" else (20, 30, 3)
    saliency_map = rng.normal(size=shape) if kind == "random" else np.zeros(shape)
    pictures = pictures_of(saliency_map, display, image)
    for picture in (pictures.saliency_map, pictures.with_image):
        assert picture.shape == (20, 30, 3) and picture.dtype == np.uint8
    assert saliency_2d(saliency_map, display).shape == (20, 30)


def test_xrai_pictures_show_the_top_30_percent() -> None:
    image = np.full((10, 10, 3), 200.0)
    ranks = np.arange(100, dtype=float).reshape(10, 10)
    pictures = pictures_of(ranks, "heatmap", image)
    kept = (pictures.with_image > 0).any(axis=-1)
    assert kept.sum() == 30 and kept[-3:].all()
    assert pictures.with_image_caption == "top 30%"


def test_panel_and_report_without_a_model(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from saliencykit.cli.panel import save_panel
    from saliencykit.cli.report import save_report

    image = np.random.default_rng(1).uniform(0, 255, (24, 24, 3))
    results = [
        MethodResult(name, METHODS[name].title, {"x": 1}, 0.5, np.ones((24, 24, 3)), METHODS[name].display)
        for name in ("ig", "occlusion")
    ]
    pictures = [pictures_of(result.saliency_map, result.display, image) for result in results]
    prediction = Prediction(1, "a <b>label</b>", 0.9, [(1, "a <b>label</b>", 0.9), (0, "other", 0.1)])
    panel = save_panel(
        tmp_path / "sub" / "panel.png", image, "test image", prediction, results, pictures, dpi=40
    )
    with Image.open(panel) as opened:
        opened.load()
    report = save_report(
        tmp_path / "report.html",
        image=image,
        image_name="test & image",
        model_description="a model",
        prediction=prediction,
        results=results,
        pictures=pictures,
        panel_png=panel.read_bytes(),
        skipped={"gradcam": "no layer"},
        notes=["a note"],
    )
    html = report.read_text(encoding="utf-8")
    assert "a &lt;b&gt;label&lt;/b&gt;" in html and "<b>label</b>" not in html  # escaped
    assert "test &amp; image" in html and "no layer" in html and "a note" in html
    assert html.count("<img ") == 2 + 2 * len(results)
