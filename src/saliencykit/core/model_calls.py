"""The model's answers: the keys, their checks, one call, one input sequence in calls.

Part of :mod:`saliencykit.core.base`, which re-exports every public name here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from .arguments import check_evaluation_count, check_int

#: Key: a convolutional layer's activations, channel-last ``[batch, ..., C]`` (the CAM methods).
CONVOLUTION_LAYER_VALUES = "CONVOLUTION_LAYER_VALUES"
#: Key: the gradients of the explained output with respect to those activations, their shape.
CONVOLUTION_OUTPUT_GRADIENTS = "CONVOLUTION_OUTPUT_GRADIENTS"
#: Key: the gradients of the explained output with respect to the input, the batch's exact shape.
INPUT_OUTPUT_GRADIENTS = "INPUT_OUTPUT_GRADIENTS"
#: Key: the explained output, one number per example (``[batch]`` or ``[batch, 1]``).
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


class MissingKeyError(ValueError, KeyError):
    """``call_model_function`` did not answer a key that was asked for.

    A ``ValueError`` like every answer error here, and a ``KeyError`` because
    that is what the original raised (it indexed the answer), so code that
    caught it keeps working. Its message reads as a ``ValueError``'s (no quotes).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


CallModelFunction = Callable[..., Mapping[str, Any]]

#: What a method's batch builder hands on beside the inputs (see
#: :func:`call_model_in_batches_with_extra`).
Extra = TypeVar("Extra")

#: Hint added to the error raised when an answer cannot be made a NumPy array.
RETURN_NUMPY_HINT = "return NumPy arrays (e.g. tensor.detach().cpu().numpy())"


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
      MissingKeyError: (a ``ValueError`` and a ``KeyError``, the original's
        type) if an expected key is missing.
      ValueError: if a key has the wrong shape or holds NaN/inf, or is a
        ragged nested list.
    """
    if not isinstance(output, Mapping):
        raise TypeError(
            f"call_model_function must return a dict mapping keys to arrays, got {type(output).__name__}"
        )
    input_shape = tuple(input_shape)
    checked = {}
    expected: tuple[int, ...] | int
    actual: tuple[int, ...] | int | str
    for key in expected_keys:
        if key not in output:
            raise MissingKeyError(
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
    bounded by ``batch_size`` inputs whatever ``n_inputs`` is. A method that
    builds, with each call's inputs, something it needs to combine that call's
    answer (Blur IG's path derivatives) uses
    :func:`call_model_in_batches_with_extra`.

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
    for start, stop, output, _ in call_model_in_batches_with_extra(
        call_model_function,
        lambda start, stop: (make_inputs(start, stop), None),
        n_inputs,
        batch_size,
        call_model_args,
        expected_keys,
    ):
        yield start, stop, output


def call_model_in_batches_with_extra(
    call_model_function: CallModelFunction,
    make_batch: Callable[[int, int], tuple[np.ndarray, Extra]],
    n_inputs: int,
    batch_size: int,
    call_model_args: Any = None,
    expected_keys: Sequence[str] = (INPUT_OUTPUT_GRADIENTS,),
) -> Iterator[tuple[int, int, dict[str, np.ndarray], Extra]]:
    """:func:`call_model_in_batches` for a method that needs more than the inputs to use an answer.

    ``make_batch(start, stop)`` returns the inputs ``start..stop-1`` together
    with whatever the method needs to combine the answer on them (Blur IG:
    the path derivatives computed with the path points); that *extra* comes
    back with the answer, so the method keeps no state between building a
    batch and using its answer, and memory stays bounded by one call's worth.

    Args:
      call_model_function: the user's model function.
      make_batch: ``make_batch(start, stop)`` returns ``(inputs, extra)``:
        ``inputs`` of shape ``[stop - start, ...]`` go to the model, ``extra``
        (anything) is handed back with their answer.
      n_inputs, batch_size, call_model_args, expected_keys: as for
        :func:`call_model_in_batches`.

    Yields:
      ``(start, stop, output, extra)`` for each call, ``output`` checked as by
      :func:`check_call_model_output`.

    Raises:
      TypeError, ValueError: for a bad ``batch_size`` or a bad answer.
    """
    batch_size = check_int("batch_size", batch_size)
    n_inputs = check_evaluation_count("number of model inputs", n_inputs)
    for start in range(0, n_inputs, batch_size):
        stop = min(start + batch_size, n_inputs)
        inputs, extra = make_batch(start, stop)
        yield start, stop, call_model(call_model_function, inputs, call_model_args, expected_keys), extra


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
