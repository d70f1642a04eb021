"""Many examples: a batch's examples, per-example arguments and seeds, SmoothGrad's samples.

Part of :mod:`saliencykit.core.base`, which re-exports every public name here.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .arguments import as_float_array, check_evaluation_count, check_number, make_generator
from .model_calls import CallModelFunction
from .scheduler import Request, Steps

# --------------------------------------------------------------------------
# Many examples: the batch's arguments.
# --------------------------------------------------------------------------

#: ``batch_size`` of :meth:`CoreSaliency.GetMaskBatch` when not given: the most
#: inputs in one call, across examples.
DEFAULT_BATCH_SIZE = 32


def batch_examples(x_values: Any) -> tuple[Sequence[Any], tuple[int, ...]]:
    """Checks a batch's ``x_values``; returns its examples and their shape.

    ``x_values`` is an array ``[N, ...]`` or a sequence of N arrays of one shape.

    A sequence's examples are converted to one dtype (NumPy's promotion of
    theirs), as if stacked, without building the stack.

    Raises:
      ValueError: no example, or examples of different shapes.
      TypeError: not an array or a sequence of arrays.
    """
    if isinstance(x_values, (list, tuple)):
        if not x_values:
            raise ValueError("x_values must hold at least one example (N >= 1), got an empty sequence")
        arrays = [np.asarray(value) for value in x_values]
        shape = arrays[0].shape
        for index, array in enumerate(arrays):
            if array.shape != shape:
                raise ValueError(
                    "x_values must hold examples of one shape: expected every example to have the "
                    f"shape of x_values[0], {shape}, got x_values[{index}] of shape {array.shape}"
                )
        try:
            dtype = functools.reduce(np.promote_types, [array.dtype for array in arrays])
        except TypeError as error:
            raise TypeError(f"x_values must hold numeric arrays of compatible dtypes: {error}") from None
        return [array.astype(dtype, copy=False) for array in arrays], shape
    try:
        array = np.asarray(x_values)
    except Exception as error:
        raise TypeError(
            f"x_values must be an array [N, ...] or a list of N arrays of one shape, got "
            f"{type(x_values).__name__} ({error})"
        ) from None
    if array.ndim == 0 or len(array) == 0:
        raise ValueError(
            "x_values must be an array [N, ...] holding at least one example (N >= 1), "
            f"got shape {array.shape}"
        )
    return list(array), array.shape[1:]


def per_example_values(name: str, value: Any, n_examples: int) -> list[Any]:
    """``value`` for each example: a list or tuple is one entry per example, anything else one for all.

    Raises:
      ValueError: a list or tuple whose length is not ``n_examples``.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != n_examples:
            raise ValueError(
                f"{name} must be one value for every example or a list (or tuple) of one per example: "
                f"expected {n_examples} entries (x_values holds {n_examples} examples), got {len(value)}"
            )
        return list(value)
    return [value] * n_examples


def resolve_call_model_args(
    call_model_function: CallModelFunction, x_values: Any, example_args: list[Any], batch_size: int
) -> list[Any]:
    """The examples' ``call_model_args`` after ``call_model_function.resolve_call_model_args``, if it has one.

    An adapter resolves there what depends on the examples themselves (its
    ``target="predicted"``: each example's top class, computed on the example,
    not on the path points the method sends later).

    Raises:
      ValueError: the resolved list does not hold one entry per example.
    """
    resolve = getattr(call_model_function, "resolve_call_model_args", None)
    if resolve is None:
        return example_args
    resolved = list(resolve(x_values, example_args, batch_size))
    if len(resolved) != len(example_args):
        raise ValueError(
            "call_model_function.resolve_call_model_args must return one call_model_args per example: "
            f"expected {len(example_args)}, got {len(resolved)}"
        )
    return resolved


