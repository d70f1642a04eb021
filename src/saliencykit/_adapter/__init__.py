"""The template every framework adapter is built on (saliencykit.torch, .keras, .jax).

A ``call_model_function`` answers keys for a NumPy batch. What that takes is
the same in every framework, and lives here once, one concern per module:

- :mod:`.targets`: the target (a class index, a callable, ``"predicted"``,
  i.e. each row's own top class, or per-row targets: an integer array ``[N]``,
  or a list/tuple of N ints, callables or ``"predicted"``), overridden per call
  through ``call_model_args``, and the one rule (:func:`select_target`) that
  turns a model output into one scalar per row;
- :mod:`.layers`: the layer lookup by object or by name, with one "did you
  mean" rule;
- :mod:`.holds`: the state of models shared by concurrent calls
  (:class:`Holds`: reference-counted save/restore of every part a call
  changes, calls of conflicting kinds waiting for each other) and the
  per-call token (:func:`call_token`) that framework hooks use to act only on
  their own call's forward pass;
- :mod:`.template`: :class:`Adapter` itself (the keys: which are known, which
  need a backward pass, which need the Grad-CAM layer, and the dispatch; the
  answer: the gradients that must exist, converted back to NumPy, exactly the
  keys asked for) and the batch scheduler's protocol (``pack_call_model_args``,
  ``resolve_call_model_args``), described in its docstring.

A framework supplies only ``convert``, ``forward``, ``gradients``,
``to_numpy`` and optionally ``holding`` and ``guided``, as a subclass of
:class:`Adapter`. Every name of the parts is importable from here.
"""

from .holds import _CURRENT_CALL, Holds, _Hold, call_token, current_call
from .layers import find_layer
from .targets import (
    _TARGET_FORMS,
    NUMPY_ROW_OPS,
    PREDICTED,
    TOP_CLASS,
    RowOps,
    RowTargets,
    _check_two_dimensional,
    _is_class_index,
    _SameObject,
    _select_one,
    _TopClass,
    check_class_index,
    check_one_scalar_per_example,
    check_row_classes,
    check_target_type,
    is_per_row,
    is_predicted,
    row_targets,
    select_target,
    target_from_call_model_args,
)
from .template import (
    GRADIENT_KEYS,
    GUIDED_GRADIENTS,
    INPUT_GRADIENTS,
    KNOWN_KEYS,
    LAYER_GRADIENTS,
    LAYER_KEYS,
    LAYER_VALUES,
    NO_GRADIENT,
    OUTPUTS,
    Adapter,
    Gradients,
    _batch_length,
    _same_entries,
    _same_target,
    _same_value,
    _short,
    checked_keys,
)

# Private names too: the adapters and the tests import them from here, as before the split.
__all__ = [
    # template: keys
    "INPUT_GRADIENTS",
    "OUTPUTS",
    "LAYER_VALUES",
    "LAYER_GRADIENTS",
    "GUIDED_GRADIENTS",
    "GRADIENT_KEYS",
    "LAYER_KEYS",
    "KNOWN_KEYS",
    "NO_GRADIENT",
    "checked_keys",
    # targets
    "PREDICTED",
    "_TopClass",
    "TOP_CLASS",
    "_TARGET_FORMS",
    "is_predicted",
    "is_per_row",
    "_is_class_index",
    "check_target_type",
    "_check_two_dimensional",
    "check_class_index",
    "check_one_scalar_per_example",
    "target_from_call_model_args",
    "_SameObject",
    "RowTargets",
    "row_targets",
    "check_row_classes",
    "RowOps",
    "NUMPY_ROW_OPS",
    "select_target",
    "_select_one",
    # layers
    "find_layer",
    # holds
    "_CURRENT_CALL",
    "current_call",
    "call_token",
    "_Hold",
    "Holds",
    # template: the adapter
    "Gradients",
    "Adapter",
    "_batch_length",
    "_same_target",
    "_same_value",
    "_same_entries",
    "_short",
]
