"""Keys, the ``CoreSaliency`` base class, output checks and the scheduler of model calls.

The argument checks shared by the methods live in :mod:`.arguments` and are
importable from here too.

Every method in :mod:`saliencykit.core` talks to the model only through this
module. A method's computation of one mask is a generator (:data:`Steps`)
that yields :class:`Request` objects (inputs to evaluate, built lazily, and
how to use the answers) or :class:`Fork` objects (child computations, such as
SmoothGrad's noisy samples); :func:`run_steps` runs many such computations and
packs their requests into shared calls of at most ``batch_size`` inputs,
checking every answer once with :func:`check_call_model_output`.
``GetMask`` is a batch of one and ``GetMaskBatch`` a batch of many, so a
method file holds nothing but its mathematics, once. :func:`call_model` (one
call) and :func:`call_model_in_batches` (one input sequence in calls of
``batch_size``) remain for code that calls a model directly.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

# The argument checks, importable from here as before they moved to .arguments.
from .arguments import MAX_MODEL_EVALUATIONS as MAX_MODEL_EVALUATIONS
from .arguments import BaselineShapeError as BaselineShapeError
from .arguments import as_float_array as as_float_array
from .arguments import baseline_like as baseline_like
from .arguments import check_evaluation_count as check_evaluation_count
from .arguments import check_int as check_int
from .arguments import check_number as check_number
from .arguments import make_rng as make_rng

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

__all__ = [
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "GUIDED_INPUT_OUTPUT_GRADIENTS",
    "INPUT_OUTPUT_GRADIENTS",
    "MAX_MODEL_EVALUATIONS",
    "OUTPUT_LAYER_VALUES",
    "BaselineShapeError",
    "CoreSaliency",
    "Fork",
    "MissingKeyError",
    "Request",
    "Steps",
    "call_model",
    "call_model_in_batches",
    "call_model_in_batches_with_extra",
    "check_call_model_output",
    "run_steps",
    "scalar_outputs",
]


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


# --------------------------------------------------------------------------
# The scheduler: the evaluations of many examples packed into shared calls.
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """Model evaluations that one computation needs before it can go on.

    A method's computation is a generator (:data:`Steps`) that yields
    requests: ``answer = yield Request(...)``. :func:`run_steps` builds the
    inputs lazily, in chunks, packs the chunks of many computations into calls
    of at most ``batch_size`` inputs, checks every answer once and hands each
    computation the rows of its own inputs.

    Attributes:
      n_inputs: how many inputs, between 1 and :data:`MAX_MODEL_EVALUATIONS`.
      make_inputs: ``make_inputs(start, stop)`` returns inputs ``start..stop-1``
        as one array ``[stop - start, ...]``; called just before the call that
        takes them, once per chunk, chunks in order.
      keys: the keys asked for (and checked) in the answer.
      consume: ``consume(start, stop, answer)`` receives the checked answer on
        inputs ``start..stop-1`` (a dict key -> array with ``stop - start``
        rows) after each call; the generator then gets ``None`` back. Without
        it, the answers are collected and the generator gets one dict with
        ``n_inputs`` rows per key (fine for a few inputs; a long path should
        consume its answers chunk by chunk to keep memory bounded).
    """

    n_inputs: int
    make_inputs: Callable[[int, int], np.ndarray]
    keys: Sequence[str]
    consume: Callable[[int, int, dict[str, np.ndarray]], None] | None = None


@dataclass(frozen=True)
class Fork:
    """Computations that one computation runs as its children: ``results = yield Fork(...)``.

    Attributes:
      children: an iterable of :data:`Steps` generators, pulled lazily, in
        order, when the scheduler has room for them (so a million SmoothGrad
        samples are never all built at once).
      on_result: ``on_result(index, result)`` receives each child's result as
        it finishes; the generator then gets ``None`` back. Without it, the
        results come back as a list in the children's order.
      sequential: run one child at a time (the next starts when the previous
        one is done) instead of packing the children's requests into shared
        calls.
      args: one ``call_model_args`` per child (by default the children use
        this computation's).
    """

    children: Iterable[Steps]
    on_result: Callable[[int, Any], None] | None = None
    sequential: bool = False
    args: Sequence[Any] | None = None


#: A method's computation for one input: a generator that yields
#: :class:`Request` and :class:`Fork` objects and returns its result (the mask).
Steps = Generator["Request | Fork", Any, Any]


_PLAIN_VALUE_TYPES = (type(None), bool, int, float, complex, str, bytes)


def same_call_model_args(first: Any, second: Any) -> bool:
    """Whether two examples' ``call_model_args`` may share a call of a plain ``call_model_function``.

    The same object, or equal plain values (``None``, numbers, strings) of one
    type. Containers (dicts, lists, arrays) must be the same object: their
    ``==`` may be costly, elementwise or ambiguous.
    """
    if first is second:
        return True
    return type(first) is type(second) and isinstance(first, _PLAIN_VALUE_TYPES) and first == second


class _Task:
    """One running computation (a :data:`Steps` generator) and what it waits for."""

    def __init__(self, steps: Steps, parent: _Task | None, index: int, args: Any) -> None:
        self.steps = steps
        self.parent = parent
        self.index = index  # its place among its parent's children
        self.args = args
        # Waiting for a request: how many of its inputs have been answered, and the answers.
        self.request: Request | None = None
        self.answered = 0
        self.answers: list[dict[str, np.ndarray]] = []
        # Waiting for a fork: its children not yet started, how many run, the results.
        self.fork: Fork | None = None
        self.children: Iterator[Steps] | None = None
        self.started = 0
        self.running = 0
        self.results: list[Any] | None = None


class _Scheduler:
    """Runs computations and packs their requests into calls (see :func:`run_steps`)."""

    def __init__(self, call_model_function: CallModelFunction, batch_size: int) -> None:
        self.call_model_function = call_model_function
        self.batch_size = batch_size
        self.pack_args = getattr(call_model_function, "pack_call_model_args", None)
        self.pending: list[_Task] = []  # computations waiting for a request, oldest first
        self.forks: list[_Task] = []  # parallel forks with children to start, innermost last
        self.new: list[_Task] = []  # requests made since the last look

    # Moving computations along.

    def advance(self, task: _Task, value: Any) -> None:
        """Resumes ``task`` with ``value`` until it (or the computation it unblocks) waits again."""
        while True:
            try:
                item = task.steps.send(value)
            except StopIteration as stop:
                parent = task.parent
                if parent is None:
                    return
                self.record_result(parent, task.index, stop.value)
                if parent.running:
                    return
                assert parent.fork is not None
                if not parent.fork.sequential and parent.children is not None:
                    return  # more children start when a call has room for them
                task, value = self.next_of(parent)
                continue
            if isinstance(item, Request):
                check_evaluation_count("number of model inputs", item.n_inputs)
                task.request, task.answered, task.answers = item, 0, []
                self.pending.append(task)
                self.new.append(task)
                return
            if not isinstance(item, Fork):
                raise TypeError(f"a computation yielded {type(item).__name__}, not a Request or a Fork")
            task.fork, task.children = item, iter(item.children)
            task.started = task.running = 0
            task.results = None if item.on_result is not None else []
            if not item.sequential:
                self.forks.append(task)
                return
            task, value = self.next_of(task)

    def next_of(self, task: _Task) -> tuple[_Task, Any]:
        """For a fork with no child running: its next child to start, or itself with the fork's result."""
        child = self.new_child(task)
        if child is not None:
            return child, None
        results, task.fork, task.results = task.results, None, None
        return task, results

    def new_child(self, task: _Task) -> _Task | None:
        """``task``'s next child as a task not yet started, or None when there is none left."""
        fork = task.fork
        child_steps = None if task.children is None else next(task.children, None)
        if child_steps is None or fork is None:
            task.children = None
            return None
        index = task.started
        task.started += 1
        task.running += 1
        if task.results is not None:
            task.results.append(None)
        return _Task(child_steps, task, index, task.args if fork.args is None else fork.args[index])

    def record_result(self, task: _Task, index: int, result: Any) -> None:
        """Hands a finished child's result to its parent ``task``."""
        fork = task.fork
        assert fork is not None
        task.running -= 1
        if fork.on_result is not None:
            fork.on_result(index, result)
        else:
            assert task.results is not None
            task.results[index] = result

    def start_from_forks(self) -> None:
        """Starts one child of the innermost parallel fork that has children left (or resumes a done fork)."""
        while self.forks:
            task = self.forks[-1]
            child = self.new_child(task)
            if child is not None:
                self.advance(child, None)
                return
            self.forks.pop()
            if task.running == 0:
                self.advance(*self.next_of(task))
                return

    # Calls.

    def compatible(self, head: _Task, task: _Task) -> bool:
        """Whether ``task``'s next inputs may share a call with ``head``'s."""
        assert head.request is not None and task.request is not None
        if list(head.request.keys) != list(task.request.keys):
            return False
        return self.pack_args is not None or same_call_model_args(head.args, task.args)

    def next_call(self) -> list[tuple[_Task, int, int]]:
        """The chunks of the next call: pending requests first, then new children while room is left."""
        chunks: list[tuple[_Task, int, int]] = []
        room = self.batch_size
        head: _Task | None = None
        skipped = False

        def take(task: _Task) -> bool:
            nonlocal room, head
            if head is None:
                head = task
            elif not self.compatible(head, task):
                return False
            assert task.request is not None
            size = min(room, task.request.n_inputs - task.answered)
            chunks.append((task, task.answered, task.answered + size))
            room -= size
            return True

        for task in self.pending:
            if room == 0:
                break
            skipped = not take(task) or skipped
        self.new = []
        # New computations only while they fill this call: memory stays bounded by
        # about batch_size computations in flight.
        while room > 0 and self.forks and not skipped:
            self.start_from_forks()
            for task in self.new:
                if room == 0 or not take(task):
                    skipped = True
                    break
            self.new = []
        return chunks

    def call(self, chunks: list[tuple[_Task, int, int]]) -> None:
        """Makes one call on ``chunks``, hands each its answer rows, resumes the finished requests."""
        head = chunks[0][0]
        assert head.request is not None
        keys = list(head.request.keys)
        parts = []
        for task, start, stop in chunks:
            assert task.request is not None
            parts.append(task.request.make_inputs(start, stop))
        inputs = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if all(task.args is head.args for task, _, _ in chunks) or self.pack_args is None:
            args = head.args
        else:
            args = self.pack_args([task.args for task, start, stop in chunks for _ in range(stop - start)])
        output = self.call_model_function(inputs, call_model_args=args, expected_keys=keys)
        answer = check_call_model_output(output, inputs.shape, keys)
        offset = 0
        finished = []
        for task, start, stop in chunks:
            rows = {key: value[offset : offset + stop - start] for key, value in answer.items()}
            offset += stop - start
            request = task.request
            assert request is not None
            if request.consume is not None:
                request.consume(start, stop, rows)
            else:
                task.answers.append(rows)
            task.answered = stop
            if stop == request.n_inputs:
                finished.append(task)
        if finished:
            self.pending = [task for task in self.pending if task not in finished]
        for task in finished:
            answers, task.request, task.answers = task.answers, None, []
            if not answers:
                self.advance(task, None)
            elif len(answers) == 1:
                self.advance(task, answers[0])
            else:
                self.advance(task, {key: np.concatenate([a[key] for a in answers]) for key in keys})

    def run(self, root: _Task) -> None:
        self.advance(root, None)
        while self.pending or self.forks:
            chunks = self.next_call()
            if chunks:
                self.call(chunks)


def run_steps(
    call_model_function: CallModelFunction,
    computations: Iterable[Steps],
    call_model_args: Sequence[Any],
    batch_size: int,
    on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Runs computations, packing their model evaluations into shared calls; returns their results.

    Each computation is a :data:`Steps` generator (one example's mask) with
    its own ``call_model_args``. Its :class:`Request` inputs are built lazily,
    one chunk per call, and the chunks of several computations go into one
    call of at most ``batch_size`` inputs (concatenated along axis 0; the
    answer is checked once, with :func:`check_call_model_output`, and split
    back by rows). Computations are started, in order, only when the call
    being filled has room, and the oldest requests are served first, so at
    most about ``batch_size`` computations are in flight and memory stays
    bounded by about ``batch_size`` inputs (plus each computation's own state)
    whatever the number of computations.

    Rows of computations with different ``call_model_args`` share a call only
    if ``call_model_function`` has a ``pack_call_model_args(row_args)`` method
    (the adapters do): it receives one ``call_model_args`` per row and returns
    the call's. Otherwise only computations whose arguments are the same
    (:func:`same_call_model_args`) share calls. A call whose rows all have the
    same arguments object gets that object unchanged.

    Args:
      call_model_function: the user's model function.
      computations: the computations, pulled lazily.
      call_model_args: one ``call_model_args`` per computation.
      batch_size: the most inputs in one call (>= 1).
      on_result: ``on_result(index, result)`` receives each result as it
        finishes; the returned list is then empty.

    Returns:
      The results in order (empty with ``on_result``).

    Raises:
      TypeError, ValueError: a bad ``batch_size``, a bad answer, or whatever
        a computation raises.
    """
    batch_size = check_int("batch_size", batch_size)
    results: list[Any] = []

    def root() -> Steps:
        collected = yield Fork(computations, on_result, args=call_model_args)
        if collected is not None:
            results.extend(collected)

    _Scheduler(call_model_function, batch_size).run(_Task(root(), None, 0, None))
    return results


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
    """The seed of each example of :meth:`CoreSaliency.GetSmoothedMaskBatch` (for :func:`make_rng`).

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
        make_rng(seed)  # checks the type
        seeds = [int(seed) + index for index in range(n_examples)]
    for index, value in enumerate(seeds):
        if not (value is None or isinstance(value, np.random.Generator)) and (
            isinstance(value, bool) or not isinstance(value, numbers.Integral)
        ):
            raise TypeError(
                f"seed[{index}] must be None, an int or a numpy Generator, got {type(value).__name__}"
            )
    return seeds


class _SmoothedSum:
    """SmoothGrad's running sum: masks (squared when ``magnitude``) added in float64."""

    def __init__(self, magnitude: bool) -> None:
        self.magnitude = magnitude
        self.total: np.ndarray | None = None
        self.dtype = np.dtype(np.float32)  # then the masks' dtype, if wider

    def add(self, index: int, mask: Any) -> None:
        mask = np.asarray(mask)
        self.dtype = np.result_type(mask.dtype, np.float32)
        if self.magnitude:  # squared in float32 at least: float16 squares overflow from 256 on
            mask = mask.astype(self.dtype, copy=False)
            mask = mask * mask
        value = mask.astype(np.float64)
        self.total = value if self.total is None else self.total + value

    def mean(self, nsamples: int) -> np.ndarray:
        assert self.total is not None  # nsamples >= 1: at least one mask
        return (self.total / nsamples).astype(self.dtype)


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


def _noisy_samples(
    x_value: np.ndarray, stdev: float, stdev_spread: float, nsamples: int, normal: Callable[..., np.ndarray]
) -> Iterator[np.ndarray]:
    """The ``nsamples`` noisy copies of ``x_value``, each drawn when it is needed.

    Raises:
      ValueError: noise that overflows an input to inf.
    """
    for _ in range(nsamples):
        noise = normal(0, stdev, x_value.shape)
        with np.errstate(over="ignore"):
            sample = x_value + noise
        if not np.isfinite(sample).all():
            raise ValueError(
                f"stdev_spread={stdev_spread} gives noise (standard deviation {stdev}) that "
                "overflows the noisy inputs to inf: use a smaller stdev_spread"
            )
        yield sample


# --------------------------------------------------------------------------
# The base class.
# --------------------------------------------------------------------------


class CoreSaliency:
    """Base class of every saliency method. Alone, it computes nothing.

    ``call_model_function(x_value_batch, call_model_args=None,
    expected_keys=None)`` receives a batch (dimension 0 is the batch) and
    returns a dict with the asked-for keys:

    - ``INPUT_OUTPUT_GRADIENTS``: gradients of the explained output with
      respect to the input, the batch's exact shape;
    - ``GUIDED_INPUT_OUTPUT_GRADIENTS``: the same with guided backpropagation;
    - ``OUTPUT_LAYER_VALUES``: the explained output, one entry per example;
    - ``CONVOLUTION_LAYER_VALUES`` / ``CONVOLUTION_OUTPUT_GRADIENTS``: a conv
      layer's activations and the output's gradients with respect to them,
      channel-last, one entry per example.

    A method says what callers (the command line, a progress bar, a check
    that a model can serve it) need to know about it, so that they ask
    instead of knowing:

    - ``expected_keys`` (class attribute): the keys :meth:`GetMask` asks
      ``call_model_function`` for;
    - :meth:`n_model_inputs`: how many inputs :meth:`GetMask` sends to
      ``call_model_function`` for given parameters
      (:meth:`n_smoothed_model_inputs` for :meth:`GetSmoothedMask`).

    How a method computes: its mathematics for one input is one generator,
    ``_mask_steps(x_value, **parameters)`` (:data:`Steps`), that yields
    :class:`Request` objects (the inputs it needs evaluated and how it uses
    the answers) and returns the mask; it never calls the model. :func:`run_steps`
    runs such computations and packs their requests into calls. :meth:`GetMask`
    is the batch of one; :meth:`GetMaskBatch` runs many examples, their
    evaluations sharing calls; :meth:`GetSmoothedMask` and
    :meth:`GetSmoothedMaskBatch` fork one computation per noisy sample.
    ``_mask_steps`` takes :meth:`GetMask`'s parameters after
    ``call_model_args``, less ``batch_size``. A class that implements only
    :meth:`GetMask` (as code written for the reference does) still gets
    SmoothGrad and the batch methods, one :meth:`GetMask` call per sample or
    example.
    """

    expected_keys: Sequence[str] = ()

    #: :meth:`GetMask` parameters that :meth:`GetMaskBatch` takes per example:
    #: an array ``[N, *x_shape]`` (one per example) or of the example's shape
    #: (the same for all); see :meth:`_split_argument`.
    per_example_arguments: tuple[str, ...] = ()

    #: Whether :meth:`GetSmoothedMask` packs its noisy samples into calls of
    #: ``batch_size`` (methods of one model input per mask, whose own
    #: ``batch_size`` has nothing else to group); otherwise it runs one sample
    #: after the other with ``batch_size`` grouping each sample's evaluations,
    #: as the reference does.
    smoothing_packs_samples: bool = False

    # The base signatures end in ``*args: Any, **kwargs: Any``: every method
    # has its own parameters after ``call_model_args`` (the reference API).

    def GetMask(  # noqa: N802 (the reference API's name)
        self,
        x_value: np.ndarray,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the saliency mask of the single, un-batched ``x_value``."""
        raise NotImplementedError("A derived class should implement GetMask()")

    def _mask_steps(self, x_value: Any, *args: Any, **parameters: Any) -> Steps:
        """The method's computation of one mask (see the class docstring); none here."""
        raise NotImplementedError("A derived class should implement GetMask()")

    def _has_steps(self) -> bool:
        """Whether ``_mask_steps`` computes what :meth:`GetMask` returns.

        False for a class without ``_mask_steps``, or one that overrides
        :meth:`GetMask` below the class that defines ``_mask_steps``: its
        ``GetMask`` is then called once per mask.
        """
        mro = type(self).__mro__
        steps_owner = next(kind for kind in mro if "_mask_steps" in vars(kind))
        mask_owner = next(kind for kind in mro if "GetMask" in vars(kind))
        return steps_owner is not CoreSaliency and issubclass(steps_owner, mask_owner)

    def _run_one(
        self,
        steps: Steps,
        x_value: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any,
        batch_size: int,
    ) -> Any:
        """Runs one computation (a batch of one) and returns its result."""
        batch_size = check_int("batch_size", batch_size)
        if hasattr(call_model_function, "resolve_call_model_args"):
            resolved = resolve_call_model_args(
                call_model_function, np.asarray(x_value)[None], [call_model_args], batch_size
            )
            call_model_args = resolved[0]
        return run_steps(call_model_function, [steps], [call_model_args], batch_size)[0]

    def _mask_parameters(self, kwargs: Mapping[str, Any], caller: str) -> tuple[dict[str, Any], Any]:
        """Binds ``kwargs`` to :meth:`GetMask`'s parameters after ``call_model_args``, defaults filled in.

        Returns:
          ``(parameters, batch_size)``: the parameters less ``batch_size``, and
          ``batch_size`` (``None`` when :meth:`GetMask` has none and it was not given).

        Raises:
          TypeError: a parameter :meth:`GetMask` does not take.
        """
        signature = inspect.signature(self.GetMask)
        try:
            bound = signature.bind(None, None, None, **kwargs)
        except TypeError as error:
            raise TypeError(f"{type(self).__name__}.{caller}: {error}") from None
        bound.apply_defaults()
        names = list(signature.parameters)[:3]
        parameters: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name in names:
                continue
            if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                parameters.update(value)
            else:
                parameters[name] = value
        return parameters, parameters.pop("batch_size", None)

    def _split_argument(
        self, name: str, value: Any, n_examples: int, x_shape: tuple[int, ...]
    ) -> list[Any] | None:
        """One ``value`` per example (a list of ``n_examples``), or None when it is the same for all.

        The rule for an argument of the example's shape (a baseline): ``None``
        or an array of ``x_shape`` is the same for every example;
        ``[n_examples, *x_shape]`` is one per example.

        Raises:
          BaselineShapeError: (a ``ValueError``) any other shape.
        """
        if value is None:
            return None
        array = np.asarray(value)
        if array.shape == tuple(x_shape):
            return None
        if array.shape == (n_examples, *x_shape):
            return list(array)
        raise BaselineShapeError(
            f"{name} must have the shape of one example {tuple(x_shape)} (the same for every example) "
            f"or {(n_examples, *x_shape)} (one per example), got {array.shape}"
        )

    def _run_batch(
        self,
        caller: str,
        x_values: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any,
        batch_size: int,
        kwargs: Mapping[str, Any],
        make_steps: Callable[..., Steps],
        one_by_one: Callable[[int, Any, Any], Any],
    ) -> list[Any]:
        """Checks a batch's arguments and runs one computation per example (see :meth:`GetMaskBatch`).

        ``make_steps(index, x_value, **parameters)`` gives example ``index``'s
        computation; a class without ``_mask_steps`` calls
        ``one_by_one(index, x_value, call_model_args)`` for each example instead.

        Returns:
          One result per example, in order.
        """
        examples, x_shape = batch_examples(x_values)
        n_examples = len(examples)
        batch_size = check_int("batch_size", batch_size)
        example_args = per_example_values("call_model_args", call_model_args, n_examples)
        if not self._has_steps():
            return [one_by_one(index, examples[index], example_args[index]) for index in range(n_examples)]
        parameters, _ = self._mask_parameters(kwargs, caller)
        split = {}
        for name in self.per_example_arguments:
            values = self._split_argument(name, parameters.get(name), n_examples, x_shape)
            if values is not None:
                split[name] = values
        example_args = resolve_call_model_args(call_model_function, x_values, example_args, batch_size)

        def computations() -> Iterator[Steps]:
            for index in range(n_examples):
                own = {name: values[index] for name, values in split.items()}
                yield make_steps(index, examples[index], **{**parameters, **own})

        return run_steps(call_model_function, computations(), example_args, batch_size)

    def GetMaskBatch(  # noqa: N802
        self,
        x_values: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the masks of many examples, their model evaluations packed into shared calls.

        Each mask equals :meth:`GetMask` on that example (up to floating-point
        rounding: the model sees other batches). The evaluations of all
        examples go to ``call_model_function`` in calls of at most
        ``batch_size`` inputs: a call is filled across example boundaries
        (for IG, ``ceil(N * x_steps / batch_size)`` calls instead of ``N *
        ceil(x_steps / batch_size)``); sequential methods (Guided IG) send
        step ``k`` of up to ``batch_size`` examples in one call.

        Memory stays bounded by about ``batch_size`` inputs (and the state of
        about ``batch_size`` examples in flight) whatever N is: inputs are
        built lazily, one call's worth at a time, and examples start only
        when a call has room for them. The output, ``[N, ...]``, is the only
        thing that grows with N.

        Args:
          x_values: the examples: an array ``[N, ...]`` or a list or tuple of N
            arrays of one shape (converted to one dtype), N >= 1.
          call_model_function: as for :meth:`GetMask`. If it has
            ``pack_call_model_args(row_args)`` (the adapters), rows of
            examples with different ``call_model_args`` share calls: it gets
            one ``call_model_args`` per row and returns the call's. If it has
            ``resolve_call_model_args(x_values, example_args, batch_size)``,
            that is called once first (an adapter's ``target="predicted"``
            becomes each example's top class). A plain function (the
            reference's contract) shares calls only among examples whose
            ``call_model_args`` are the same object or equal plain values
            (``None``, numbers, strings); others get calls of their own.
          call_model_args: one value for every example, or a ``list`` or
            ``tuple`` of one per example (a list or tuple is always read as
            per example: wrap a tuple meant for all examples in a list of N).
          batch_size: the most inputs in one call, across examples (>= 1).
          **kwargs: :meth:`GetMask`'s parameters. Those in
            :attr:`per_example_arguments` (``x_baseline``...) are either of the
            example's shape (the same for all) or ``[N, ...]`` (one per example).

        Returns:
          ``[N, ...]``: mask ``i`` at index ``i``.

        Raises:
          ValueError: no example, examples of different shapes,
            ``call_model_args`` or a per-example argument of the wrong length
            or shape (the message names the argument, the expected and the
            actual), or any error :meth:`GetMask` raises.
          TypeError: a parameter :meth:`GetMask` does not take, or of a wrong type.
        """
        masks = self._run_batch(
            "GetMaskBatch",
            x_values,
            call_model_function,
            call_model_args,
            batch_size,
            kwargs,
            lambda index, x_value, **parameters: self._mask_steps(x_value, **parameters),
            lambda index, x_value, args: self.GetMask(x_value, call_model_function, args, **kwargs),
        )
        return np.stack(masks)

    def n_model_inputs(self, x_shape: tuple[int, ...], *args: Any, **kwargs: Any) -> int:
        """How many inputs :meth:`GetMask` sends to ``call_model_function`` for these parameters.

        The sum of the lengths of the batches handed to the model (the
        number of calls is about this divided by ``batch_size``), for an
        ``x_value`` of shape ``x_shape``; a progress bar's total.

        Args:
          x_shape: the shape of the un-batched input.
          **kwargs: :meth:`GetMask`'s own parameters (those after
            ``call_model_args``), by name; left out ones take their defaults.
            A method may accept and ignore those that do not change the count.

        Returns:
          The number of model inputs, >= 0 (0: the model is not called).

        Raises:
          TypeError, ValueError: a parameter that the count depends on and
            that :meth:`GetMask` would refuse, with :meth:`GetMask`'s message.
          NotImplementedError: the method does not say.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement n_model_inputs()")

    def n_smoothed_model_inputs(
        self,
        x_shape: tuple[int, ...],
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool = True,
        seed: int | np.random.Generator | None = None,
        **kwargs: Any,
    ) -> int:
        """How many inputs :meth:`GetSmoothedMask` sends to ``call_model_function``.

        ``nsamples`` times :meth:`n_model_inputs` with ``**kwargs`` (the noise
        parameters do not change the count).

        Raises:
          TypeError, ValueError: a bad ``nsamples``, or see :meth:`n_model_inputs`.
        """
        nsamples = check_evaluation_count("nsamples", nsamples)
        return nsamples * self.n_model_inputs(x_shape, **kwargs)

    def _smoothed_steps(
        self,
        x_value: Any,
        stdev_spread: float,
        nsamples: int,
        magnitude: bool,
        normal: Callable[..., np.ndarray],
        sequential: bool,
        **parameters: Any,
    ) -> Steps:
        """SmoothGrad around ``_mask_steps``: one child computation per noisy sample."""
        x_value, stdev, stdev_spread, nsamples = _smoothing_setup(x_value, stdev_spread, nsamples)
        total = _SmoothedSum(magnitude)
        samples = _noisy_samples(x_value, stdev, stdev_spread, nsamples, normal)
        yield Fork((self._mask_steps(sample, **parameters) for sample in samples), total.add, sequential)
        return total.mean(nsamples)

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
            many noisy samples to the model in one call; for the others it
            groups each sample's evaluations, the samples one after the other.

        Returns:
          An array of ``x_value``'s shape, in the masks' dtype or float32,
          whichever is wider (float16 masks give float32).

        Raises:
          TypeError, ValueError: for bad arguments or a bad model answer.

        FIX over the reference: noise from a seedable generator, and integer
        inputs are converted to floating point before noise is added.
        """
        x_array, stdev, stdev_spread, nsamples = _smoothing_setup(x_value, stdev_spread, nsamples)
        normal = make_rng(seed)
        if not self._has_steps():  # a GetMask of its own: one call per sample
            total = _SmoothedSum(magnitude)
            for index, sample in enumerate(_noisy_samples(x_array, stdev, stdev_spread, nsamples, normal)):
                total.add(index, self.GetMask(sample, call_model_function, call_model_args, **kwargs))
            return total.mean(nsamples)
        parameters, batch_size = self._mask_parameters(kwargs, "GetSmoothedMask")
        steps = self._smoothed_steps(
            x_array, stdev_spread, nsamples, magnitude, normal, not self.smoothing_packs_samples, **parameters
        )
        return self._run_one(
            steps, x_array, call_model_function, call_model_args, 1 if batch_size is None else batch_size
        )

    def GetSmoothedMaskBatch(  # noqa: N802
        self,
        x_values: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool = True,
        seed: Any = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the SmoothGrad masks of many examples, all their evaluations packed into shared calls.

        Each mask equals :meth:`GetSmoothedMask` on that example with the seed
        the example gets (see ``seed``), up to floating-point rounding. The
        ``N * nsamples`` noisy samples' evaluations share calls of at most
        ``batch_size`` inputs (``ceil(N * nsamples * evaluations per mask /
        batch_size)`` calls for the methods whose evaluations all go at once),
        and memory stays bounded by about ``batch_size`` inputs whatever N and
        ``nsamples`` are: samples are drawn when a call has room for them.

        Args:
          x_values, call_model_function, call_model_args, batch_size, **kwargs:
            as for :meth:`GetMaskBatch`.
          stdev_spread, nsamples, magnitude: as for :meth:`GetSmoothedMask`.
          seed: ``None`` (NumPy's global state, shared by all examples); an
            ``int`` ``s``: example ``i`` gets the noise of
            ``GetSmoothedMask(x_values[i], seed=s + i)``; a
            ``np.random.Generator`` ``g``: example 0 draws from ``g``, example
            ``i >= 1`` from ``g.spawn(N - 1)[i - 1]``; or a list or tuple of N
            of those, one per example. So a batch of one with a given seed
            equals :meth:`GetSmoothedMask` with that seed.

        Returns:
          ``[N, ...]``: the smoothed mask of example ``i`` at index ``i``.

        Raises:
          TypeError, ValueError: as for :meth:`GetMaskBatch` and
            :meth:`GetSmoothedMask`; a ``seed`` list of the wrong length.
        """
        stdev_spread = check_number("stdev_spread", stdev_spread, minimum=0.0)
        nsamples = check_evaluation_count("nsamples", nsamples)
        seeds = example_seeds(seed, len(batch_examples(x_values)[0]))

        def smoothed_steps(index: int, x_value: Any, **parameters: Any) -> Steps:
            normal = make_rng(seeds[index])
            return self._smoothed_steps(
                x_value, stdev_spread, nsamples, magnitude, normal, False, **parameters
            )

        def smoothed_one_by_one(index: int, x_value: Any, args: Any) -> Any:
            return self.GetSmoothedMask(
                x_value, call_model_function, args, stdev_spread, nsamples, magnitude, seeds[index], **kwargs
            )

        masks = self._run_batch(
            "GetSmoothedMaskBatch",
            x_values,
            call_model_function,
            call_model_args,
            batch_size,
            kwargs,
            smoothed_steps,
            smoothed_one_by_one,
        )
        return np.stack(masks)

    def format_and_check_call_model_output(
        self, output: dict[str, Any], input_shape: Sequence[int], expected_keys: Sequence[str]
    ) -> None:
        """Reference API: converts ``output``'s expected keys to arrays in place and checks them.

        Raises:
          ValueError: if a key is missing, has the wrong shape or holds NaN/inf.
        """
        output.update(check_call_model_output(output, input_shape, expected_keys))
