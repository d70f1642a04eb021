"""The saliency methods the command line runs, their default parameters and how to run them.

The defaults are chosen so that all ten methods on a 224 x 224 image with
EfficientNet-Lite0 take about 15-20 s on a 2-core CPU: fewer path steps than
the papers (25 instead of 100-200), SmoothGrad with 20 samples, Occlusion
with a 32-pixel window moved 16 pixels at a time (170 model evaluations
instead of 37,000). Raise them with ``--steps``, ``--samples`` or
``--param METHOD.NAME=VALUE`` for publication-quality maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import core as saliency
from ..core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    CallModelFunction,
)
from ..core.occlusion import window_origins
from .errors import CliError

__all__ = [
    "METHODS",
    "MethodResult",
    "MethodSpec",
    "choose_methods",
    "counting_calls",
    "method_parameters",
    "parse_method_names",
    "run_method",
]

Compute = Callable[[np.ndarray, CallModelFunction, dict[str, Any]], np.ndarray]


@dataclass(frozen=True)
class MethodSpec:
    """One method as the command line offers it.

    Attributes:
      name: the command-line name (``ig``, ``blur-ig``...).
      title: the name shown in the panel and the report.
      defaults: the parameters the command line passes, by default.
      compute: ``(image, call_model_function, parameters) -> saliency map``.
      evaluations: ``(parameters, (height, width)) -> model evaluations`` (for the progress bar).
      display: how the map is shown: ``"grayscale"`` (absolute values, like the
        reference notebooks), ``"diverging"`` (signed) or ``"heatmap"`` (XRAI).
      needs: what the model must offer: ``"gradcam"`` (a hookable layer), ``"guided"``.
      sized_defaults: ``(height, width) -> defaults`` that depend on the image's
        size, which replace entries of ``defaults``.
    """

    name: str
    title: str
    defaults: Mapping[str, Any]
    compute: Compute
    evaluations: Callable[[Mapping[str, Any], tuple[int, int]], int]
    display: str = "grayscale"
    needs: frozenset[str] = frozenset()
    sized_defaults: Callable[[tuple[int, int]], dict[str, Any]] | None = None


def _smoothgrad(image: np.ndarray, call: CallModelFunction, parameters: dict[str, Any]) -> np.ndarray:
    return saliency.GradientSaliency().GetSmoothedMask(image, call, **parameters)


def _xrai(image: np.ndarray, call: CallModelFunction, parameters: dict[str, Any]) -> np.ndarray:
    options = dict(parameters)
    extra = saliency.XRAIParameters(steps=options.pop("steps"), algorithm=options.pop("algorithm"))
    return saliency.XRAI().GetMask(image, call, extra_parameters=extra, **options)


def _occlusion_evaluations(parameters: Mapping[str, Any], size: tuple[int, int]) -> int:
    window, stride = int(parameters["size"]), int(parameters["stride"])
    if not 1 <= window <= min(size) or stride < 1:
        return 1  # the method itself reports the bad argument
    return len(window_origins(size[0], window, stride)) * len(window_origins(size[1], window, stride)) + 1


def _occlusion_window(size: tuple[int, int]) -> dict[str, Any]:
    """A window of a seventh of the image's shorter side (32 pixels at 224), moved by half of it."""
    window = max(1, min(size) // 7)
    return {"size": window, "stride": max(1, window // 2)}


def _once(count: int) -> Callable[[Mapping[str, Any], tuple[int, int]], int]:
    return lambda parameters, size: count


def _parameter(name: str) -> Callable[[Mapping[str, Any], tuple[int, int]], int]:
    return lambda parameters, size: int(parameters[name])


#: Every method, in the order of the panel.
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "gradients",
            "Vanilla gradients",
            {},
            lambda x, c, p: saliency.GradientSaliency().GetMask(x, c),
            _once(1),
        ),
        MethodSpec(
            "smoothgrad",
            "SmoothGrad",
            {"nsamples": 20, "stdev_spread": 0.15, "batch_size": 10, "seed": 0},
            _smoothgrad,
            _parameter("nsamples"),
        ),
        MethodSpec(
            "ig",
            "Integrated Gradients",
            {"x_steps": 25, "batch_size": 10},
            lambda x, c, p: saliency.IntegratedGradients().GetMask(x, c, **p),
            _parameter("x_steps"),
        ),
        MethodSpec(
            "blur-ig",
            "Blur IG",
            {"steps": 25, "max_sigma": 50.0, "batch_size": 10},
            lambda x, c, p: saliency.BlurIG().GetMask(x, c, **p),
            _parameter("steps"),
        ),
        MethodSpec(
            "guided-ig",
            "Guided IG",
            {"x_steps": 50, "fraction": 0.25, "max_dist": 0.02},
            lambda x, c, p: saliency.GuidedIG().GetMask(x, c, **p),
            _parameter("x_steps"),
        ),
        MethodSpec(
            "xrai",
            "XRAI",
            {"steps": 25, "batch_size": 10, "algorithm": "full"},
            _xrai,
            lambda parameters, size: 2 * int(parameters["steps"]),
            display="heatmap",
        ),
        MethodSpec(
            "gradcam",
            "Grad-CAM",
            {},
            lambda x, c, p: saliency.GradCam().GetMask(x, c),
            _once(1),
            needs=frozenset({"gradcam"}),
        ),
        MethodSpec(
            "guided-backprop",
            "Guided Backprop",
            {},
            lambda x, c, p: saliency.GuidedBackprop().GetMask(x, c),
            _once(1),
            needs=frozenset({"guided"}),
        ),
        MethodSpec(
            "guided-gradcam",
            "Guided Grad-CAM",
            {},
            lambda x, c, p: saliency.GuidedGradCam().GetMask(x, c),
            _once(2),
            needs=frozenset({"gradcam", "guided"}),
        ),
        MethodSpec(
            "occlusion",
            "Occlusion",
            {"size": 32, "stride": 16, "value": 0.0, "batch_size": 32},
            lambda x, c, p: saliency.Occlusion().GetMask(x, c, **p),
            _occlusion_evaluations,
            display="diverging",
            sized_defaults=_occlusion_window,
        ),
    )
}
#: The keys a one-image probe asks for, to learn whether the model offers a requirement.
PROBE_KEYS = {
    "gradcam": [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS],
    "guided": [GUIDED_INPUT_OUTPUT_GRADIENTS],
}
#: ``--steps`` sets these parameters; ``--samples`` sets ``smoothgrad.nsamples``.
STEP_PARAMETERS = {"ig": "x_steps", "blur-ig": "steps", "guided-ig": "x_steps", "xrai": "steps"}


