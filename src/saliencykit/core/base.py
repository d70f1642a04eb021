"""Keys, the ``CoreSaliency`` base class, output checks and the batching helper.

Every method in :mod:`saliencykit.core` talks to the model only through the
functions in this module: :func:`call_model` for one call and
:func:`call_model_in_batches` for many evaluations grouped into calls of at most
``batch_size`` inputs. Both check every answer with
:func:`check_call_model_output`, so a method file holds nothing but its
mathematics.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

CONVOLUTION_LAYER_VALUES = "CONVOLUTION_LAYER_VALUES"
CONVOLUTION_OUTPUT_GRADIENTS = "CONVOLUTION_OUTPUT_GRADIENTS"
INPUT_OUTPUT_GRADIENTS = "INPUT_OUTPUT_GRADIENTS"
OUTPUT_LAYER_VALUES = "OUTPUT_LAYER_VALUES"
#: New key (not in the reference): input gradients computed with guided
#: backpropagation (ReLU backward passes only positive gradients where its
#: forward input was positive). Answered by the PyTorch and Keras adapters.
GUIDED_INPUT_OUTPUT_GRADIENTS = "GUIDED_INPUT_OUTPUT_GRADIENTS"

#: Keys whose value must have exactly the shape of the input batch. For every
#: other key only the leading (batch) dimension is checked.
FULL_SHAPE_KEYS: set[str] = {INPUT_OUTPUT_GRADIENTS, GUIDED_INPUT_OUTPUT_GRADIENTS}

SHAPE_ERROR_MESSAGE = {
    CONVOLUTION_LAYER_VALUES: (
        "Expected outermost dimension of CONVOLUTION_LAYER_VALUES to be the "
        "same as x_value_batch - expected {}, actual {}"
    ),
    CONVOLUTION_OUTPUT_GRADIENTS: (
        "Expected outermost dimension of CONVOLUTION_OUTPUT_GRADIENTS to be the "
        "same as x_value_batch - expected {}, actual {}"
    ),
    INPUT_OUTPUT_GRADIENTS: (
        "Expected key INPUT_OUTPUT_GRADIENTS to be the same shape as input "
        "x_value_batch - expected {}, actual {}"
    ),
    OUTPUT_LAYER_VALUES: (
        "Expected outermost dimension of OUTPUT_LAYER_VALUES to be the same as"
        " x_value_batch - expected {}, actual {}"
    ),
}

CallModelFunction = Callable[..., Mapping[str, Any]]

#: The most model evaluations (inputs sent to ``call_model_function``) that one
#: count argument may ask for: ``x_steps``, ``nsamples``, the number of
#: occlusion windows... At a few milliseconds per evaluation, 10**7 is already
#: hours of model time; larger values are refused up front with a
#: ``ValueError`` instead of an attempt to allocate their path or sample arrays.
MAX_MODEL_EVALUATIONS = 10**7

#: Hint added to the error raised when an answer cannot be made a NumPy array.
RETURN_NUMPY_HINT = "return NumPy arrays (e.g. tensor.detach().cpu().numpy())"

__all__ = [
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "GUIDED_INPUT_OUTPUT_GRADIENTS",
    "INPUT_OUTPUT_GRADIENTS",
    "MAX_MODEL_EVALUATIONS",
    "OUTPUT_LAYER_VALUES",
    "CoreSaliency",
    "call_model",
    "call_model_in_batches",
    "check_call_model_output",
    "scalar_outputs",
]


# --------------------------------------------------------------------------
# Argument checks shared by every method.
# --------------------------------------------------------------------------


def check_int(
    name: str, value: Any, minimum: int = 1, maximum: int | None = None, limit_reason: str = ""
) -> int:
    """Returns ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``.

    Args:
      name: the argument's name, for the error message.
      value: the value to check.
      minimum: the smallest value allowed.
      maximum: the largest value allowed (``None``: no upper bound).
      limit_reason: words appended to the message when ``value > maximum``,
        saying where the bound comes from.

    Raises:
      TypeError: if ``value`` is not an integer (``bool`` is refused too).
      ValueError: if ``value < minimum`` or ``value > maximum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        reason = f" ({limit_reason})" if limit_reason else ""
        raise ValueError(f"{name} must be an integer <= {maximum}{reason}, got {value}")
    return int(value)


def check_evaluation_count(name: str, value: Any) -> int:
    """Checks a count of model evaluations: an integer in ``[1, MAX_MODEL_EVALUATIONS]``.

    Raises:
      TypeError: if ``value`` is not an integer.
      ValueError: if it is < 1 or > :data:`MAX_MODEL_EVALUATIONS`.
    """
    return check_int(
        name,
        value,
        minimum=1,
        maximum=MAX_MODEL_EVALUATIONS,
        limit_reason="the most model evaluations one mask may ask for",
    )


