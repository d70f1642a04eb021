"""A ``call_model_function`` for a TensorFlow-1-style graph (placeholders and a session).

:func:`create_tf1_call_model_function` answers the keys of
:mod:`saliencykit.core` from ``session.run`` on the user's graph, so every core
method works on TF1 code. The gradient ops it needs are added to the graph
once per ``(graph, y, x)`` (and ``conv_layer``) and reused by every later
call and every later saliency object on the same tensors; each call runs only
the ops of the keys asked for (``OUTPUT_LAYER_VALUES`` alone is a forward
pass).

The session may be anything with a ``run`` method: a ``tf.compat.v1.Session``,
an ``InteractiveSession``, a ``MonitoredSession``, a debugging wrapper or any
other proxy. Whether ``y`` is differentiable with respect to ``x`` (or
``conv_layer``) is checked only when a gradient is asked for, so forward-only
methods (Occlusion) work with any ``y``.

The error messages of the reference library (``saliency.tf1``) are kept as
constants (:data:`MISSING_Y_ERROR_MESSAGE`,
:data:`MISSING_CONV_LAYER_ERROR_MESSAGE`); the errors raised for those cases
start with their text.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CallModelFunction,
)
from ._tensorflow import tf, tf1

__all__ = [
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "INPUT_OUTPUT_GRADIENTS",
    "MISSING_CONV_LAYER_ERROR_MESSAGE",
    "MISSING_Y_ERROR_MESSAGE",
    "OUTPUT_LAYER_VALUES",
    "GraphFinalizedError",
    "MissingTensorError",
    "NotDifferentiableError",
    "create_tf1_call_model_function",
]

#: The reference library's message (``saliency.tf1.utils``) for a key that needs ``y`` when no ``y``
#: was given; format it with the key. saliencykit's message starts with it.
MISSING_Y_ERROR_MESSAGE = "Cannot return key {} because no y was specified"
#: The reference library's message (``saliency.tf1.utils``) for a ``CONVOLUTION_*`` key asked for
#: without ``conv_layer``; format it with the key. saliencykit's message starts with it.
MISSING_CONV_LAYER_ERROR_MESSAGE = "Cannot return key {} because no conv_layer was specified"

#: The keys the graph's call_model_function answers.
KNOWN_KEYS = (
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
)

#: Gradients already added to a graph: graph -> {(y name, wrt name): gradient tensor name, or None
#: when ``y`` does not depend differentiably on ``wrt``}. Weak keys and names (not tensors, which
#: would reference their graph) as values, so a graph the user drops is not kept alive here.
_GRADIENT_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], str | None]] = (
    weakref.WeakKeyDictionary()
)
#: Serialises the building of gradient ops (graph construction is not thread-safe).
_GRADIENT_LOCK = threading.Lock()


class MissingTensorError(ValueError, RuntimeError):
    """A key was asked for whose tensor was not given (``conv_layer`` for the ``CONVOLUTION_*`` keys).

    A ``ValueError`` like every argument error of saliencykit, and a
    ``RuntimeError`` like the reference library's, so ``except`` clauses
    written for either keep working. The message starts with the reference's
    :data:`MISSING_CONV_LAYER_ERROR_MESSAGE` (or :data:`MISSING_Y_ERROR_MESSAGE`).
    """


class GraphFinalizedError(RuntimeError, ValueError):
    """Gradient ops are needed but the graph is finalized and does not hold them yet.

    A ``RuntimeError`` like TensorFlow's (and so the reference library's) "Graph
    is finalized and cannot be modified", and a ``ValueError`` like
    saliencykit's earlier versions raised.
    """


class NotDifferentiableError(ValueError, TypeError):
    """A gradient was asked for, but ``y`` does not depend differentiably on the tensor.

    A ``ValueError`` like every argument error of saliencykit, and a
    ``TypeError`` like the one the reference library's ``session.run(None)``
    raised in that case.
    """


def _is_tf_session(session: Any) -> bool:
    """Whether ``session`` is really a ``tf.compat.v1.Session`` (or ``InteractiveSession``).

    Its ``graph`` is then the graph it runs. Looks at the real type, not at
    ``__class__``, so a mock made with ``spec=session`` counts as a proxy.
    """
    return issubclass(type(session), (tf1.Session, tf1.InteractiveSession))


def check_graph_session_tensors(graph: Any, session: Any, **tensors: Any) -> None:
    """Checks that ``session`` runs ``graph`` and every named tensor belongs to it.

    Args:
      graph: must be a ``tf.Graph``.
      session: anything with a callable ``run`` (``tf.compat.v1.Session``,
        ``InteractiveSession``, ``MonitoredSession``, a debugging wrapper, a
        mock or any other proxy). Only a real ``tf.compat.v1.Session`` (or
        ``InteractiveSession``) is checked to run ``graph``: a proxy's
        ``graph`` attribute is not trusted, and never a reason to refuse it.
      **tensors: ``name=tensor`` pairs; ``None`` values are skipped.

    Raises:
      TypeError: ``graph`` is not a ``tf.Graph``, ``session`` has no callable
        ``run``, or a tensor is not a graph ``tf.Tensor``.
      ValueError: a ``tf.compat.v1.Session`` of another graph, or a tensor of
        another graph.
    """
    if not isinstance(graph, tf.Graph):
        raise TypeError(f"graph must be a tf.Graph, got {type(graph).__name__}")
    if not callable(getattr(session, "run", None)):
        raise TypeError(
            "session must be a tf.compat.v1.Session or any object with a callable run method, "
            f"got {type(session).__name__}"
        )
    if _is_tf_session(session) and session.graph is not graph:
        raise ValueError(
            "session must run graph, but it is a tf.compat.v1.Session of another tf.Graph "
            "(create it with tf.compat.v1.Session(graph=graph))"
        )
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if not isinstance(tensor, tf.Tensor) or not hasattr(tensor, "graph"):
            raise TypeError(f"{name} must be a tf.Tensor of graph, got {type(tensor).__name__} {tensor!r}")
        if tensor.graph is not graph:
            raise ValueError(
                f"{name} ({tensor.name}) must be a tensor of graph, but it belongs to another tf.Graph"
            )


def gradient_tensor(graph: Any, y: Any, wrt: Any, wrt_name: str) -> Any:
    """Returns the tensor ``d sum(y) / d wrt``, adding its ops to ``graph`` only the first time.

    The outcome is remembered per ``(graph, y, wrt)``, also when ``y`` is not
    differentiable with respect to ``wrt`` (``tf.gradients`` adds ops even
    then), so asking again adds nothing.

    Args:
      graph: the ``tf.Graph`` holding ``y`` and ``wrt``.
      y: the explained output tensor.
      wrt: the tensor to differentiate with respect to (same shape as the gradient).
      wrt_name: what ``wrt`` is called in error messages (``"x"``, ``"conv_layer"``).

    Raises:
      NotDifferentiableError: ``y`` does not depend differentiably on ``wrt``
        (a ``ValueError`` and a ``TypeError``).
      GraphFinalizedError: the graph is finalized and the gradient is not
        built yet (a ``RuntimeError`` and a ``ValueError``).
    """
    with _GRADIENT_LOCK:
        cache = _GRADIENT_CACHE.setdefault(graph, {})
        key = (y.name, wrt.name)
        if key not in cache:
            check_gradient_can_be_built(graph, y, wrt, wrt_name)
            with graph.as_default():
                (gradient,) = tf1.gradients(y, wrt)
                if isinstance(gradient, tf.IndexedSlices):
                    gradient = tf.convert_to_tensor(gradient)
            cache[key] = None if gradient is None else gradient.name
        name = cache[key]
    if name is None:
        raise NotDifferentiableError(
            f"y ({y.name}) does not depend differentiably on {wrt_name} ({wrt.name}): "
            f"tf.gradients returned None, so no gradient with respect to {wrt_name} can be computed "
            "(methods that only run y, such as Occlusion, still work)"
        )
    return graph.get_tensor_by_name(name)


def check_gradient_can_be_built(graph: Any, y: Any, wrt: Any, wrt_name: str) -> None:
    """Checks that ``d sum(y) / d wrt`` is in ``graph`` already, or can still be added to it.

    Raises:
      GraphFinalizedError: the graph is finalized and the gradient is not built
        yet (a ``RuntimeError``, as the reference raised, and a ``ValueError``).
    """
    if graph.finalized and (y.name, wrt.name) not in _GRADIENT_CACHE.get(graph, {}):
        raise GraphFinalizedError(
            f"Graph is finalized and cannot be modified: the gradient ops of y ({y.name}) with "
            f"respect to {wrt_name} ({wrt.name}) must be added to graph, which is finalized. Create "
            "the saliency objects before calling graph.finalize() (a MonitoredSession finalizes it)."
        )


def _try_gradient_tensor(graph: Any, y: Any, wrt: Any, wrt_name: str) -> None:
    """Builds ``d sum(y) / d wrt`` now if it can be built; errors wait for the first call that needs it."""
    try:
        gradient_tensor(graph, y, wrt, wrt_name)
    except (NotDifferentiableError, GraphFinalizedError):
        pass


def feed_dict_with_input(call_model_args: Any, x: Any, x_value_batch: np.ndarray) -> dict[Any, Any]:
    """Returns a new feed dict: the entries of ``call_model_args`` plus ``x: x_value_batch``.

    The caller's dict is never changed (the reference library adds ``x`` to it).
    An entry the caller gave for ``x`` itself (by tensor or by name) is replaced.

    Raises:
      TypeError: ``call_model_args`` is neither ``None`` nor a mapping.
    """
    if call_model_args is None:
        feed: dict[Any, Any] = {}
    elif isinstance(call_model_args, Mapping):
        feed = dict(call_model_args)
    else:
        raise TypeError(
            "call_model_args (the feed_dict) must be a dict mapping tensors to values or None, "
            f"got {type(call_model_args).__name__}"
        )
    feed.pop(x.name, None)
    feed[x] = x_value_batch
    return feed


def checked_expected_keys(
    expected_keys: Sequence[str] | None, known_keys: Sequence[str], default_key: str = INPUT_OUTPUT_GRADIENTS
) -> list[str]:
    """``expected_keys`` as a list (``None``: ``[default_key]``).

    Raises:
      ValueError: a key not in ``known_keys``.
    """
    keys = [default_key] if expected_keys is None else list(expected_keys)
    for key in keys:
        if key not in known_keys:
            hint = ""
            if key == GUIDED_INPUT_OUTPUT_GRADIENTS:
                hint = " (guided gradients come from saliencykit.tf1.GuidedBackprop)"
            raise ValueError(
                f"expected_keys holds {key!r}{hint}; this call_model_function answers {list(known_keys)}"
            )
    return keys


def create_tf1_call_model_function(
    graph: Any, session: Any, y: Any, x: Any, conv_layer: Any = None
) -> CallModelFunction:
    """Creates a ``call_model_function`` that runs a TF1 graph in ``session``.

    Args:
      graph: the ``tf.Graph`` of the model.
      session: what runs ``graph``, variables initialised: a
        ``tf.compat.v1.Session`` or anything with a callable
        ``run(fetches, feed_dict=...)`` (``MonitoredSession``, a debugging
        wrapper, a proxy); it is called with a list of fetches.
      y: the explained output, one scalar per example: shape ``[None]`` (or
        ``[batch]``, or ``[]`` for a batch of one), e.g. ``logits[:, class]``.
        Gradients are those of ``sum(y)``. May be ``None`` when only
        ``CONVOLUTION_LAYER_VALUES`` is asked for.
      x: the input tensor (usually a placeholder), batch dimension first.
      conv_layer: optional channel-last activation tensor ``[batch, ..., C]``,
        needed for the ``CONVOLUTION_*`` keys (Grad-CAM).

    The gradient ops are added to ``graph`` here when the graph is not
    finalized (and ``y`` is differentiable), otherwise at the first call that
    asks for a gradient; the errors about gradients are raised by that call.

    Returns:
      ``call_model_function(x_value_batch, call_model_args=None, expected_keys=None)``:
      feeds ``x_value_batch`` (``[N, ...]``) to ``x`` together with the entries
      of ``call_model_args`` (a feed dict: other placeholders, e.g. a class
      selector; it is copied, never changed), runs only the tensors of
      ``expected_keys`` (default ``[INPUT_OUTPUT_GRADIENTS]``) and returns
      ``{key: np.ndarray}``: ``INPUT_OUTPUT_GRADIENTS`` (``d sum(y) / dx``,
      the batch's shape), ``OUTPUT_LAYER_VALUES`` (``y``),
      ``CONVOLUTION_LAYER_VALUES`` (``conv_layer``) and
      ``CONVOLUTION_OUTPUT_GRADIENTS`` (``d sum(y) / d conv_layer``).

    Raises:
      TypeError: ``graph``, ``session`` or a tensor of the wrong type (here);
        ``call_model_args`` not a dict (in calls).
      ValueError: a tensor of another graph, or a ``tf.compat.v1.Session`` of
        another graph (here); an unknown key (in calls).
      MissingTensorError: a key asked for whose tensor was not given (in calls):
        ``conv_layer`` for the ``CONVOLUTION_*`` keys, ``y`` for the others.
        A ``ValueError`` and a ``RuntimeError``; the message starts with the
        reference's :data:`MISSING_CONV_LAYER_ERROR_MESSAGE` or
        :data:`MISSING_Y_ERROR_MESSAGE`.
      NotDifferentiableError: a gradient asked for when ``y`` does not depend
        differentiably on ``x`` or ``conv_layer`` (in calls); a ``ValueError``
        and a ``TypeError``.
      GraphFinalizedError: a gradient asked for that is not in the finalized
        ``graph`` (in calls); a ``RuntimeError`` and a ``ValueError``.
    """
    return _create_call_model_function(graph, session, y, x, conv_layer, ("x", "conv_layer"))


def _create_call_model_function(
    graph: Any, session: Any, y: Any, x: Any, conv_layer: Any, build_now: Sequence[str]
) -> CallModelFunction:
    """:func:`create_tf1_call_model_function`, adding now only the gradients with respect to ``build_now``.

    Args:
      graph, session, y, x, conv_layer: see :func:`create_tf1_call_model_function`.
      build_now: names among ``"x"`` and ``"conv_layer"``: the gradients of
        ``y`` with respect to them are added to ``graph`` now (when possible);
        the others only when a call asks for them (so a forward-only method
        adds no op to the user's graph).
    """
    check_graph_session_tensors(graph, session, y=y, x=x, conv_layer=conv_layer)
    wrt_of_name = {"x": x, "conv_layer": conv_layer}
    if y is not None:
        for name in build_now:
            if wrt_of_name[name] is not None:
                _try_gradient_tensor(graph, y, wrt_of_name[name], name)

    def fetch(key: str) -> Any:
        """The tensor to run for ``key``; raises the errors of keys that cannot be answered."""
        if key in (CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS) and conv_layer is None:
            raise MissingTensorError(
                MISSING_CONV_LAYER_ERROR_MESSAGE.format(key)
                + f": expected_keys asks for {key}, which needs conv_layer, but no conv_layer was given"
            )
        if key == CONVOLUTION_LAYER_VALUES:
            return conv_layer
        if y is None:
            raise MissingTensorError(
                MISSING_Y_ERROR_MESSAGE.format(key) + f": expected_keys asks for {key}, which needs y, "
                "but y is None"
            )
        if key == OUTPUT_LAYER_VALUES:
            return y
        if key == INPUT_OUTPUT_GRADIENTS:
            return gradient_tensor(graph, y, x, "x")
        return gradient_tensor(graph, y, conv_layer, "conv_layer")

    def call_model_function(
        x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Runs the graph on ``x_value_batch`` and returns the ``expected_keys``; see the factory."""
        keys = checked_expected_keys(expected_keys, KNOWN_KEYS)
        fetches = [fetch(key) for key in keys]
        feed = feed_dict_with_input(call_model_args, x, x_value_batch)
        values = session.run(fetches, feed_dict=feed)
        return dict(zip(keys, values, strict=True))

    return call_model_function