def parse_method_names(names: str | None, argument: str = "--methods") -> list[str] | None:
    """Turns ``"ig, xrai,Blur_IG"`` into ``["ig", "xrai", "blur-ig"]``; ``None`` or ``all`` -> ``None``.

    Raises:
      CliError: an unknown name (the message lists the known ones).
    """
    if not names:
        return None
    wanted: list[str] = []
    for name in (part.strip().lower().replace("_", "-") for part in names.split(",")):
        if not name:
            continue
        if name == "all":
            return None
        if name not in METHODS:
            raise CliError(f"{argument}: unknown method {name!r}; expected one of: all, {', '.join(METHODS)}")
        if name not in wanted:
            wanted.append(name)
    return wanted or None


def choose_methods(
    requested: list[str] | None,
    default: list[str],
    unsupported: dict[str, str],
    probe: Callable[[list[str]], Any],
    note: Callable[[str], None],
) -> tuple[list[str], dict[str, str]]:
    """The methods to run, and why the model cannot run the others.

    Args:
      requested: the methods asked for (``--methods``), or ``None`` for ``default``.
      default: the methods run when none are asked for.
      unsupported: ``requirement -> reason`` known without trying (``LoadedModel.unsupported``).
      probe: ``expected_keys -> answer``: one model call on one image; an
        exception means the model cannot answer those keys.
      note: tells the user about a default method that is left out.

    Returns:
      The methods to run, and ``method -> reason`` for default methods left out.

    Raises:
      CliError: a requested method that the model cannot run.
    """
    unsupported = dict(unsupported)
    candidates = requested or default
    for need in sorted({need for name in candidates for need in METHODS[name].needs} - set(unsupported)):
        try:
            probe(PROBE_KEYS[need])
        except Exception as error:  # whatever the framework raises: the model cannot do it
            unsupported[need] = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
    chosen, skipped = [], {}
    for name in candidates:
        reasons = [unsupported[need] for need in sorted(METHODS[name].needs) if need in unsupported]
        if reasons and requested:
            raise CliError(f"--methods: {name} is not available for this model: {reasons[0]}")
        if reasons:
            skipped[name] = reasons[0]
            note(f"{name} left out: {reasons[0]}")
        else:
            chosen.append(name)
    return chosen, skipped


