"""The saliency methods the command line runs, their default parameters and how to run them.

The defaults are chosen so that the default methods (:data:`DEFAULT_METHODS`)
on a 224 x 224 image with EfficientNet-Lite0 take about 15-20 s on a 2-core
CPU: fewer path steps than the papers (25 instead of 100-200), SmoothGrad with
20 samples, Occlusion with a 32-pixel window moved 16 pixels at a time (170
model evaluations instead of 37,000). Score-CAM and RISE, hundreds of forward
passes each, run when asked for by name or with ``--methods all``. Raise the
parameters with ``--steps``, ``--samples`` or ``--param METHOD.NAME=VALUE``
for publication-quality maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import core as saliency
from ..core.base import CallModelFunction, CoreSaliency
from .errors import CliError

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "CROSS_IMAGE_BATCH_SIZE",
    "BatchResult",
    "MethodResult",
    "MethodSpec",
    "batch_size_of",
    "choose_methods",
    "counting_calls",
    "method_parameters",
    "parse_method_names",
    "run_method",
    "run_method_batch",
]

#: The colour channels of every image the command line reads (RGB, see :mod:`.images`).
IMAGE_CHANNELS = 3
#: The most inputs per model call across images (``evaluate``) for a method without a
#: ``batch_size`` of its own, when ``--batch-size`` is not given. Forward and backward passes
#: of EfficientNet-Lite0 at 224 x 224 on a 2-core CPU cost about 41 ms per input one at a time,
#: 23-25 from 8 to 16 inputs per call and 42 again at 32 (the activations outgrow the caches).
CROSS_IMAGE_BATCH_SIZE = 16


def _same_arguments(parameters: dict[str, Any]) -> dict[str, Any]:
    """The command line's parameters are the method's own keyword arguments."""
    return parameters


@dataclass(frozen=True)
class MethodSpec:
    """One method as the command line offers it.

    What the method needs from the model and how many inputs it sends to it
    are asked of the method itself (its ``expected_keys`` and
    ``n_model_inputs``), never known here.

    Attributes:
      name: the command-line name (``ig``, ``blur-ig``...).
      title: the name shown in the panel and the report.
      defaults: the parameters the command line passes, by default.
      method: the :class:`~saliencykit.core.base.CoreSaliency` class; one
        instance per run.
      display: how the map is shown: ``"grayscale"`` (absolute values, like the
        reference notebooks), ``"diverging"`` (signed) or ``"heatmap"`` (XRAI).
      smoothed: run ``GetSmoothedMask`` (SmoothGrad) instead of ``GetMask``.
      arguments: ``parameters -> keyword arguments`` of ``GetMask`` (or
        ``GetSmoothedMask``), where the command line's flat parameters are not
        the method's own (XRAI's ``XRAIParameters``).
      sized_defaults: ``(height, width) -> defaults`` that depend on the image's
        size, which replace entries of ``defaults``.
      by_default: run when no ``--methods`` is given (False: only when asked
        for by name or with ``--methods all``).
    """

    name: str
    title: str
    defaults: Mapping[str, Any]
    method: type[CoreSaliency]
    display: str = "grayscale"
    smoothed: bool = False
    arguments: Callable[[dict[str, Any]], dict[str, Any]] = _same_arguments
    sized_defaults: Callable[[tuple[int, int]], dict[str, Any]] | None = None
    by_default: bool = True

    @property
    def needs(self) -> frozenset[str]:
        """What the model must offer: ``"gradcam"`` (a hookable layer), ``"guided"``.

        Read from the keys the method asks for (its ``expected_keys``).
        """
        keys = set(self.method.expected_keys)
        return frozenset(need for need, probe_keys in PROBE_KEYS.items() if keys & set(probe_keys))

    def compute(
        self, image: np.ndarray, call: CallModelFunction, parameters: Mapping[str, Any]
    ) -> np.ndarray:
        """The method's saliency map of ``image``."""
        method, arguments = self.method(), self.arguments(dict(parameters))
        if self.smoothed:
            return method.GetSmoothedMask(image, call, **arguments)
        return method.GetMask(image, call, **arguments)

    def compute_batch(
        self,
        images: np.ndarray,
        call: CallModelFunction,
        parameters: Mapping[str, Any],
        call_model_args: Any,
        batch_size: int,
    ) -> np.ndarray:
        """The method's maps of ``images`` ``[N, H, W, 3]``, their model evaluations packed across images.

        One ``GetMaskBatch`` (``GetSmoothedMaskBatch``) over all the images,
        with calls of at most ``batch_size`` inputs; ``call_model_args`` is one
        value for all images or a list of one per image (e.g. each image's
        class). Map ``i`` equals :meth:`compute` of ``images[i]`` (to float
        tolerance): SmoothGrad's ``seed`` is given to every image, so each
        image gets the noise it gets alone.
        """
        method, arguments = self.method(), self.arguments(dict(parameters))
        arguments.pop("batch_size", None)
        if self.smoothed:
            seed = arguments.pop("seed", None)
            return method.GetSmoothedMaskBatch(
                images, call, call_model_args, seed=[seed] * len(images), batch_size=batch_size, **arguments
            )
        return method.GetMaskBatch(images, call, call_model_args, batch_size=batch_size, **arguments)

    def evaluations(self, parameters: Mapping[str, Any], size: tuple[int, int]) -> int:
        """How many images the method sends to the model for an image of ``(height, width)``.

        The progress bar's total, asked of the method (its ``n_model_inputs``).
        1 when a parameter is bad: the method itself reports it when it runs.
        """
        method, arguments = self.method(), self.arguments(dict(parameters))
        x_shape = (*size, IMAGE_CHANNELS)
        try:
            if self.smoothed:
                return method.n_smoothed_model_inputs(x_shape, **arguments)
            return method.n_model_inputs(x_shape, **arguments)
        except (ValueError, TypeError):
            return 1


