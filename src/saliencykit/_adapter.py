"""The template every framework adapter is built on (saliencykit.torch, .keras, .jax).

A ``call_model_function`` answers keys for a NumPy batch. What that takes is
the same in every framework, and lives here once:

- the keys: which are known, which need a backward pass, which need the
  Grad-CAM layer, and the dispatch (one gradient pass for the plain keys, a
  forward pass only for ``OUTPUT_LAYER_VALUES`` alone, a separate guided pass);
- the target: a class index or a callable, overridden per call through
  ``call_model_args``, and the one rule (:func:`select_target`) that turns a
  model output into one scalar per example;
- the layer lookup by object or by name, with one "did you mean" rule;
- the answer: the gradients that must exist, converted back to NumPy, exactly
  the keys asked for;
- the state of models shared by concurrent calls (:class:`Holds`: reference
  counted save/restore of every part a call changes, calls of conflicting
  kinds waiting for each other) and the per-call token (:func:`call_token`)
  that framework hooks use to act only on their own call's forward pass.

A framework supplies only the rest, as a subclass of :class:`Adapter`:
``convert`` (NumPy batch -> framework input), ``forward`` (the target's values),
``gradients`` (the target's values and the gradients asked for, as a
:class:`Gradients`), ``to_numpy`` (and ``layer_to_numpy`` for a layer whose
channel axis is not last), and optionally ``holding`` (the model's mode for a
call) and ``guided`` (its guided-ReLU context). ``tests/test_adapter_template.py``
builds a complete adapter for a NumPy model in about thirty lines.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import difflib
import numbers
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .core import base as _keys

INPUT_GRADIENTS = _keys.INPUT_OUTPUT_GRADIENTS
OUTPUTS = _keys.OUTPUT_LAYER_VALUES
LAYER_VALUES = _keys.CONVOLUTION_LAYER_VALUES
LAYER_GRADIENTS = _keys.CONVOLUTION_OUTPUT_GRADIENTS
GUIDED_GRADIENTS = _keys.GUIDED_INPUT_OUTPUT_GRADIENTS

#: Keys that need a backward pass through the plain (not guided) model.
GRADIENT_KEYS = (INPUT_GRADIENTS, LAYER_VALUES, LAYER_GRADIENTS)
#: Keys that need the Grad-CAM layer.
LAYER_KEYS = (LAYER_VALUES, LAYER_GRADIENTS)
#: Every key an adapter answers.
KNOWN_KEYS = (*GRADIENT_KEYS, OUTPUTS, GUIDED_GRADIENTS)

#: The error for a gradient that does not exist (the framework returned None).
NO_GRADIENT = (
    "the target does not depend differentiably on the input (or on the Grad-CAM layer): the gradient "
    "is None. Does the model cast to integers or stop the gradient, or does a callable target ignore "
    "the model's output?"
)

# --------------------------------------------------------------------------
# Keys and targets.
# --------------------------------------------------------------------------


def checked_keys(expected_keys: Sequence[str] | None) -> list[str]:
    """``expected_keys`` as a list (default ``[INPUT_OUTPUT_GRADIENTS]``); ValueError for unknown keys."""
    keys = list(expected_keys) if expected_keys is not None else [INPUT_GRADIENTS]
    unknown = [key for key in keys if key not in KNOWN_KEYS]
    if unknown:
        raise ValueError(f"unknown expected_keys {unknown}; this adapter answers {list(KNOWN_KEYS)}")
    return keys


def check_target_type(target: Any) -> None:
    """Raises TypeError unless ``target`` is an integer (not a bool) or a callable."""
    if callable(target):
        return
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(f"target must be a class index (int) or a callable, got {type(target).__name__}")


def check_class_index(target: int, output_shape: Sequence[int]) -> None:
    """Raises ValueError unless ``output_shape`` is ``[batch, classes]`` and ``target`` indexes a class."""
    check_target_type(target)
    if len(output_shape) != 2:
        raise ValueError(
            f"a class-index target needs a [batch, classes] model output, got shape {tuple(output_shape)}; "
            "pass a callable target instead"
        )
    if not -output_shape[1] <= target < output_shape[1]:
        raise ValueError(f"target class {target} is out of range for a model with {output_shape[1]} outputs")


def check_one_scalar_per_example(selected_shape: Sequence[int] | None, what: str, batch: int) -> None:
    """Raises ValueError unless a callable target's result has shape ``[batch]`` or ``[batch, 1]``.

    ``selected_shape`` is None when the result is not an array; ``what`` names
    what came back (its type) for the message.
    """
    if selected_shape is None or tuple(selected_shape) not in ((batch,), (batch, 1)):
        returned = tuple(selected_shape) if selected_shape is not None else what
        raise ValueError(
            f"target must map the model's output batch to one scalar per example, "
            f"shape ({batch},); it returned {returned}"
        )


def target_from_call_model_args(call_model_args: Any, default: Any) -> Any:
    """The target of one call.

    ``call_model_args`` itself when it is an int or a callable, its
    ``"target"`` entry when it is a dict, else ``default``.
    """
    if call_model_args is None:
        return default
    if isinstance(call_model_args, dict):
        return call_model_args.get("target", default)
    return call_model_args


def select_target(
    outputs: Any, target: Any, *, is_array: Callable[[Any], bool], flatten: Callable[[Any, int], Any]
) -> Any:
    """One scalar per example, ``outputs[:, target]`` or ``target(outputs)``: the rule of every adapter.

    A tuple or list of outputs means its first element. The framework hooks:
    ``is_array(value)`` says whether a callable target returned the
    framework's array type, ``flatten(selected, batch)`` reshapes its
    ``[batch]`` or ``[batch, 1]`` result to ``[batch]``.

    Raises:
      ValueError: an output without a leading batch axis, a class index out
        of range or with an output that is not ``[batch, classes]``, or a
        callable that does not return one scalar per example.
      TypeError: a target that is neither an integer nor a callable.
    """
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]
    shape = getattr(outputs, "shape", None)
    if shape is None or len(shape) < 1:
        got = tuple(shape) if shape is not None else type(outputs).__name__
        raise ValueError(f"the model must return an array with a leading batch axis, got {got}")
    batch = shape[0]
    if callable(target):
        selected = target(outputs)
        returned = tuple(selected.shape) if is_array(selected) else None
        check_one_scalar_per_example(returned, type(selected).__name__, batch)
        return flatten(selected, batch)
    check_class_index(target, tuple(shape))
    return outputs[:, int(target)]


# --------------------------------------------------------------------------
# Layers.
# --------------------------------------------------------------------------


def find_layer(
    layer: Any,
    named: Sequence[tuple[str, Any]],
    layer_type: type | tuple[type, ...],
    *,
    kind: str,
    member: str,
) -> Any:
    """The layer of a model given as an object or a name.

    Args:
      layer: the caller's ``layer`` argument: one of the objects in ``named``,
        or the name of exactly one of them.
      named: the model's (name, layer) pairs, nested layers included.
      layer_type: the framework's layer type(s), for the type check.
      kind: the expected type in words, e.g. ``"an nn.Module"``.
      member: what a layer is called in the framework, e.g. ``"module"``.

    Raises:
      ValueError: no such layer (with the closest names, by
        :func:`difflib.get_close_matches`), or a name shared by several layers.
      TypeError: ``layer`` is neither a string nor of ``layer_type``.
    """
    if isinstance(layer, str):
        matches = list({id(obj): obj for name, obj in named if name == layer}.values())
        if not matches:
            close = difflib.get_close_matches(layer, [name for name, _ in named if name], n=5)
            similar = f"; similar: {close}" if close else ""
            raise ValueError(f"layer {layer!r} is not a {member} of the model{similar}")
        if len(matches) > 1:
            raise ValueError(f"layer name {layer!r} is shared by {len(matches)} {member}s; pass the object")
        return matches[0]
    if isinstance(layer, layer_type):
        if not any(obj is layer for _, obj in named):
            name = getattr(layer, "name", None)
            what = f"{name!r} ({type(layer).__name__})" if isinstance(name, str) else type(layer).__name__
            raise ValueError(f"layer {what} is not a {member} of the model")
        return layer
    raise TypeError(f"layer must be {kind} of the model or its name, got {type(layer).__name__}")


# --------------------------------------------------------------------------
# Concurrent calls: the call token and the holds on shared model parts.
# --------------------------------------------------------------------------

#: The token of the adapter call running in this thread (or task), if any.
_CURRENT_CALL: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "saliencykit_adapter_call", default=None
)


def current_call() -> object | None:
    """The token of the adapter call running in this thread (or task); None outside any."""
    return _CURRENT_CALL.get()


@contextlib.contextmanager
def call_token() -> Iterator[object]:
    """A fresh token marking this thread's work during the block as one adapter call's."""
    token = object()
    reset = _CURRENT_CALL.set(token)
    try:
        yield token
    finally:
        _CURRENT_CALL.reset(reset)


@dataclass(slots=True)
class _Hold:
    """The calls in flight that hold one part, by kind (no zero counts), and what each kind saved."""

    users: dict[Any, int] = field(default_factory=dict)
    saved: dict[Any, Any] = field(default_factory=dict)


class Holds:
    """Reference-counted holds of concurrent adapter calls on the parts of models.

    A part (a submodule, a layer) is held by every call in flight on it, each
    of one *kind* (say eval mode, or train mode). The first call of a kind
    saves the part's state (``save``) and the last one of that kind restores it
    (``restore``), so concurrent calls of one kind run in parallel and the
    part comes back exactly as it was. A call waits while another kind holds
    any of its parts, unless its thread is already inside an adapter call
    (:func:`current_call`), which would wait for itself. Framework-neutral:
    the framework says what the parts are and how to save and restore them.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._holds: weakref.WeakKeyDictionary[Any, _Hold] = weakref.WeakKeyDictionary()

    def users(self, part: Any) -> int:
        """How many calls hold ``part`` now (a snapshot, read without the lock)."""
        hold = self._holds.get(part)
        return 0 if hold is None else sum(hold.users.values())

    @contextlib.contextmanager
    def hold(
        self,
        parts: Iterable[Any] | Callable[[], Iterable[Any]],
        kind: Any,
        save: Callable[[Any], Any] | None = None,
        restore: Callable[[Any, Any], None] | None = None,
        then: Callable[[list[Any]], None] | None = None,
    ) -> Iterator[list[Any]]:
        """Holds ``parts`` with ``kind`` for the block; yields the parts held.

        Args:
          parts: the parts, or a function listing them (called with the lock
            held, so it may look at :meth:`users`).
          kind: the kind of hold; holds of different kinds exclude each other.
          save: ``save(part) -> state``, run by the first call of ``kind``.
          restore: ``restore(part, state)``, run by the last call of ``kind``.
          then: run once with the parts after they are held (e.g. switch the
            model to eval mode); if it or a ``save`` raises, the parts joined
            so far are released (and restored) before the error propagates.
        """
        with self._condition:
            held = list(parts() if callable(parts) else parts)
            if current_call() is None:
                self._condition.wait_for(lambda: not any(self._held_otherwise(part, kind) for part in held))
            joined: list[Any] = []
            try:
                for part in held:
                    self._join(part, kind, save)
                    joined.append(part)
                if then is not None:
                    then(held)
            except BaseException:
                self._release(joined, kind, restore)
                raise
        try:
            yield held
        finally:
            with self._condition:
                self._release(held, kind, restore)

    def _held_otherwise(self, part: Any, kind: Any) -> bool:
        hold = self._holds.get(part)
        return hold is not None and any(other != kind for other in hold.users)

    def _join(self, part: Any, kind: Any, save: Callable[[Any], Any] | None) -> None:
        """Adds one user of ``kind`` to ``part``, saving its state first if it is the first (lock held)."""
        hold = self._holds.get(part)
        known = hold is not None
        if hold is None:
            hold = _Hold()
        count = hold.users.get(kind, 0)
        if not count:
            hold.saved[kind] = save(part) if save is not None else None
        hold.users[kind] = count + 1
        if not known:
            self._holds[part] = hold

    def _release(self, parts: list[Any], kind: Any, restore: Callable[[Any, Any], None] | None) -> None:
        """Ends one call's hold on ``parts``, restoring those it was the last of its kind on (lock held)."""
        for part in parts:
            hold = self._holds.get(part)
            count = 0 if hold is None else hold.users.get(kind, 0)
            if hold is None or count == 0:
                continue
            if count > 1:
                hold.users[kind] = count - 1
                continue
            del hold.users[kind]
            state = hold.saved.pop(kind, None)
            if restore is not None:
                restore(part, state)
            if not hold.users:
                del self._holds[part]
        self._condition.notify_all()