def example_seeds(seed: Any, n_examples: int) -> list[Any]:
    """The seed of each example of :meth:`CoreSaliency.GetSmoothedMaskBatch` (for :class:`NoiseSource`).

    - ``None``: NumPy's global random state for every example (samples drawn
      in the order they are built: reproducible with ``np.random.seed`` for
      the same examples and ``batch_size``, not example by example);
    - an ``int`` ``s``: example ``i`` gets ``s + i``, i.e. the noise of
      ``GetSmoothedMask(x_values[i], seed=s + i)``;
    - a ``np.random.Generator`` ``g``: example 0 draws from ``g`` itself (the
      noise of ``GetSmoothedMask(x_values[0], seed=g)``), example ``i >= 1``
      from ``g.spawn(N - 1)[i - 1]``;
    - a list or tuple of N of those: one per example.

    Raises:
      TypeError: a seed of another type.
      ValueError: a list or tuple whose length is not N.
    """
    if isinstance(seed, (list, tuple)):
        seeds = per_example_values("seed", seed, n_examples)
    elif isinstance(seed, np.random.Generator):
        seeds = [seed, *seed.spawn(n_examples - 1)]
    elif seed is None:
        seeds = [None] * n_examples
    else:
        NoiseSource(seed)  # checks the type
        seeds = [int(seed) + index for index in range(n_examples)]
    for index, value in enumerate(seeds):
        if not (value is None or isinstance(value, np.random.Generator)) and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)
        ):
            raise TypeError(
                f"seed[{index}] must be None, an int or a numpy Generator, got {type(value).__name__}"
            )
    return seeds


#: The ways :meth:`CoreSaliency.GetSmoothedMask` combines the masks of the noisy samples.
#: ``"mean"``: SmoothGrad (Smilkov et al. 2017); ``"square"``: the mean of the squared
#: masks, SmoothGrad² (the reference's ``magnitude=True``); ``"variance"``: their variance,
#: VarGrad (Adebayo et al. 2018, "Local explanation methods for deep neural networks lack
#: sensitivity to parameter values", arXiv 1810.03307).
SMOOTHING_AGGREGATIONS = ("mean", "square", "variance")


def smoothing_aggregation(magnitude: Any, aggregation: Any) -> str:
    """The aggregation of SmoothGrad's masks that ``magnitude`` and ``aggregation`` ask for.

    ``aggregation`` (one of :data:`SMOOTHING_AGGREGATIONS`) when given;
    otherwise the reference's ``magnitude``: ``"square"`` when it is true or
    left out (``None``), ``"mean"`` when false. Both may be given only when
    they agree (``magnitude=True`` with ``"square"``, ``False`` with ``"mean"``).

    Raises:
      TypeError: ``aggregation`` is not a string.
      ValueError: an unknown ``aggregation``, or a ``magnitude`` that says otherwise.
    """
    if aggregation is None:
        return "mean" if magnitude is not None and not magnitude else "square"
    if not isinstance(aggregation, str):
        raise TypeError(
            f"aggregation must be one of {', '.join(map(repr, SMOOTHING_AGGREGATIONS))} or None, "
            f"got {type(aggregation).__name__} {aggregation!r}"
        )
    if aggregation not in SMOOTHING_AGGREGATIONS:
        raise ValueError(
            f"aggregation must be one of {', '.join(map(repr, SMOOTHING_AGGREGATIONS))}, got {aggregation!r}"
        )
    if magnitude is not None:
        implied = "square" if magnitude else "mean"
        if implied != aggregation:
            raise ValueError(
                f"magnitude={magnitude!r} asks for aggregation={implied!r} but aggregation={aggregation!r} "
                "was given: give aggregation alone (magnitude=True is aggregation='square', "
                "magnitude=False is aggregation='mean')"
            )
    return aggregation