def _xrai_arguments(parameters: dict[str, Any]) -> dict[str, Any]:
    """XRAI takes ``steps`` and ``algorithm`` in an ``XRAIParameters``."""
    options = dict(parameters)
    extra = saliency.XRAIParameters(steps=options.pop("steps"), algorithm=options.pop("algorithm"))
    return {**options, "extra_parameters": extra}


def _occlusion_window(size: tuple[int, int]) -> dict[str, Any]:
    """A window of a seventh of the image's shorter side (32 pixels at 224), moved by half of it."""
    window = max(1, min(size) // 7)
    return {"size": window, "stride": max(1, window // 2)}


#: Every method, in the order of the panel.
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("gradients", "Vanilla gradients", {}, saliency.GradientSaliency),
        MethodSpec("gradient-x-input", "Gradient x Input", {}, saliency.GradientXInput),
        MethodSpec(
            "smoothgrad",
            "SmoothGrad",
            {"nsamples": 20, "stdev_spread": 0.15, "batch_size": 10, "seed": 0},
            saliency.GradientSaliency,
            smoothed=True,
        ),
        MethodSpec(
            "ig", "Integrated Gradients", {"x_steps": 25, "batch_size": 10}, saliency.IntegratedGradients
        ),
        MethodSpec("blur-ig", "Blur IG", {"steps": 25, "max_sigma": 50.0, "batch_size": 10}, saliency.BlurIG),
        MethodSpec(
            "guided-ig", "Guided IG", {"x_steps": 50, "fraction": 0.25, "max_dist": 0.02}, saliency.GuidedIG
        ),
        MethodSpec(
            "xrai",
            "XRAI",
            {"steps": 25, "batch_size": 10, "algorithm": "full"},
            saliency.XRAI,
            display="heatmap",
            arguments=_xrai_arguments,
        ),
        MethodSpec("gradcam", "Grad-CAM", {}, saliency.GradCam),
        MethodSpec("gradcam++", "Grad-CAM++", {}, saliency.GradCamPlusPlus),
        MethodSpec("layercam", "Layer-CAM", {}, saliency.LayerCam),
        MethodSpec("hirescam", "HiRes-CAM", {}, saliency.HiResCam),
        MethodSpec(
            "scorecam",
            "Score-CAM (top 64 channels)",
            {"top_k": 64, "batch_size": 16},
            saliency.ScoreCam,
            by_default=False,
        ),
        MethodSpec("guided-backprop", "Guided Backprop", {}, saliency.GuidedBackprop),
        MethodSpec("guided-gradcam", "Guided Grad-CAM", {}, saliency.GuidedGradCam),
        MethodSpec(
            "occlusion",
            "Occlusion",
            {"size": 32, "stride": 16, "value": 0.0, "batch_size": 32},
            saliency.Occlusion,
            display="diverging",
            sized_defaults=_occlusion_window,
        ),
        MethodSpec(
            "rise",
            "RISE",
            {"n_masks": 500, "p_keep": 0.5, "batch_size": 16, "seed": 0},
            saliency.RISE,
            by_default=False,
        ),
    )
}
#: The methods run when no ``--methods`` is given (``--methods all``: every one of :data:`METHODS`).
DEFAULT_METHODS = tuple(name for name, spec in METHODS.items() if spec.by_default)
#: The keys a one-image probe asks for, to learn whether the model offers a
#: requirement: those of the method that needs only it.
PROBE_KEYS = {
    "gradcam": list(saliency.GradCam.expected_keys),
    "guided": list(saliency.GuidedBackprop.expected_keys),
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
        sized_defaults = METHODS[name].sized_defaults
        if sized_defaults is not None:
            values.update(sized_defaults(input_size))
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


class _CountingCall:
    """A ``call_model_function`` that reports each call's batch size; see :func:`counting_calls`."""

    def __init__(self, call: CallModelFunction, on_batch: Callable[[int], None]) -> None:
        self._call = call
        self._on_batch = on_batch

    def __call__(
        self, x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None
    ) -> Mapping[str, Any]:
        answer = self._call(x_value_batch, call_model_args, expected_keys)
        self._on_batch(len(x_value_batch))
        return answer

    def __getattr__(self, name: str) -> Any:
        # The batch scheduler's protocol (pack_call_model_args, resolve_call_model_args) and any
        # other attribute come from the wrapped function: wrapping must not stop packing.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._call, name)


def counting_calls(call: CallModelFunction, on_batch: Callable[[int], None]) -> CallModelFunction:
    """Wraps a ``call_model_function`` so that ``on_batch(batch size)`` follows each call (progress).

    The wrapper has the wrapped function's other attributes, so an adapter's
    ``pack_call_model_args`` and ``resolve_call_model_args`` still reach the
    batch scheduler (rows of images with different targets share calls).
    """
    return _CountingCall(call, on_batch)


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


@dataclass
class BatchResult:
    """One method's maps of several images and what they took to compute.

    Attributes:
      name: the method's command-line name.
      maps: ``[N, ...]``, map ``i`` of image ``i``.
      seconds: the wall time of the whole batch.
      batch_size: the most inputs in one model call, across images.
    """

    name: str
    maps: np.ndarray
    seconds: float
    batch_size: int


def batch_size_of(name: str, parameters: Mapping[str, Any], batch_size: int | None = None) -> int:
    """The most inputs per model call when method ``name`` runs over several images.

    Its own ``batch_size`` parameter where it has one; else ``batch_size``
    (``--batch-size``) when given; else :data:`CROSS_IMAGE_BATCH_SIZE`.
    """
    own = parameters.get("batch_size")
    if own is not None:
        return int(own)
    return int(batch_size) if batch_size is not None else CROSS_IMAGE_BATCH_SIZE


def run_method_batch(
    name: str,
    images: np.ndarray,
    call: CallModelFunction,
    parameters: dict[str, Any],
    call_model_args: Any,
    batch_size: int,
) -> BatchResult:
    """Runs one method on several images with the batch API and times it.

    Args:
      name: the method's command-line name.
      images: ``[N, H, W, 3]``, N >= 1.
      call: the model's ``call_model_function`` (an adapter: its rows may have
        different targets, given by ``call_model_args``).
      parameters: the method's command-line parameters.
      call_model_args: one value for all images, or a list of one per image
        (the class each image's map explains).
      batch_size: the most inputs in one model call, across images (:func:`batch_size_of`).

    Raises:
      CliError: the method rejected a parameter or the model's answer
        (its ``ValueError``/``TypeError``, prefixed with the method's name).
    """
    spec = METHODS[name]
    start = time.perf_counter()
    try:
        maps = spec.compute_batch(images, call, dict(parameters), call_model_args, batch_size)
    except (ValueError, TypeError) as error:
        raise CliError(f"{name} ({spec.title}): {error}") from error
    return BatchResult(name, np.asarray(maps), time.perf_counter() - start, batch_size)