# --------------------------------------------------------------------------
# The template.
# --------------------------------------------------------------------------


class Gradients(NamedTuple):
    """What a framework's ``gradients`` returns, in its own array type.

    ``selected`` is the target (one scalar per example); the other fields
    are None unless asked for: the gradient of ``sum(selected)`` with respect
    to the input, and the Grad-CAM layer's values and gradient.
    """

    selected: Any
    input_gradients: Any = None
    layer_values: Any = None
    layer_gradients: Any = None


class Adapter(abc.ABC):
    """A ``call_model_function``: the shared template; a framework subclass supplies the operations.

    Calling it, ``adapter(x_value_batch, call_model_args=None, expected_keys=None)``,
    checks the keys and the target, converts the batch once, holds the
    model (:meth:`holding`) and, under a fresh :func:`call_token`, runs one
    gradient pass for ``INPUT_OUTPUT_GRADIENTS`` / ``CONVOLUTION_*`` (with
    ``OUTPUT_LAYER_VALUES`` from the same pass), a forward pass only when
    ``OUTPUT_LAYER_VALUES`` is the only plain key, and a guided gradient pass
    inside :meth:`guided` for ``GUIDED_INPUT_OUTPUT_GRADIENTS``. It returns
    exactly the keys asked for, as NumPy arrays.
    """

    #: The error for ``GUIDED_INPUT_OUTPUT_GRADIENTS``, for a framework that cannot answer it.
    guided_unsupported: ClassVar[str | None] = None
    #: The error for ``CONVOLUTION_*`` keys asked of an adapter without a layer.
    layer_needed: ClassVar[str] = "CONVOLUTION_* keys need the layer= argument of make_call_model_function"

    def __init__(self, target: Any, *, has_layer: bool) -> None:
        check_target_type(target)
        self.target = target
        self.has_layer = has_layer

    # ---- what a framework supplies -----------------------------------------

    @abc.abstractmethod
    def convert(self, x_value_batch: Any) -> Any:
        """The caller's batch in the form ``forward`` and ``gradients`` take (never written to)."""

    @abc.abstractmethod
    def forward(self, inputs: Any, target: Any) -> Any:
        """The target's values for the batch, one per example (no gradients)."""

    @abc.abstractmethod
    def gradients(self, inputs: Any, target: Any, *, want_input: bool, want_layer: bool) -> Gradients:
        """The target's values and the gradients of their sum asked for (None where it does not exist)."""

    def to_numpy(self, value: Any) -> np.ndarray:
        """A framework array as a writable NumPy array (a copy by default; callers may change it)."""
        return np.array(value)

    def layer_to_numpy(self, value: Any) -> np.ndarray:
        """A Grad-CAM layer's values or gradients as a channel-last NumPy array."""
        return self.to_numpy(value)

    def holding(self) -> contextlib.AbstractContextManager[Any]:
        """The model's state for one call (mode, saved variables); nothing by default."""
        return contextlib.nullcontext()

    def guided(self) -> contextlib.AbstractContextManager[Any]:
        """Makes the model's ReLUs guided for this call's gradient pass."""
        raise ValueError(
            self.guided_unsupported or "this adapter does not answer GUIDED_INPUT_OUTPUT_GRADIENTS"
        )

    # ---- the template ----------------------------------------------------------

    def __call__(
        self, x_value_batch: Any, call_model_args: Any = None, expected_keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Answers ``expected_keys`` (default ``[INPUT_OUTPUT_GRADIENTS]``) for a batch ``[N, ...]``.

        ``call_model_args`` overrides the target: an int, a callable, or a
        dict with a ``"target"`` entry.
        """
        keys = self._checked_keys(expected_keys)
        target = target_from_call_model_args(call_model_args, self.target)
        check_target_type(target)
        inputs = self.convert(x_value_batch)
        answer: dict[str, np.ndarray] = {}
        with self.holding(), call_token():
            if any(key in GRADIENT_KEYS for key in keys):
                answer.update(self._gradient_answer(inputs, target, keys))
            elif OUTPUTS in keys:
                answer[OUTPUTS] = self.to_numpy(self.forward(inputs, target))
            if GUIDED_GRADIENTS in keys:
                with self.guided():
                    guided = self._checked_gradients(inputs, target, want_input=True, want_layer=False)
                answer[GUIDED_GRADIENTS] = self.to_numpy(guided.input_gradients)
        return {key: answer[key] for key in keys}

    def _checked_keys(self, expected_keys: Sequence[str] | None) -> list[str]:
        keys = checked_keys(expected_keys)
        if GUIDED_GRADIENTS in keys and self.guided_unsupported is not None:
            raise ValueError(self.guided_unsupported)
        if not self.has_layer and any(key in LAYER_KEYS for key in keys):
            raise ValueError(self.layer_needed)
        return keys

    def _checked_gradients(
        self, inputs: Any, target: Any, *, want_input: bool, want_layer: bool
    ) -> Gradients:
        result = self.gradients(inputs, target, want_input=want_input, want_layer=want_layer)
        if (want_input and result.input_gradients is None) or (want_layer and result.layer_gradients is None):
            raise ValueError(NO_GRADIENT)
        return result

    def _gradient_answer(self, inputs: Any, target: Any, keys: Sequence[str]) -> dict[str, np.ndarray]:
        want_input = INPUT_GRADIENTS in keys
        want_layer = any(key in LAYER_KEYS for key in keys)
        result = self._checked_gradients(inputs, target, want_input=want_input, want_layer=want_layer)
        answer = {OUTPUTS: self.to_numpy(result.selected)} if OUTPUTS in keys else {}
        if want_input:
            answer[INPUT_GRADIENTS] = self.to_numpy(result.input_gradients)
        if want_layer:
            answer[LAYER_GRADIENTS] = self.layer_to_numpy(result.layer_gradients)
            answer[LAYER_VALUES] = self.layer_to_numpy(result.layer_values)
        return answer