class _SmoothedSum:
    """SmoothGrad's running sums, in float64: of the masks, of their squares, or both.

    ``"square"`` squares each mask in its dtype (float32 at least: float16
    squares overflow from 256 on) as the reference does; ``"variance"``
    squares in float64, since ``mean(m**2) - mean(m)**2`` cancels.
    """

    def __init__(self, aggregation: str) -> None:
        self.aggregation = aggregation
        self.total: np.ndarray | None = None
        self.total_of_squares: np.ndarray | None = None
        self.dtype = np.dtype(np.float32)  # then the masks' dtype, if wider

    def add(self, index: int, mask: Any) -> None:
        mask = np.asarray(mask)
        self.dtype = np.result_type(mask.dtype, np.float32)
        if self.aggregation == "square":
            mask = mask.astype(self.dtype, copy=False)
            self.total_of_squares = _add_to(self.total_of_squares, mask * mask)
            return
        if self.aggregation == "variance":
            mask = mask.astype(np.float64)
            self.total_of_squares = _add_to(self.total_of_squares, mask * mask)
        self.total = _add_to(self.total, mask)

    def mean(self, nsamples: int) -> np.ndarray:
        """The aggregated mask of ``nsamples`` masks, in the masks' dtype or float32 if wider."""
        if self.aggregation == "mean":
            assert self.total is not None  # nsamples >= 1: at least one mask
            result = self.total / nsamples
        elif self.aggregation == "square":
            assert self.total_of_squares is not None
            result = self.total_of_squares / nsamples
        else:
            assert self.total is not None and self.total_of_squares is not None
            mean = self.total / nsamples
            # Population variance, >= 0 (rounding may leave a tiny negative where it is ~0).
            result = np.maximum(self.total_of_squares / nsamples - mean * mean, 0.0)
        return result.astype(self.dtype)


def _add_to(total: np.ndarray | None, value: np.ndarray) -> np.ndarray:
    """``total + value`` in float64: a new float64 total, or added in place (``value`` cast exactly)."""
    if total is None:
        return value.astype(np.float64)
    total += value
    return total


def _smoothing_setup(x_value: Any, stdev_spread: Any, nsamples: Any) -> tuple[np.ndarray, float, float, int]:
    """Checks SmoothGrad's arguments; returns ``(x_value, stdev, stdev_spread, nsamples)``.

    Raises:
      TypeError, ValueError: a bad input, ``stdev_spread`` or ``nsamples``, or
        a noise level that is not finite.
    """
    x_value = as_float_array("x_value", x_value)
    stdev_spread = check_number("stdev_spread", stdev_spread, minimum=0.0)
    nsamples = check_evaluation_count("nsamples", nsamples)
    # In x_value's dtype, like the reference, so the same seed gives the same noise
    # (float16 in float32: its range alone may overflow float16).
    compute = np.result_type(x_value.dtype, np.float32)
    with np.errstate(over="ignore"):
        stdev = stdev_spread * (np.max(x_value).astype(compute) - np.min(x_value).astype(compute))
    if not np.isfinite(stdev):
        raise ValueError(
            f"stdev_spread * (max(x_value) - min(x_value)) must be finite, got {stdev} "
            f"(stdev_spread={stdev_spread}, x_value's range {np.min(x_value)}..{np.max(x_value)} "
            f"in {x_value.dtype})"
        )
    return x_value, stdev, stdev_spread, nsamples


class NoiseSource:
    """Where SmoothGrad's noise comes from, for a ``seed`` as :meth:`CoreSaliency.GetSmoothedMask` takes it.

    - ``None``: NumPy's global random state, drawn and added exactly as the
      reference does (``x + np.random.normal(0, stdev, x.shape)``, float64
      noise): ``np.random.seed(s)`` gives the reference's noisy samples bit
      for bit.
    - an ``int`` ``s`` (the generator ``np.random.default_rng(s)``) or a
      ``np.random.Generator``: ``generator.standard_normal(x.shape,
      dtype=np.float32)`` times ``stdev`` plus ``x``, computed in ``x``'s
      dtype (float32 at least). Float32 standard normals cost less to draw
      than float64 ``normal`` draws, float32 inputs give float32 samples
      (half the memory of the reference's float64 ones), and one seed gives
      the same noise whatever the input's dtype. (Earlier versions drew
      float64 ``generator.normal``: the same seed now gives other noise.)

    Attributes:
      generator: the ``np.random.Generator``, or ``None`` for NumPy's global state.

    Raises:
      TypeError: (at construction) a seed that is not None, an int or a Generator.
    """

    def __init__(self, seed: Any) -> None:
        self.generator = make_generator(seed)

    def noisy(self, x_value: np.ndarray, stdev: Any) -> np.ndarray:
        """One noisy copy of ``x_value``: noise of standard deviation ``stdev`` added.

        ``stdev`` is a scalar computed in ``x_value``'s dtype (float32 at least).
        """
        if self.generator is None:
            noise = np.random.normal(0, stdev, x_value.shape)
            if noise.dtype != np.result_type(x_value.dtype, noise.dtype):  # wider than float64
                return x_value + noise
            noise += x_value  # the same sum as x_value + noise (addition commutes), one array less
            return noise
        sample = self.generator.standard_normal(x_value.shape, dtype=np.float32)
        dtype = np.result_type(x_value.dtype, np.float32)
        if sample.dtype != dtype:
            sample = sample.astype(dtype)
        sample *= stdev
        sample += x_value
        return sample