def check_number(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    minimum_inclusive: bool = True,
) -> float:
    """Returns ``value`` as a finite ``float`` within the given bounds.

    Raises:
      TypeError: if ``value`` is not a real number.
      ValueError: if it is NaN, infinite or out of bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name} must be finite, got an integer too large for a float: {value}") from None
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None:
        too_small = value < minimum if minimum_inclusive else value <= minimum
        if too_small:
            relation = ">=" if minimum_inclusive else ">"
            raise ValueError(f"{name} must be {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def as_float_array(name: str, value: Any, min_ndim: int = 0) -> np.ndarray:
    """Returns ``value`` as a floating-point array, checked for use as a model input.

    Floating-point inputs keep their dtype; integer and boolean inputs become
    ``float32`` when every value fits exactly (``uint8``, ``int16``...) and
    ``float64`` otherwise, so that no arithmetic on them can wrap around.

    Raises:
      TypeError: if ``value`` is not numeric (strings, objects, complex).
      ValueError: if it has fewer than ``min_ndim`` dimensions, no elements, or
        holds NaN or inf.
    """
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    if array.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if array.dtype.kind != "f":
        array = array.astype(np.result_type(array.dtype, np.float32))
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, but it holds NaN or inf values")
    return array


def baseline_like(name: str, x_baseline: Any, x_value: np.ndarray) -> np.ndarray:
    """Returns the baseline as an array of ``x_value``'s shape (zeros if ``None``).

    Raises:
      ValueError: if its shape differs from ``x_value``'s, or it is not finite.
    """
    if x_baseline is None:
        return np.zeros_like(x_value)
    baseline = as_float_array(name, x_baseline, min_ndim=0)
    if baseline.shape != x_value.shape:
        raise ValueError(f"{name} must have the shape of x_value {x_value.shape}, got {baseline.shape}")
    return baseline


# --------------------------------------------------------------------------
# Model calls.
# --------------------------------------------------------------------------


def check_call_model_output(
    output: Any, input_shape: Sequence[int], expected_keys: Sequence[str]
) -> dict[str, np.ndarray]:
    """Converts a ``call_model_function`` answer to arrays and checks it.

    ``INPUT_OUTPUT_GRADIENTS`` (and any key in :data:`FULL_SHAPE_KEYS`) must have
    exactly ``input_shape``; every other key must have ``input_shape[0]`` as its
    leading dimension. All values must be real numbers, finite.

    Args:
      output: what ``call_model_function`` returned; a mapping key -> array-like.
      input_shape: shape of the batch that produced ``output``.
      expected_keys: the keys that were asked for.

    Returns:
      A new dict with one ``np.ndarray`` per expected key.

    Raises:
      TypeError: if ``output`` is not a mapping, or a value is not numeric or
        cannot be converted to a NumPy array (a torch tensor that requires
        grad or lives on a GPU, for example): the message names the key and
        the type returned and says to return NumPy arrays.
      ValueError: if a key is missing, has the wrong shape or holds NaN/inf,
        or is a ragged nested list.
    """
    if not isinstance(output, Mapping):
        raise TypeError(
            f"call_model_function must return a dict mapping keys to arrays, got {type(output).__name__}"
        )
    input_shape = tuple(input_shape)
    checked = {}
    for key in expected_keys:
        if key not in output:
            raise ValueError(
                f"call_model_function did not return the expected key {key!r} "
                f"(it returned keys {sorted(map(str, output))})"
            )
        value = _to_numpy(key, output[key])
        if key in FULL_SHAPE_KEYS:
            expected, actual = input_shape, value.shape
        else:
            expected = input_shape[0]
            actual = value.shape[0] if value.ndim else "a scalar"
        if expected != actual:
            template = SHAPE_ERROR_MESSAGE.get(
                key,
                f"Expected outermost dimension of {key} to be the same as "
                "x_value_batch - expected {}, actual {}",
            )
            raise ValueError(template.format(expected, actual))
        if not np.isfinite(value).all():
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            raise ValueError(
                f"call_model_function returned {bad} non-finite value(s) (NaN or inf) "
                f"for key {key} on a batch of shape {input_shape}"
            )
        checked[key] = value
    return checked


def _type_name(value: Any) -> str:
    """``module.QualifiedName`` of ``value``'s type (``builtins`` left out)."""
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _to_numpy(key: str, raw: Any) -> np.ndarray:
    """Converts one answer to a real numeric NumPy array, or explains why it cannot.

    Anything ``np.asarray`` converts cleanly is accepted (NumPy arrays, lists,
    CPU tensors of frameworks that implement ``__array__``, JAX arrays). What
    it cannot convert (a torch tensor that requires grad or lives on a GPU, a
    TensorFlow symbolic tensor...) is a ``TypeError`` naming the key and the
    type returned, instead of the framework's own message. No framework is
    imported: only the conversion is tried.

    Raises:
      TypeError: not convertible, or not a real numeric array.
      ValueError: a ragged nested list or tuple.
    """
    try:
        value = np.asarray(raw)
    except ValueError as error:
        if isinstance(raw, (list, tuple)):  # ragged nested lists
            raise ValueError(f"{key} could not be converted to an array: {error}") from None
        raise _conversion_error(key, raw, error) from error
    except Exception as error:  # frameworks raise RuntimeError, TypeError...
        raise _conversion_error(key, raw, error) from error
    if value.dtype.kind not in "biuf":
        raise TypeError(
            f"call_model_function returned {key} as {_type_name(raw)} that converts to a NumPy array "
            f"of dtype {value.dtype}, not a real numeric array: {RETURN_NUMPY_HINT}"
        )
    return value


