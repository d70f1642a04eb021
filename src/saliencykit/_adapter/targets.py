"""Targets: what a call explains, and the one rule that turns a model output into one scalar per row.

A target is a class index, a callable, ``"predicted"`` (each row's own top
class) or per-row targets (an integer array ``[N]``, or a list/tuple of N
ints, callables or ``"predicted"``: row i is explained through its own),
overridden per call through ``call_model_args``
(:func:`target_from_call_model_args`). :func:`check_target_type` checks one
before the batch is known; :func:`row_targets` groups per-row targets for a
batch (:class:`RowTargets`); :func:`select_target` is the rule every adapter
applies, with the framework's array operations (:class:`RowOps`, NumPy's by
default), so that row i's value is gathered in the framework, with no Python
loop over rows.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

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
