"""The command line's parts, in process: images, options, method parameters, pictures, panel, report."""

from __future__ import annotations

import os
import sys
import types
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


# ----------------------------------------------------------------------------- Occlusion's colours


def occlusion_picture(values: np.ndarray) -> np.ndarray:
    """The map picture of an Occlusion map whose channels sum to ``values``."""
    saliency_map = np.repeat(values[..., None] / 3.0, 3, axis=-1)
    return pictures_of(saliency_map, "diverging", np.zeros((*values.shape, 3))).saliency_map.astype(int)


def test_occlusion_all_negative_map_keeps_its_gradations() -> None:
    """Zero is white, the strongest value full blue, half of it half-way: not a solid blue picture."""
    values = -np.linspace(0.0, 1.0, 101)[None, :]  # 0, -0.01, ..., -1
    picture = occlusion_picture(values)
    assert (picture[0, 0] >= 250).all()  # 0: white
    np.testing.assert_array_equal(picture[0, -1], [0, 0, 255])  # -1: blue
    middle = picture[0, 50]  # -0.5: between white and blue
    assert middle[2] == 255 and 100 < middle[0] < 155 and middle[0] == middle[1], middle
    red = picture[0, :, 0]
    assert (np.diff(red) <= 0).all() and red[0] - red[-2] > 200  # lighter towards zero, all the way


def test_occlusion_mixed_map_is_centred_on_zero() -> None:
    """Mostly negative, weakly positive: scaled by the absolute values, +1 is pale red, not full red."""
    values = np.array([[-10.0, -10.0, -5.0, 1.0, 0.0, 0.5]])
    picture = occlusion_picture(np.repeat(values, 30, axis=0))[0]
    np.testing.assert_array_equal(picture[0], [0, 0, 255])  # -10: blue
    assert picture[2][2] == 255 and 100 < picture[2][0] < 155  # -5: half-way to blue
    assert picture[3][0] == 255 and picture[3][1] > 200  # +1: pale red
    assert (picture[4] >= 250).all()  # 0: white
    assert picture[5][0] == 255 and picture[3][1] < picture[5][1] < 255  # +0.5: paler still
    mirrored = occlusion_picture(-np.repeat(values, 30, axis=0))[0]
    np.testing.assert_allclose(mirrored, picture[:, ::-1], atol=3)  # the opposite map: the colours swapped


def test_diverging_scale() -> None:
    from saliencykit.cli.display import diverging_scale

    np.testing.assert_array_equal(diverging_scale(np.zeros((3, 4))), np.full((3, 4), 0.5))
    sparse = np.zeros((20, 20))
    sparse[0, 0] = -2.0  # under 1% of the values are non-zero: scaled by the largest
    scaled = diverging_scale(sparse)
    assert scaled[0, 0] == 0.0 and scaled[5, 5] == 0.5
    np.testing.assert_allclose(diverging_scale(np.array([[1.0, -1.0, 0.5]])), [[1.0, 0.0, 0.75]])


# ----------------------------------------------------------------------------- options, labels, keras


def test_range_checked_option_types() -> None:
    import argparse

    from saliencykit.cli.options import device_name, integer_in, number_in

    assert integer_in(1, 5)("5") == 5 and number_in(0.0, 1.0)("0.25") == 0.25
    for parse, text in ((integer_in(1, 5), "6"), (integer_in(0), "-1"), (number_in(0, 1), "nan")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"got '{text}'"):
            parse(text)
    assert [device_name(text) for text in ("cpu", "CUDA", "cuda:1", " mps ")] == [
        "cpu",
        "cuda",
        "cuda:1",
        "mps",
    ]
    for text in ("gpu", "cuda:", "cuda:-1", "cpu:0x", "xla"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected cpu, cuda, cuda:N or mps"):
            device_name(text)


def test_read_label_file(tmp_path: Path) -> None:
    from saliencykit.cli.models import read_label_file

    (tmp_path / "labels.txt").write_text(" cat \n\ndog\n", encoding="utf-8")
    labels = read_label_file(tmp_path / "labels.txt")
    assert labels.names == ("cat", "dog") and labels.path == str(tmp_path / "labels.txt")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nothing writes to it: opening it must not wait
    with pytest.raises(ValueError, match="is not a file"):
        read_label_file(fifo)


def test_torch_model_runs_on_the_device(tiny_model: Path) -> None:
    """--device cpu: the model, its inputs and its preprocessing constants on the CPU; JSON says so."""
    torch = pytest.importorskip("torch")
    from saliencykit.cli.models import load_model

    model, _ = load_model(str(tiny_model), input_size=(32, 32), device="cpu")
    assert model.device == "cpu"
    image = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    probabilities = model.predict_probabilities(image)
    assert probabilities.shape == (1, 3) and np.isfinite(probabilities).all()
    gradients = model.make_call_model_function(0)(image, None, ["INPUT_OUTPUT_GRADIENTS"])
    assert np.isfinite(gradients["INPUT_OUTPUT_GRADIENTS"]).all()
    default, _ = load_model(str(tiny_model), input_size=(32, 32))
    assert default.device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_keras_files_are_loaded_in_safe_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """safe_mode=True is passed explicitly, whatever keras.config says (no TensorFlow needed here)."""
    from saliencykit.cli.models import load_model

    calls = []

    def load(path: str, **options: object) -> None:
        calls.append(options)
        raise ValueError("Requested the deserialization of a `Lambda` layer ... passing `safe_mode=False`")

    fake_keras = types.ModuleType("keras")
    fake_keras.models = types.SimpleNamespace(load_model=load)  # type: ignore[attr-defined]
    fake_adapter = types.ModuleType("saliencykit.keras")
    fake_adapter.make_call_model_function = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keras", fake_keras)
    monkeypatch.setitem(sys.modules, "saliencykit.keras", fake_adapter)
    for name in ("net.keras", "net.h5"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(CliError, match="saliencykit loads Keras files with safe_mode=True"):
            load_model(str(tmp_path / name))
    assert calls == [{"compile": False, "safe_mode": True}] * 2


def test_report_names_the_gradcam_layer_and_device() -> None:
    from saliencykit.cli.report import report_html

    image = np.zeros((8, 8, 3))
    prediction = Prediction(0, "cat", 0.9, [(0, "cat", 0.9)])
    common = {
        "image": image,
        "image_name": "x",
        "model_description": "m",
        "prediction": prediction,
        "results": [],
        "pictures": [],
        "panel_png": b"",
        "skipped": {},
        "notes": [],
    }
    html = report_html(**common, gradcam_layer="_bn1", device="cuda:0")
    assert "<b>Grad-CAM layer:</b> <code>_bn1</code>" in html and "<b>Device:</b> <code>cuda:0</code>" in html
    assert "<b>Grad-CAM layer:</b> none" in report_html(**common)


def test_pic_options_always_batch() -> None:
    import argparse

    from saliencykit.cli.evaluate import pic_options

    args = argparse.Namespace(min_pred_value=0.5, batch_size=None, n_jobs=None)
    assert pic_options(args, 13) == {"min_pred_value": 0.5, "batch_size": 13, "n_jobs": None}
    args.batch_size, args.n_jobs = 4, 2
    assert pic_options(args, 13) == {"min_pred_value": 0.5, "batch_size": 4, "n_jobs": 2}