def _converted(text: str, default: Any, where: str) -> Any:
    """Converts ``text`` to the type of the parameter's default value."""
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise CliError(f"{where}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    for kind, noun in ((int, "an integer"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                raise CliError(f"{where}: expected {noun}, got {text!r}") from None
    return text


def method_parameters(
    names: Sequence[str],
    input_size: tuple[int, int],
    *,
    steps: int | None = None,
    samples: int | None = None,
    batch_size: int | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Returns each method's parameters: defaults, then ``--steps/--samples/--batch-size``, then ``--param``.

    Args:
      names: the methods that run.
      input_size: ``(height, width)`` of the images, for defaults that depend on it.
      steps: path steps of IG, Blur IG, Guided IG and XRAI.
      samples: SmoothGrad's number of noisy samples.
      batch_size: the most images per model call, for every method that batches.
      overrides: ``"METHOD.NAME=VALUE"`` strings (``--param``).

    Raises:
      CliError: a malformed ``--param``, a method that is not run, or a parameter it does not have.
    """
    parameters = {name: dict(METHODS[name].defaults) for name in names}
    for name, values in parameters.items():
        if METHODS[name].sized_defaults is not None:
            values.update(METHODS[name].sized_defaults(input_size))
    for name, values in parameters.items():
        if steps is not None and name in STEP_PARAMETERS:
            values[STEP_PARAMETERS[name]] = steps
        if samples is not None and name == "smoothgrad":
            values["nsamples"] = samples
        if batch_size is not None and "batch_size" in values:
            values["batch_size"] = batch_size
    for override in overrides:
        target, equals, text = override.partition("=")
        method, dot, parameter = target.strip().lower().partition(".")
        method = method.replace("_", "-")
        if not equals or not dot:
            raise CliError(f"--param: expected METHOD.NAME=VALUE (e.g. ig.x_steps=50), got {override!r}")
        if method not in parameters:
            raise CliError(
                f"--param {override}: method {method!r} is not among the methods run: {list(parameters)}"
            )
        if parameter not in parameters[method]:
            known = ", ".join(parameters[method]) or "none"
            raise CliError(f"--param {override}: {method} has no parameter {parameter!r}; it has: {known}")
        parameters[method][parameter] = _converted(
            text.strip(), parameters[method][parameter], f"--param {override}"
        )
    return parameters


@dataclass
class MethodResult:
    """One method's map and what it took to compute it."""

    name: str
    title: str
    parameters: dict[str, Any]
    seconds: float
    saliency_map: np.ndarray
    display: str


def counting_calls(call: CallModelFunction, on_batch: Callable[[int], None]) -> CallModelFunction:
    """Wraps a ``call_model_function`` so that ``on_batch(batch size)`` follows each call (progress)."""

    def call_model_function(
        x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None
    ) -> dict[str, np.ndarray]:
        answer = call(x_value_batch, call_model_args, expected_keys)
        on_batch(len(x_value_batch))
        return answer

    return call_model_function


def run_method(
    name: str, image: np.ndarray, call: CallModelFunction, parameters: dict[str, Any]
) -> MethodResult:
    """Runs one method on one image and times it.

    Raises:
      CliError: the method rejected a parameter or the model's answer
        (its ``ValueError``/``TypeError``, prefixed with the method's name).
    """
    spec = METHODS[name]
    start = time.perf_counter()
    try:
        saliency_map = spec.compute(image, call, dict(parameters))
    except (ValueError, TypeError) as error:
        raise CliError(f"{name} ({spec.title}): {error}") from error
    seconds = time.perf_counter() - start
    return MethodResult(name, spec.title, dict(parameters), seconds, np.asarray(saliency_map), spec.display)