def _noisy_samples(
    x_value: np.ndarray, stdev: float, stdev_spread: float, nsamples: int, noise: NoiseSource
) -> Iterator[np.ndarray]:
    """The ``nsamples`` noisy copies of ``x_value``, each drawn when it is needed.

    Raises:
      ValueError: noise that overflows an input to inf.
    """
    for _ in range(nsamples):
        with np.errstate(over="ignore"):
            sample = noise.noisy(x_value, stdev)
        if not np.isfinite(sample).all():
            raise ValueError(
                f"stdev_spread={stdev_spread} gives noise (standard deviation {stdev}) that "
                "overflows the noisy inputs to inf: use a smaller stdev_spread"
            )
        yield sample


def packed_samples_steps(
    method: Any,
    samples: Iterator[np.ndarray],
    nsamples: int,
    total: _SmoothedSum,
    parameters: dict[str, Any],
) -> Steps:
    """SmoothGrad's samples of a one-input method as one request of ``nsamples`` inputs.

    For a method whose mask is one model input (``smoothing_packs_samples``):
    each sample's own computation (``mask_steps(sample, **parameters)``, which
    asks for one input with ``keys``) is started when its input is built and
    finished with its answer row. As one long request, the next call's
    samples are drawn on the scheduler's worker thread while the model
    answers the current call (see :func:`~.scheduler.run_steps`), so the
    noise's cost hides behind the model's. The inputs, calls and masks are
    those of one child computation per sample. Only for a seeded
    ``np.random.Generator``: NumPy's global state (``seed=None``) is drawn on
    the calling thread, between calls, as the reference does, since the
    model function may draw from it too.

    Args:
      method: the :class:`~.base.CoreSaliency` (its ``_mask_steps`` and ``expected_keys``).
      samples: the noisy samples, drawn lazily in order.
      nsamples: how many.
      total: the running aggregate.
      parameters: ``_mask_steps``'s parameters.

    Raises:
      TypeError: a computation that does not ask for exactly one input with the method's keys.
    """
    mask_steps, keys = method._mask_steps, list(method.expected_keys)
    started: dict[int, Steps] = {}

    def make_inputs(start: int, stop: int) -> np.ndarray:
        rows = []
        for index in range(start, stop):
            steps = mask_steps(next(samples), **parameters)
            request = next(steps)
            if not isinstance(request, Request) or request.n_inputs != 1 or list(request.keys) != keys:
                raise TypeError(f"{mask_steps!r} does not ask for one input with {keys}")
            started[index] = steps
            rows.append(request.make_inputs(0, 1))
        return rows[0] if len(rows) == 1 else np.concatenate(rows)

    def consume(start: int, stop: int, answer: dict[str, np.ndarray]) -> None:
        for row, index in enumerate(range(start, stop)):
            steps = started.pop(index)
            try:
                steps.send({key: value[row : row + 1] for key, value in answer.items()})
            except StopIteration as finished:
                total.add(index, finished.value)
            else:
                raise TypeError(f"{mask_steps!r} asked for more than one input")

    yield Request(nsamples, make_inputs, keys, consume)
    return total.mean(nsamples)
