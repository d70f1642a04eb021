"""Command-line options shared by ``explain`` and ``evaluate``: the model, the methods, the output."""

from __future__ import annotations

import argparse
from typing import Any

from .errors import CliError
from .methods import METHODS
from .models import DEFAULT_MODEL, PREPROCESSING

__all__ = [
    "add_method_arguments",
    "add_model_arguments",
    "parameter_options",
    "parse_input_size",
]


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
    """``--model``, ``--input-size``, ``--preprocess``, ``--layer``, ``--labels``."""
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
        "--labels", help="a text file with one class name per line (default: ImageNet's names)"
    )


def add_method_arguments(parser: argparse.ArgumentParser, default_methods: str) -> None:
    """``--methods``, ``--steps``, ``--samples``, ``--batch-size``, ``--param``."""
    group = parser.add_argument_group("methods")
    group.add_argument(
        "--methods",
        metavar="NAMES",
        help=f"comma-separated methods: all, {','.join(METHODS)} (default: {default_methods})",
    )
    group.add_argument("--steps", type=int, help="path steps of ig, blur-ig, guided-ig and xrai")
    group.add_argument("--samples", type=int, help="noisy samples of smoothgrad")
    group.add_argument("--batch-size", type=int, help="the most images per model call, for every method")
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