def _conversion_error(key: str, raw: Any, error: BaseException) -> TypeError:
    """The ``TypeError`` for an answer that ``np.asarray`` refused."""
    return TypeError(
        f"call_model_function returned {key} as {_type_name(raw)}, which cannot be converted "
        f"to a NumPy array ({type(error).__name__}: {error}); {RETURN_NUMPY_HINT}"
    )


def call_model(
    call_model_function: CallModelFunction,
    x_value_batch: np.ndarray,
    call_model_args: Any = None,
    expected_keys: Sequence[str] = (INPUT_OUTPUT_GRADIENTS,),
) -> dict[str, np.ndarray]:
    """Calls the model once on a batch and returns its checked answer.

    Raises:
      TypeError, ValueError: see :func:`check_call_model_output`.
    """
    expected_keys = list(expected_keys)
    output = call_model_function(x_value_batch, call_model_args=call_model_args, expected_keys=expected_keys)
    return check_call_model_output(output, x_value_batch.shape, expected_keys)


def call_model_in_batches(
    call_model_function: CallModelFunction,
    make_inputs: Callable[[int, int], np.ndarray],
    n_inputs: int,
    batch_size: int,
    call_model_args: Any = None,
    expected_keys: Sequence[str] = (INPUT_OUTPUT_GRADIENTS,),
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Evaluates the model on ``n_inputs`` inputs in calls of at most ``batch_size``.

    The inputs are built lazily, one call's worth at a time, so memory stays
    bounded by ``batch_size`` inputs whatever ``n_inputs`` is.

    Args:
      call_model_function: the user's model function.
      make_inputs: ``make_inputs(start, stop)`` returns inputs ``start..stop-1``
        as one array of shape ``[stop - start, ...]``.
      n_inputs: how many inputs in all, between 1 and
        :data:`MAX_MODEL_EVALUATIONS`.
      batch_size: the most inputs handed to one call (>= 1; values above
        ``n_inputs`` act as ``n_inputs``).
      call_model_args: passed to every call unchanged.
      expected_keys: keys asked for and checked in every answer.

    Yields:
      ``(start, stop, output)`` for each call, ``output`` checked as by
      :func:`check_call_model_output`.

    Raises:
      TypeError, ValueError: for a bad ``batch_size`` or a bad answer.
    """
    batch_size = check_int("batch_size", batch_size)
    n_inputs = check_evaluation_count("number of model inputs", n_inputs)
    for start in range(0, n_inputs, batch_size):
        stop = min(start + batch_size, n_inputs)
        yield (
            start,
            stop,
            call_model(call_model_function, make_inputs(start, stop), call_model_args, expected_keys),
        )


def scalar_outputs(values: np.ndarray) -> np.ndarray:
    """Returns ``OUTPUT_LAYER_VALUES`` of shape ``[B]`` or ``[B, 1]`` as a ``[B]`` vector.

    Raises:
      ValueError: if there is more than one value per example.
    """
    if values.ndim > 2 or (values.ndim == 2 and values.shape[1] != 1) or values.ndim == 0:
        raise ValueError(
            "OUTPUT_LAYER_VALUES must hold one scalar per example (shape [batch] or "
            f"[batch, 1]: the explained output), got shape {values.shape}"
        )
    return values.reshape(len(values)).astype(np.float64)


def make_rng(seed: int | np.random.Generator | None) -> Callable[..., np.ndarray]:
    """Returns a ``normal(loc, scale, size)`` function for ``seed``.

    ``None`` uses NumPy's global random state, exactly like the reference
    library (so ``np.random.seed`` reproduces its noise); an ``int`` or a
    ``np.random.Generator`` gives an independent, reproducible stream.
    """
    if seed is None:
        return np.random.normal
    if isinstance(seed, np.random.Generator):
        return seed.normal
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed)).normal
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {type(seed).__name__}")


# --------------------------------------------------------------------------
# The base class.
# --------------------------------------------------------------------------


class CoreSaliency:
    """Base class of every saliency method. Alone, it computes nothing.

    A method sets ``expected_keys`` and implements :meth:`GetMask`.
    ``call_model_function(x_value_batch, call_model_args=None,
    expected_keys=None)`` receives a batch (dimension 0 is the batch) and
    returns a dict with the asked-for keys:

    - ``INPUT_OUTPUT_GRADIENTS``: gradients of the explained output with
      respect to the input, the batch's exact shape;
    - ``OUTPUT_LAYER_VALUES``: the explained output, one entry per example;
    - ``CONVOLUTION_LAYER_VALUES`` / ``CONVOLUTION_OUTPUT_GRADIENTS``: a conv
      layer's activations and the output's gradients with respect to them,
      channel-last, one entry per example.
    """

    expected_keys: Sequence[str] = ()

    def GetMask(  # noqa: N802 (the reference API's name)
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the saliency mask of the single, un-batched ``x_value``."""
        raise NotImplementedError("A derived class should implement GetMask()")

    def GetSmoothedMask(  # noqa: N802
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool = True,
        seed: int | np.random.Generator | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the mask smoothed with SmoothGrad (Smilkov et al. 2017, arXiv 1706.03825).

        The mask is averaged over ``nsamples`` copies of ``x_value`` with
        Gaussian noise of standard deviation ``stdev_spread * (max(x) - min(x))``.

        Args:
          x_value: the un-batched input; integers are converted to floating point.
          call_model_function, call_model_args: as for :meth:`GetMask`.
          stdev_spread: noise level as a fraction of the input's range (>= 0;
            the resulting standard deviation must be finite; it is computed in
            ``x_value``'s dtype like the reference, float32 for float16 inputs).
          nsamples: number of noisy samples, between 1 and
            :data:`MAX_MODEL_EVALUATIONS`.
          magnitude: average the squared masks (True) or the masks (False).
          seed: ``None`` draws from NumPy's global random state like the
            reference; an ``int`` or ``np.random.Generator`` makes the noise
            reproducible and independent of global state.
          **kwargs: passed to :meth:`GetMask`. For methods whose mask is a
            single model call (vanilla gradients), ``batch_size`` sends that
            many noisy samples to the model in one call.

        Returns:
          An array of ``x_value``'s shape, in the masks' dtype or float32,
          whichever is wider (float16 masks give float32).

        Raises:
          TypeError, ValueError: for bad arguments or a bad model answer.

        FIX over the reference: noise from a seedable generator, and integer
        inputs are converted to floating point before noise is added.
        """
        x_value = as_float_array("x_value", x_value)
        stdev_spread = check_number("stdev_spread", stdev_spread, minimum=0.0)
        nsamples = check_evaluation_count("nsamples", nsamples)
        normal = make_rng(seed)
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

        samples_per_chunk = self._samples_per_chunk(**kwargs)
        total = None
        for start in range(0, nsamples, samples_per_chunk):
            n_chunk = min(samples_per_chunk, nsamples - start)
            noise = normal(0, stdev, (n_chunk,) + x_value.shape)
            with np.errstate(over="ignore"):
                samples = x_value + noise
            if not np.isfinite(samples).all():
                raise ValueError(
                    f"stdev_spread={stdev_spread} gives noise (standard deviation {stdev}) that "
                    "overflows the noisy inputs to inf: use a smaller stdev_spread"
                )
            masks = self._masks_of_samples(samples, call_model_function, call_model_args, **kwargs)
            dtype = np.result_type(masks.dtype, np.float32)
            if magnitude:  # squared in float32 at least: float16 squares overflow from 256 on
                masks = masks.astype(dtype, copy=False)
                masks = masks * masks
            chunk_sum = masks.sum(axis=0, dtype=np.float64)
            total = chunk_sum if total is None else total + chunk_sum
        return (total / nsamples).astype(dtype)

    def _samples_per_chunk(self, **kwargs: Any) -> int:
        """How many noisy samples :meth:`_masks_of_samples` gets at once."""
        return 1

    def _masks_of_samples(
        self,
        x_samples: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any,
        **kwargs: Any,
    ) -> np.ndarray:
        """Masks of a stack of inputs ``[n, ...]``; by default one GetMask each."""
        return np.stack([self.GetMask(x, call_model_function, call_model_args, **kwargs) for x in x_samples])

    def format_and_check_call_model_output(
        self, output: dict, input_shape: Sequence[int], expected_keys: Sequence[str]
    ) -> None:
        """Reference API: converts ``output``'s expected keys to arrays in place and checks them.

        Raises:
          ValueError: if a key is missing, has the wrong shape or holds NaN/inf.
        """
        output.update(check_call_model_output(output, input_shape, expected_keys))
