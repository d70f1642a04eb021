"""Command-line options shared by ``explain`` and ``evaluate``: the model, the methods, the output."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any

from .errors import CliError
from .methods import METHODS
from .models import DEFAULT_MODEL, PREPROCESSING, LabelFile, read_label_file

__all__ = [
    "DEVICE_PATTERN",
    "add_method_arguments",
    "add_model_arguments",
    "device_name",
    "integer_in",
    "label_file",
    "number_in",
    "parameter_options",
    "parse_input_size",
]

#: ``--device``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (PyTorch's names).
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d{1,3})?|mps")


def integer_in(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``minimum`` to ``maximum`` (no upper bound when ``None``).

    Anything else is a usage error (exit status 2) saying what was expected.
    """
    expected = (
        f"an integer from {minimum} to {maximum}" if maximum is not None else f"an integer >= {minimum}"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def number_in(minimum: float, maximum: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number from ``minimum`` to ``maximum``; else a usage error."""
    expected = f"a number from {minimum:g} to {maximum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def device_name(text: str) -> str:
    """An argparse ``type``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (case-insensitive); else a usage error.

    Whether the device exists is checked when the model is loaded.
    """
    name = text.strip().lower()
    if not DEVICE_PATTERN.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    return name


def label_file(text: str) -> LabelFile:
    """An argparse ``type``: reads a ``--labels`` file (:func:`saliencykit.cli.models.read_label_file`).

    A file that is not a regular file (``/dev/zero``, a folder, a pipe), too
    large, not UTF-8 text or without any name is a usage error, found before
    anything is loaded.
    """
    try:
        return read_label_file(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_input_size(text: str | None) -> tuple[int, int] | None:
    """``"224"`` -> ``(224, 224)``, ``"240x320"`` -> ``(240, 320)`` (height x width); ``None`` stays.

    Raises:
      CliError: anything else, or sides outside 8 .. 4096 pixels.
    """
    if text is None:
        return None
    try:
        size = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 8 or max(size) > 4096:
        raise CliError(f"--input-size: expected N or HxW with sides from 8 to 4096 pixels, got {text!r}")
    return size[0], size[1]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--input-size``, ``--preprocess``, ``--layer``, ``--labels``, ``--device``."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"{DEFAULT_MODEL!r} (pretrained on ImageNet, needs saliencykit[demo]), a TorchScript file "
        "(.pt) or a Keras file (.keras) (default: %(default)s)",
    )
    group.add_argument(
        "--input-size", help="the model's input size, N or HxW (default: 224; Keras: the model's)"
    )
    group.add_argument(
        "--preprocess",
        choices=sorted(PREPROCESSING),
        help="what the model expects of RGB pixels x in [0, 255]: imagenet = (x/255 - mean)/std, "
        "unit = x/255, symmetric = x/127.5 - 1, none = x (default: imagenet)",
    )
    group.add_argument(
        "--layer", help="the layer Grad-CAM uses (default model: _bn1; Keras: the last 4-D layer)"
    )
    group.add_argument(
        "--labels",
        type=label_file,
        help="a UTF-8 text file with one class name per line, at most 4 MiB (default: ImageNet's names)",
    )
    group.add_argument(
        "--device",
        type=device_name,
        help="where a PyTorch model runs: cpu, cuda, cuda:N or mps (default: cuda when "
        "torch.cuda.is_available(), else cpu); Keras models: TensorFlow chooses",
    )


def add_method_arguments(parser: argparse.ArgumentParser, default_methods: str) -> None:
    """``--methods``, ``--steps``, ``--samples``, ``--batch-size``, ``--param``."""
    group = parser.add_argument_group("methods")
    group.add_argument(
        "--methods",
        metavar="NAMES",
        help=f"comma-separated methods: all, {','.join(METHODS)} (default: {default_methods})",
    )
    group.add_argument(
        "--steps", type=integer_in(1), help="path steps of ig, blur-ig, guided-ig and xrai (>= 1)"
    )
    group.add_argument("--samples", type=integer_in(1), help="noisy samples of smoothgrad (>= 1)")
    group.add_argument(
        "--batch-size",
        type=integer_in(1),
        help="the most images per model call, for every method (and PIC's predictions) (>= 1)",
    )
    group.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help="set one parameter of one method, e.g. occlusion.stride=8 (repeatable)",
    )


def parameter_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options that set method parameters, as keywords of ``method_parameters``."""
    return {
        "steps": args.steps,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "overrides": args.param,
    }
