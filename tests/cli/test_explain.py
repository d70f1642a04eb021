"""``saliencykit explain`` end to end: the defaults, a custom TorchScript model, the options."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import TIMEOUT_S, CliRun, assert_one_line_error, assert_valid_png, run_cli, tiny_model_args
from .test_bad_input import hide_module

#: The methods run by default, in the panel's order (Score-CAM and RISE only when asked for).
ALL_METHODS = [
    "gradients",
    "gradient-x-input",
    "smoothgrad",
    "ig",
    "blur-ig",
    "guided-ig",
    "xrai",
    "gradcam",
    "gradcam++",
    "layercam",
    "hirescam",
    "guided-backprop",
    "guided-gradcam",
    "occlusion",
]
#: Methods a TorchScript model cannot run (its modules cannot be hooked).
HOOK_METHODS = ["gradcam", "gradcam++", "layercam", "hirescam", "guided-backprop", "guided-gradcam"]
#: Keep the tiny-model runs quick.
FAST = ["--steps", "4", "--samples", "3"]


def test_defaults_explain_the_cat(default_explain: CliRun) -> None:
    summary = default_explain.json()
    assert summary["image"] == "skimage.data.chelsea()"
    assert summary["class_index"] == 285
    assert summary["label"] == "Egyptian cat"
    assert 0.6 < summary["probability"] < 0.9
    assert summary["top5"][0]["class_index"] == 285
    assert [method["name"] for method in summary["methods"]] == ALL_METHODS
    assert summary["skipped"] == {}
    for method in summary["methods"]:
        assert method["seconds"] > 0, method
    # Parameters as documented (see saliencykit/cli/methods.py).
    parameters = {method["name"]: method["parameters"] for method in summary["methods"]}
    assert parameters["ig"] == {"x_steps": 25, "batch_size": 10}
    assert parameters["occlusion"] == {"size": 32, "stride": 16, "value": 0.0, "batch_size": 32}
    assert summary["gradcam_layer"] == "_bn1"
    report = (default_explain.out / "report.html").read_text(encoding="utf-8")
    assert "<b>Grad-CAM layer:</b> <code>_bn1</code>" in report


def test_defaults_stay_fast(default_explain: CliRun) -> None:
    """The methods take well under a minute together (about 10-20 s on 2 cores)."""
    assert sum(method["seconds"] for method in default_explain.json()["methods"]) < 90


def test_defaults_write_panel_report_and_summary(default_explain: CliRun) -> None:
    summary = default_explain.json()
    out = default_explain.out
    assert {Path(path).name for path in summary["outputs"].values()} == {
        "panel.png",
        "report.html",
        "explain.json",
    }
    width, height = assert_valid_png(out / "panel.png", min_size=(800, 600))
    assert width > height  # eight tiles a row: the input and 14 methods in two rows
    assert json.loads((out / "explain.json").read_text()) == summary
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Egyptian cat" in report
    assert all(title in report for title in ("Integrated Gradients", "XRAI", "Grad-CAM", "Occlusion"))


def test_defaults_report_is_self_contained(default_explain: CliRun) -> None:
    report = (default_explain.out / "report.html").read_text(encoding="utf-8")
    sources = [part.split('"', 1)[0] for part in report.split('<img src="')[1:]]
    assert len(sources) == 2 + 2 * len(ALL_METHODS)  # panel, input, two pictures per method
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "http://" not in report and "https://" not in report


def test_quiet_run_without_terminal_prints_only_json(default_explain: CliRun) -> None:
    """No progress bar when stderr is not a terminal, and nothing but JSON on stdout."""
    assert default_explain.stderr == ""
    assert default_explain.stdout.lstrip().startswith("{")


def test_torchscript_model(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("sharp\nblurred\nred\n")
    run = run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--labels",
        str(labels),
        "--param",
        "occlusion.stride=2",
        "--save-maps",
        "--json",
        "--out",
        "result",
        *FAST,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    summary = run.json()
    assert (summary["class_index"], summary["label"]) == (0, "sharp")
    assert summary["input_size"] == [32, 32]
    expected = [name for name in ALL_METHODS if name not in HOOK_METHODS]
    assert [method["name"] for method in summary["methods"]] == expected
    assert sorted(summary["skipped"]) == sorted(HOOK_METHODS)
    for name in HOOK_METHODS:  # each left out with a note
        assert f"note: {name} left out: TorchScript modules cannot be hooked" in run.stderr
    parameters = {method["name"]: method["parameters"] for method in summary["methods"]}
    assert parameters["occlusion"] == {"size": 4, "stride": 2, "value": 0.0, "batch_size": 32}
    assert parameters["ig"]["x_steps"] == 4 and parameters["smoothgrad"]["nsamples"] == 3
    assert_valid_png(tmp_path / "result" / "panel.png")
    with np.load(tmp_path / "result" / "maps.npz") as maps:
        assert sorted(maps.files) == sorted(name.replace("-", "_") for name in expected)
        assert maps["ig"].shape == (32, 32, 3) and maps["xrai"].shape == (32, 32)
        assert all(np.isfinite(maps[key]).all() for key in maps.files)


def test_torchscript_model_other_class(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    run = run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--class-index",
        "2",
        "--methods",
        "ig,occlusion",
        *FAST,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "prediction: class 2 'class 2'" in run.stdout
    assert "Integrated Gradients" in run.stdout and "Occlusion" in run.stdout
    assert "wrote report: saliencykit-out/report.html" in run.stdout
    assert_valid_png(tmp_path / "saliencykit-out" / "panel.png")


def test_progress_bar_on_a_terminal(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    """tqdm draws on stderr when it is a terminal; --quiet silences it."""
    outputs = {}
    for flag in ("--json", "--quiet"):
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 x 100 characters
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "saliencykit",
                "explain",
                str(photo),
                *tiny_model_args(tiny_model),
                "--methods",
                "ig,smoothgrad",
                flag,
                *FAST,
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=TIMEOUT_S,
            check=False,
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(controller)
        assert completed.returncode == 0
        outputs[flag] = b"".join(chunks).decode(errors="replace")
    assert "explain" in outputs["--json"] and "7/7" in outputs["--json"], outputs["--json"]  # 4 + 3 images
    assert outputs["--quiet"] == ""


def test_requested_method_the_model_cannot_run(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    run = run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--methods",
        "gradcam",
        cwd=tmp_path,
    )
    assert_one_line_error(run, "--methods: gradcam is not available", "TorchScript")


def test_alpha_channel_is_dropped_with_a_note(tiny_model: Path, tmp_path: Path) -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = np.arange(40)[None, :] * 6
    rgba[::2, :, 1] = 255
    rgba[..., 3] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    run = run_cli(
        "explain",
        "alpha.png",
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "note: the image has an alpha channel: composited onto white, alpha dropped" in run.stderr
    assert_valid_png(tmp_path / "saliencykit-out" / "panel.png")


def test_one_channel_image_is_converted(tiny_model: Path, tmp_path: Path) -> None:
    gray = (np.indices((40, 40)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    run = run_cli(
        "explain",
        "gray.png",
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        "--json",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "note: the image has one channel: converted to RGB" in run.stderr
    assert run.json()["notes"] == ["the image has one channel: converted to RGB"]


def test_device_cpu(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    """--device cpu runs the PyTorch model on the CPU; the summary and the report say where."""
    run = run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--device",
        "CPU",
        "--methods",
        "ig,occlusion",
        "--json",
        *FAST,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    summary = run.json()
    assert summary["device"] == "cpu" and summary["gradcam_layer"] is None  # TorchScript: no Grad-CAM
    report = (tmp_path / "saliencykit-out" / "report.html").read_text(encoding="utf-8")
    assert "<b>Device:</b> <code>cpu</code>" in report and "<b>Grad-CAM layer:</b> none" in report


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras saving on NumPy 2
def test_keras_model(photo: Path, tmp_path: Path) -> None:
    """A .keras file: input size from the model, Grad-CAM on its last 4-D layer, guided backprop.

    With PyTorch hidden: a Keras model needs only saliencykit[tensorflow,plot].
    """
    keras = pytest.importorskip("keras")
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(pooled)).save(tmp_path / "tiny.keras")
    run = run_cli(
        "explain",
        str(photo),
        "--model",
        "tiny.keras",
        "--methods",
        "ig,gradcam,guided-backprop",
        "--device",
        "cpu",
        "--json",
        *FAST,
        cwd=tmp_path,
        env=hide_module(tmp_path / "hidden", "torch"),
    )
    assert run.returncode == 0, run.stderr
    summary = run.json()
    assert summary["model"] == "Keras model tiny.keras" and summary["input_size"] == [32, 32]
    assert summary["gradcam_layer"] == "features" and summary["device"] is None
    assert summary["notes"] == ["--device cpu is for PyTorch models: TensorFlow places a Keras model itself"]
    report = (tmp_path / "saliencykit-out" / "report.html").read_text(encoding="utf-8")
    assert "<b>Grad-CAM layer:</b> <code>features</code>" in report
    assert [method["name"] for method in summary["methods"]] == ["ig", "gradcam", "guided-backprop"]
    assert 0.0 < summary["probability"] <= 1.0
    assert_valid_png(tmp_path / "saliencykit-out" / "panel.png")
