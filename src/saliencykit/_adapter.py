"""The template every framework adapter is built on (saliencykit.torch, .keras, .jax).

A ``call_model_function`` answers keys for a NumPy batch. What that takes is
the same in every framework, and lives here once:

- the keys: which are known, which need a backward pass, which need the
  Grad-CAM layer, and the dispatch (one gradient pass for the plain keys, a
  forward pass only for ``OUTPUT_LAYER_VALUES`` alone, a separate guided pass);
- the target: a class index, a callable, ``"predicted"`` (each row's own top
  class) or per-row targets (an integer array ``[N]``, or a list/tuple of N
  ints, callables or ``"predicted"``: row i is explained through its own),
  overridden per call through ``call_model_args``, and the one rule
  (:func:`select_target`) that turns a model output into one scalar per row;
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
builds a complete adapter for a NumPy model in about thirty lines. For
per-row targets it also passes its array operations to :func:`select_target`
(:class:`RowOps`: take rows, take one class per row, argmax, concatenate;
NumPy's by default), so that row i's value is gathered in the framework, with
no Python loop over rows.

The batch scheduler's protocol
------------------------------
The batch API (``GetMaskBatch``) packs rows of different examples into one
model call. Every :class:`Adapter` (so every ``call_model_function`` that
:mod:`saliencykit.torch`, :mod:`saliencykit.keras` and :mod:`saliencykit.jax`
return) says so with ``SUPPORTS_ROW_TARGETS = True`` and has two methods for
it; a hand-written ``call_model_function`` has neither, and the scheduler then
packs only examples that share ``call_model_args``.

- ``pack_call_model_args(row_args: Sequence[Any]) -> Any``: given one
  ``call_model_args`` per row of a packed batch (each what the user would pass
  for that example: None, an int, a callable, ``"predicted"``, or a dict with a
  ``"target"`` entry), returns ONE ``call_model_args`` (``{"target": ...}``,
  with the rows' other dict entries, which must be equal across rows) such that
  a call on the packed batch answers row i as a call with ``row_args[i]``
  would. ``"predicted"`` in a packed call means each row's own top class, so
  the scheduler resolves it per example first:
- ``resolve_call_model_args(x_values: np.ndarray, example_args: Sequence[Any],
  batch_size: int) -> list[Any]``: for examples ``x_values`` ``[N, ...]`` and
  one ``call_model_args`` per example, returns them with every ``"predicted"``
  target (the default target or an override) replaced by that example's top
  class, an int, found by forward passes on the examples themselves in calls of
  at most ``batch_size`` (so the path points of Integrated Gradients, near a
  black baseline, do not change the explained class); the others unchanged.
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


#: The target that explains each row's own top class (the argmax of its output row).
PREDICTED = "predicted"


class _TopClass:
    """The type of :data:`TOP_CLASS`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOP_CLASS"


#: An internal target whose value for each row is its top class, an integer (the
#: forward pass of :meth:`Adapter.predicted_classes`); never a user's target.
TOP_CLASS = _TopClass()

_TARGET_FORMS = (
    "a class index (int) or a callable (or 'predicted', or per-row targets: an integer array [N] "
    "or a list/tuple of N ints, callables or 'predicted')"
)


def is_predicted(target: Any) -> bool:
    """Whether ``target`` is ``"predicted"`` (each row's own top class)."""
    return isinstance(target, str) and target == PREDICTED


def is_per_row(target: Any) -> bool:
    """Whether ``target`` gives one target per row: an array of rank >= 1, a list or a tuple."""
    return isinstance(target, (list, tuple)) or (isinstance(target, np.ndarray) and target.ndim >= 1)


