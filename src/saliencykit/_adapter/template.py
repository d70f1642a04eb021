"""The template: :class:`Adapter`, the ``call_model_function`` every framework adapter is, and its keys.

Calling one checks the keys (:func:`checked_keys`: which are known, which need
a backward pass, which need the Grad-CAM layer) and the target
(:mod:`.targets`), converts the batch once, holds the model and, under a fresh
call token (:mod:`.holds`), runs the passes the keys need: one gradient pass
for :data:`GRADIENT_KEYS` (with ``OUTPUT_LAYER_VALUES`` from the same pass), a
forward pass only for ``OUTPUT_LAYER_VALUES`` alone, a separate guided pass for
``GUIDED_INPUT_OUTPUT_GRADIENTS``. It returns exactly the keys asked for, the
gradients that must exist, as NumPy arrays.

A framework supplies only the rest, as a subclass of :class:`Adapter`:
``convert`` (NumPy batch -> framework input), ``forward`` (the target's values),
``gradients`` (the target's values and the gradients asked for, as a
:class:`Gradients`), ``to_numpy`` (and ``layer_to_numpy`` for a layer whose
channel axis is not last), and optionally ``holding`` (the model's mode for a
call) and ``guided`` (its guided-ReLU context). ``tests/test_adapter_template.py``
builds a complete adapter for a NumPy model in about thirty lines. For
per-row targets it also passes its array operations to :func:`.targets.select_target`
(:class:`.targets.RowOps`: take rows, take one class per row, argmax, concatenate;
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
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np

from ..core import base as _keys
from .holds import call_token
from .targets import (
    TOP_CLASS,
    _is_class_index,
    check_target_type,
    is_per_row,
    is_predicted,
    row_targets,
    target_from_call_model_args,
)

# --------------------------------------------------------------------------
# Keys.
# --------------------------------------------------------------------------

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


def checked_keys(expected_keys: Sequence[str] | None) -> list[str]:
    """``expected_keys`` as a list (default ``[INPUT_OUTPUT_GRADIENTS]``); ValueError for unknown keys."""
    keys = list(expected_keys) if expected_keys is not None else [INPUT_GRADIENTS]
    unknown = [key for key in keys if key not in KNOWN_KEYS]
    if unknown:
        raise ValueError(f"unknown expected_keys {unknown}; this adapter answers {list(KNOWN_KEYS)}")
    return keys


# --------------------------------------------------------------------------
# The template.
# --------------------------------------------------------------------------

#: A framework's Grad-CAM layer, or what stands for it (:meth:`Adapter.required_layer`).
_LayerT = TypeVar("_LayerT")


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

    def required_layer(self, layer: _LayerT | None) -> _LayerT:
        """``layer``, the framework's Grad-CAM layer (or what stands for it); ValueError when None.

        The template asks a framework for ``CONVOLUTION_*`` keys only when the
        adapter has a layer; this says so to the type checker, with
        :attr:`layer_needed` as the error otherwise.
        """
        if layer is None:
            raise ValueError(self.layer_needed)
        return layer

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