def _is_class_index(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_target_type(target: Any) -> None:
    """Checks a target before the batch it explains is known.

    A target is a class index (an integer, not a bool), a callable,
    ``"predicted"``, or per-row targets: a 1-D integer NumPy array, or a
    list/tuple of ints, callables and ``"predicted"`` (their length is checked
    against the batch by :func:`row_targets`).

    Raises:
      TypeError: a single target that is none of these (a bool, a float, a string).
      ValueError: per-row targets of another rank or dtype, or with an entry
        that is not an int, a callable or ``"predicted"``.
    """
    if callable(target) or is_predicted(target):
        return
    if isinstance(target, np.ndarray) and target.ndim >= 1:
        if target.ndim != 1:
            raise ValueError(
                f"target as an array must have shape [N] (one class index per row), got shape {target.shape}"
            )
        if target.dtype.kind == "O":
            target = target.tolist()
        elif target.dtype.kind not in "iu":
            raise ValueError(
                f"target as an array must have an integer dtype (one class index per row), got dtype "
                f"{target.dtype}"
            )
        elif target.dtype.kind == "u" and target.size and target.max() > np.iinfo(np.int64).max:
            raise ValueError(f"target holds class index {target.max()}, expected a class index of the model")
        else:
            return
    if isinstance(target, (list, tuple)):
        for row, entry in enumerate(target):
            if not (callable(entry) or is_predicted(entry) or _is_class_index(entry)):
                raise ValueError(
                    f"target[{row}] must be a class index (int), a callable or 'predicted' (one target "
                    f"per row), got {type(entry).__name__} {entry!r:.60}"
                )
        return
    if not _is_class_index(target):
        raise TypeError(f"target must be {_TARGET_FORMS}, got {type(target).__name__}")


def _check_two_dimensional(output_shape: Sequence[int], what: str) -> None:
    if len(output_shape) != 2:
        raise ValueError(
            f"{what} needs a [batch, classes] model output, got shape {tuple(output_shape)}; "
            "pass a callable target instead"
        )


def check_class_index(target: int, output_shape: Sequence[int]) -> None:
    """Raises ValueError unless ``output_shape`` is ``[batch, classes]`` and ``target`` indexes a class."""
    check_target_type(target)
    _check_two_dimensional(output_shape, "a class-index target")
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

    ``call_model_args`` itself when it is an int, a callable, ``"predicted"``
    or per-row targets, its ``"target"`` entry when it is a dict, else
    ``default``.
    """
    if call_model_args is None:
        return default
    if isinstance(call_model_args, dict):
        return call_model_args.get("target", default)
    return call_model_args


class _SameObject:
    """A hashable key for an object: equal only to a key of the same object, and keeps it alive.

    Holding the object guarantees its ``id`` is not reused by another object
    while the key exists (keying by a bare ``id`` would risk that).
    """

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SameObject) and other.obj is self.obj


@dataclass(frozen=True, eq=False)
class RowTargets:
    """Per-row targets of one batch, grouped the way a framework computes them (see :func:`row_targets`).

    The value of the batch is ``concat([class values] + [group values])``
    reordered by ``position``:

    - ``classes``: ``[N]`` integers, ``outputs[i, classes[i]]`` for the rows
      with a class index (the other rows hold a copy of one of them, and their
      values are not used); None when no row has one.
    - ``groups``: ``(rule, rows)`` pairs, one per callable object (or for
      ``"predicted"``) with the ``[k]`` rows it explains: the rule is applied
      to ``outputs[rows]`` (that restriction of the batch), one scalar per row.
    - ``position``: ``[N]`` integers, where row i's value lies in that
      concatenation (class values first, all N of them, then each group's);
      None when every row has a class index.

    The arrays are NumPy integer arrays (or a framework's, e.g. JAX tracers:
    :meth:`with_arrays`); the rules are Python objects.
    """

    classes: Any = None
    groups: tuple[tuple[Any, Any], ...] = ()
    position: Any = None

    @property
    def size(self) -> int:
        """N, the number of rows."""
        return int((self.position if self.position is not None else self.classes).shape[0])

    @property
    def key(self) -> tuple[Any, ...]:
        """Hashable; equal for RowTargets that differ only in their arrays (a compiled function key)."""
        rules = tuple(rule if is_predicted(rule) else _SameObject(rule) for rule, _ in self.groups)
        return ("rows", self.classes is not None, self.position is not None, rules)

    @property
    def arrays(self) -> tuple[Any, Any, tuple[Any, ...]]:
        """``(classes, position, rows of each group)``: the data (the structure is :attr:`key`)."""
        return self.classes, self.position, tuple(rows for _, rows in self.groups)

    def with_arrays(self, arrays: tuple[Any, Any, tuple[Any, ...]]) -> RowTargets:
        """The same rules with other arrays of the same structure (e.g. a compiled function's tracers)."""
        classes, position, rows = arrays
        groups = tuple((rule, new_rows) for (rule, _), new_rows in zip(self.groups, rows, strict=True))
        return RowTargets(classes, groups, position)

    def class_rows(self) -> np.ndarray:
        """The rows with a class index, as a boolean mask (NumPy arrays only)."""
        if self.position is None:
            return np.ones(self.size, bool)
        return np.asarray(self.position) < self.size


def row_targets(target: Any, batch: int) -> Any:
    """``target`` for a batch of ``batch`` rows: per-row targets as a :class:`RowTargets`.

    Per-row targets that all name the same target (one class index, one
    callable object, all ``"predicted"``) come back as that single target; a
    target that is not per-row comes back unchanged.

    Raises:
      ValueError: per-row targets whose length is not ``batch``, or with a bad
        dtype, rank or entry (:func:`check_target_type`).
    """
    if isinstance(target, RowTargets):
        if target.size != batch:
            raise ValueError(f"target has {target.size} per-row entries, expected one per row ({batch})")
        return target
    if not is_per_row(target):
        return target
    check_target_type(target)
    if len(target) != batch:
        raise ValueError(
            f"target has {len(target)} per-row entries, expected one per row of the batch ({batch})"
        )
    if batch == 0:
        return RowTargets(classes=np.zeros(0, np.int64))
    if isinstance(target, np.ndarray) and target.dtype.kind in "iu":
        indices = target.astype(np.int64)
        return int(indices[0]) if (indices == indices[0]).all() else RowTargets(classes=indices)
    entries = list(target)
    class_rows = [row for row, entry in enumerate(entries) if _is_class_index(entry)]
    grouped: dict[Any, tuple[Any, list[int]]] = {}
    for row, entry in enumerate(entries):
        if not _is_class_index(entry):
            grouped.setdefault(PREDICTED if is_predicted(entry) else id(entry), (entry, []))[1].append(row)
    if not grouped:
        values = np.array([int(entry) for entry in entries], np.int64)
        return int(values[0]) if (values == values[0]).all() else RowTargets(classes=values)
    if not class_rows and len(grouped) == 1:
        return next(iter(grouped.values()))[0]
    classes: np.ndarray | None = None
    if class_rows:
        classes = np.full(batch, int(entries[class_rows[0]]), np.int64)
        classes[class_rows] = [int(entries[row]) for row in class_rows]
    position = np.arange(batch, dtype=np.int64)
    offset = batch if class_rows else 0
    groups = []
    for rule, rows in grouped.values():
        position[rows] = np.arange(offset, offset + len(rows))
        offset += len(rows)
        groups.append((rule, np.array(rows, np.int64)))
    return RowTargets(classes, tuple(groups), position)


def check_row_classes(target: RowTargets, n_classes: int) -> None:
    """Raises ValueError unless every class index of ``target`` (NumPy) is in ``[-n_classes, n_classes)``."""
    if target.classes is None:
        return
    classes = np.asarray(target.classes)
    bad = ((classes < -n_classes) | (classes >= n_classes)) & target.class_rows()
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"target[{row}] = {int(classes[row])} is out of range for a model with {n_classes} outputs: "
            f"expected a class index in [{-n_classes}, {n_classes})"
        )


class RowOps(NamedTuple):
    """A framework's array operations for per-row targets (NumPy's in :data:`NUMPY_ROW_OPS`).

    Every one must keep gradients flowing (a gather, whose gradient scatters back).
    """

    #: ``take_rows(values, rows)``: ``values[rows]`` along axis 0, ``rows`` an integer array.
    take_rows: Callable[[Any, Any], Any]
    #: ``take_classes(outputs, classes)``: ``outputs[i, classes[i]]`` for every row i (non-negative classes).
    take_classes: Callable[[Any, Any], Any]
    #: ``argmax(outputs)``: each row's top class, ``[N]`` integers.
    argmax: Callable[[Any], Any]
    #: ``concat(pieces)``: the ``[k]`` arrays end to end (types promoted as the framework does).
    concat: Callable[[list[Any]], Any]


NUMPY_ROW_OPS = RowOps(
    take_rows=lambda values, rows: values[np.asarray(rows)],
    take_classes=lambda outputs, classes: np.take_along_axis(outputs, np.asarray(classes)[:, None], 1)[:, 0],
    argmax=lambda outputs: np.argmax(outputs, axis=1),
    concat=np.concatenate,
)


def select_target(
    outputs: Any,
    target: Any,
    *,
    is_array: Callable[[Any], bool],
    flatten: Callable[[Any, int], Any],
    ops: RowOps | None = None,
) -> Any:
    """One scalar per row, ``outputs[:, target]`` or ``target(outputs)``: the rule of every adapter.

    A tuple or list of outputs means its first element. ``"predicted"``
    means each row's own top class, ``outputs[i, argmax(outputs[i])]``.
    Per-row targets (an integer array ``[N]``, a list/tuple of N targets, or
    a :class:`RowTargets`) explain row i through its own: class indices are
    gathered at once, a callable is applied to the rows that share it (the
    batch restricted to them) and its values scattered back. The framework
    hooks: ``is_array(value)`` says whether a callable target returned the
    framework's array type, ``flatten(selected, batch)`` reshapes its
    ``[batch]`` or ``[batch, 1]`` result to ``[batch]``, and ``ops`` are its
    array operations for ``"predicted"`` and per-row targets (NumPy's by
    default).

    Raises:
      ValueError: an output without a leading batch axis, a class index out
        of range or with an output that is not ``[batch, classes]``, a
        callable that does not return one scalar per example, or per-row
        targets whose length is not the batch's.
      TypeError: a target that is neither an integer nor a callable (nor
        ``"predicted"``, nor per-row targets).
    """
    ops = NUMPY_ROW_OPS if ops is None else ops
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]
    shape = getattr(outputs, "shape", None)
    if shape is None or len(shape) < 1:
        got = tuple(shape) if shape is not None else type(outputs).__name__
        raise ValueError(f"the model must return an array with a leading batch axis, got {got}")
    target = row_targets(target, shape[0])
    if not isinstance(target, RowTargets):
        return _select_one(outputs, tuple(shape), target, is_array, flatten, ops)
    pieces = []
    if target.classes is not None:
        _check_two_dimensional(shape, "a class-index target")
        if isinstance(target.classes, np.ndarray):
            check_row_classes(target, shape[1])
        pieces.append(ops.take_classes(outputs, target.classes % shape[1]))
    for rule, rows in target.groups:
        restricted = ops.take_rows(outputs, rows)
        rows_shape = (int(rows.shape[0]), *tuple(shape)[1:])
        pieces.append(_select_one(restricted, rows_shape, rule, is_array, flatten, ops))
    if target.position is None:
        return pieces[0]
    return ops.take_rows(ops.concat(pieces), target.position)


def _select_one(
    outputs: Any,
    shape: tuple[int, ...],
    target: Any,
    is_array: Callable[[Any], bool],
    flatten: Callable[[Any, int], Any],
    ops: RowOps,
) -> Any:
    """One scalar per row of ``outputs`` (of ``shape``) for one target shared by every row."""
    batch = shape[0]
    if callable(target):
        selected = target(outputs)
        returned = tuple(selected.shape) if is_array(selected) else None
        check_one_scalar_per_example(returned, type(selected).__name__, batch)
        return flatten(selected, batch)
    if target is TOP_CLASS or is_predicted(target):
        _check_two_dimensional(shape, "a 'predicted' target")
        if shape[1] < 1:
            raise ValueError("a 'predicted' target needs a model output with at least one class, got 0")
        top = ops.argmax(outputs)
        return top if target is TOP_CLASS else ops.take_classes(outputs, top)
    check_class_index(target, shape)
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

    The target (the default one, or ``call_model_args``: a target, or a dict
    with a ``"target"`` entry) is a class index, a callable, ``"predicted"``
    (each row's own top class; the output must be ``[N, classes]``) or per-row
    targets: an integer array ``[N]``, or a list/tuple of N ints, callables or
    ``"predicted"``, N the batch's length, row i explained through its own
    (:func:`select_target`).

    The batch scheduler's protocol (see the module docstring), marked by
    :attr:`SUPPORTS_ROW_TARGETS`: :meth:`pack_call_model_args` turns one
    ``call_model_args`` per row of a packed batch into one for the whole
    batch, and :meth:`resolve_call_model_args` replaces every ``"predicted"``
    target of a list of examples by that example's own top class.
    """

    #: This ``call_model_function`` takes per-row targets and has ``pack_call_model_args`` and
    #: ``resolve_call_model_args``: the batch scheduler may pack rows of examples with different targets.
    SUPPORTS_ROW_TARGETS: ClassVar[bool] = True
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
        """The target's values for the batch, one per example (no gradients).

        ``target`` may be :data:`TOP_CLASS`: each row's top class (integers).
        """

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

        ``call_model_args`` overrides the target: an int, a callable,
        ``"predicted"``, per-row targets of length N, or a dict with a
        ``"target"`` entry.
        """
        keys = self._checked_keys(expected_keys)
        target = target_from_call_model_args(call_model_args, self.target)
        check_target_type(target)
        inputs = self.convert(x_value_batch)
        if is_per_row(target):
            target = row_targets(target, _batch_length(inputs))
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

    # ---- the batch scheduler's protocol ----------------------------------------

    def pack_call_model_args(self, row_args: Sequence[Any]) -> Any:
        """One ``call_model_args`` for a packed batch, from one per row.

        Args:
          row_args: for each row of the batch, the ``call_model_args`` a call
            on that row alone would get: None (the default target), an int, a
            callable, ``"predicted"`` (that row's own top class), or a dict
            with a ``"target"`` entry (its other entries must be equal in
            every row: dicts without them, and the other forms, have none).

        Returns:
          ``call_model_args`` with which a call on the packed batch answers
          row i as a call with ``row_args[i]`` would: ``row_args[0]`` itself
          when every row passes the same object, else a dict with the rows'
          other entries and ``"target"``: the one target all rows share, an
          integer array when all are class indices, or a list of per-row
          targets.

        Raises:
          ValueError: no rows, a row whose target is itself per-row, or dict
            entries other than ``"target"`` that differ between rows.
          TypeError: a row's target that is not a target (:func:`check_target_type`).
        """
        rows = list(row_args)
        if not rows:
            raise ValueError("row_args must hold one call_model_args per row of the batch, got none")
        targets = []
        extras: dict[Any, Any] | None = None
        same = all(arg is rows[0] for arg in rows)
        for row, arg in enumerate(rows[:1] if same else rows):
            target = target_from_call_model_args(arg, self.target)
            if is_per_row(target):
                raise ValueError(
                    f"row_args[{row}] must give its row one target (an int, a callable or 'predicted'), "
                    f"got per-row targets ({type(target).__name__} of length {len(target)})"
                )
            check_target_type(target)
            targets.append(target)
            own = dict(arg) if isinstance(arg, dict) else {}
            own.pop("target", None)
            if extras is None:
                extras = own
            elif not _same_entries(extras, own):
                raise ValueError(
                    "the call_model_args of packed rows must have equal entries other than 'target': "
                    f"expected those of row_args[0], {_short(extras)}, got row_args[{row}] {_short(own)}"
                )
        if same:
            return rows[0]
        first = targets[0]
        if all(_same_target(target, first) for target in targets):
            packed: Any = first
        elif all(_is_class_index(target) for target in targets):
            packed = np.array([int(target) for target in targets], np.int64)
        else:
            packed = targets
        return {**(extras or {}), "target": packed}

    def resolve_call_model_args(
        self, x_values: np.ndarray | Sequence[Any], example_args: Sequence[Any], batch_size: int
    ) -> list[Any]:
        """Every example's ``"predicted"`` target replaced by that example's top class.

        Args:
          x_values: the examples, ``[N, ...]`` (or a sequence of N arrays).
          example_args: one ``call_model_args`` per example.
          batch_size: the most examples in one forward pass.

        Returns:
          ``example_args`` as a list, where an example whose target is
          ``"predicted"`` (the default target, or an override: the string, or
          a dict whose ``"target"`` it is) gets its top class instead, an int
          (in a copy of its dict, other entries kept): the argmax of the
          model's output for the example itself, found with forward passes of
          at most ``batch_size`` examples (only those examples). The others
          are the objects given.

        Raises:
          ValueError: ``example_args`` of another length than ``x_values``, or
            a ``batch_size`` that is not a positive integer.
        """
        args = list(example_args)
        if len(args) != len(x_values):
            raise ValueError(
                f"example_args must hold one call_model_args per example ({len(x_values)}), got {len(args)}"
            )
        if not _is_class_index(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        todo = [
            i for i, arg in enumerate(args) if is_predicted(target_from_call_model_args(arg, self.target))
        ]
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            classes = self.predicted_classes(np.stack([np.asarray(x_values[i]) for i in chunk]))
            for i, top in zip(chunk, classes, strict=True):
                args[i] = {**args[i], "target": int(top)} if isinstance(args[i], dict) else int(top)
        return args

    def predicted_classes(self, x_value_batch: Any) -> np.ndarray:
        """Each example's top class, the argmax of its output row, ``[N]`` integers (one forward pass)."""
        inputs = self.convert(x_value_batch)
        with self.holding(), call_token():
            top = self.to_numpy(self.forward(inputs, TOP_CLASS))
        return np.asarray(top).astype(np.int64).reshape(-1)

    # ---- internals ---------------------------------------------------------------

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


def _batch_length(inputs: Any) -> int:
    """The leading axis of a converted batch; ValueError without one."""
    shape = getattr(inputs, "shape", None)
    if shape is None or len(shape) < 1:
        raise ValueError(f"x_value_batch must have a leading batch axis, got {shape}")
    return int(shape[0])


def _same_target(target: Any, other: Any) -> bool:
    """The same single target: one object, or equal class indices (or both ``"predicted"``)."""
    if target is other:
        return True
    if _is_class_index(target) and _is_class_index(other):
        return int(target) == int(other)
    return is_predicted(target) and is_predicted(other)


def _same_value(value: Any, other: Any) -> bool:
    if value is other:
        return True
    try:
        return bool(value == other)
    except (TypeError, ValueError):  # arrays: no single truth value
        try:
            return bool(np.array_equal(value, other))
        except (TypeError, ValueError):
            return False


def _same_entries(entries: dict[Any, Any], other: dict[Any, Any]) -> bool:
    return entries.keys() == other.keys() and all(_same_value(entries[key], other[key]) for key in entries)


def _short(entries: dict[Any, Any]) -> str:
    text = repr(entries)
    return text if len(text) <= 120 else text[:117] + "..."
