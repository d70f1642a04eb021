"""A ``call_model_function`` for a TensorFlow-1-style graph (placeholders and a session).

:func:`create_tf1_call_model_function` answers the keys of
:mod:`saliencykit.core` from ``session.run`` on the user's graph, so every core
method works on TF1 code. The gradient ops it needs are added to the graph
once per ``(graph, y, x)`` (and ``conv_layer``) and reused by every later
call and every later saliency object on the same tensors; each call runs only
the ops of the keys asked for (``OUTPUT_LAYER_VALUES`` alone is a forward
pass).
"""

from __future__ import annotations

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
    "OUTPUT_LAYER_VALUES",
    "MissingTensorError",
    "create_tf1_call_model_function",
]

#: The keys the graph's call_model_function answers.
KNOWN_KEYS = (
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
)

#: Gradients already added to a graph: graph -> {(y name, wrt name): gradient tensor name}.
#: Weak keys and names (not tensors, which would reference their graph) as
#: values, so a graph the user drops is not kept alive here.
_GRADIENT_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], str]] = weakref.WeakKeyDictionary()


class MissingTensorError(ValueError, RuntimeError):
    """A key was asked for whose tensor was not given (``conv_layer`` for the ``CONVOLUTION_*`` keys).

    A ``ValueError`` like every argument error of saliencykit, and a
    ``RuntimeError`` like the reference library's, so ``except`` clauses
    written for either keep working.
    """


def check_graph_session_tensors(graph: Any, session: Any, **tensors: Any) -> None:
    """Checks that ``session`` runs ``graph`` and every named tensor belongs to it.

    Args:
      graph: must be a ``tf.Graph``.
      session: anything with a ``run`` method (``tf.compat.v1.Session``,
        ``InteractiveSession``, a monitored session); its ``graph``, when it
        has one, must be ``graph``.
      **tensors: ``name=tensor`` pairs; ``None`` values are skipped.

    Raises:
      TypeError: ``graph`` is not a ``tf.Graph``, ``session`` has no ``run``,
        or a tensor is not a graph ``tf.Tensor``.
      ValueError: the session or a tensor belongs to another graph.
    """
    if not isinstance(graph, tf.Graph):
        raise TypeError(f"graph must be a tf.Graph, got {type(graph).__name__}")
    if not callable(getattr(session, "run", None)):
        raise TypeError(
            f"session must be a tf.compat.v1.Session (with a run method), got {type(session).__name__}"
        )
    session_graph = getattr(session, "graph", graph)
    if session_graph is not graph:
        raise ValueError("session must run graph, but session.graph is another tf.Graph")
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

    Args:
      graph: the ``tf.Graph`` holding ``y`` and ``wrt``.
      y: the explained output tensor.
      wrt: the tensor to differentiate with respect to (same shape as the gradient).
      wrt_name: what ``wrt`` is called in error messages (``"x"``, ``"conv_layer"``).

    Raises:
      ValueError: ``y`` does not depend differentiably on ``wrt``, or the graph
        is finalized and the gradient is not built yet.
    """
    cache = _GRADIENT_CACHE.setdefault(graph, {})
    key = (y.name, wrt.name)
    if key in cache:
        return graph.get_tensor_by_name(cache[key])
    try:
        with graph.as_default():
            (gradient,) = tf1.gradients(y, wrt)
    except RuntimeError as error:  # "Graph is finalized and cannot be modified."
        raise ValueError(
            f"cannot add the gradient ops of y with respect to {wrt_name} to graph: {error} "
            "Create the saliency objects before calling graph.finalize()."
        ) from error
    if gradient is None:
        raise ValueError(
            f"y ({y.name}) does not depend differentiably on {wrt_name} ({wrt.name}): "
            "tf.gradients returned None"
        )
    if isinstance(gradient, tf.IndexedSlices):
        with graph.as_default():
            gradient = tf.convert_to_tensor(gradient)
    cache[key] = gradient.name
    return gradient


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
      session: a ``tf.compat.v1.Session`` running ``graph``, variables initialised.
      y: the explained output, one scalar per example: shape ``[None]`` (or
        ``[batch]``, or ``[]`` for a batch of one), e.g. ``logits[:, class]``.
        Gradients are those of ``sum(y)``.
      x: the input tensor (usually a placeholder), batch dimension first.
      conv_layer: optional channel-last activation tensor ``[batch, ..., C]``,
        needed for the ``CONVOLUTION_*`` keys (Grad-CAM).

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
      ValueError: a tensor of another graph, or ``y`` not differentiable with
        respect to ``x`` or ``conv_layer`` (here); an unknown key (in calls).
      MissingTensorError: a ``CONVOLUTION_*`` key asked for without
        ``conv_layer`` (in calls); a ``ValueError`` and a ``RuntimeError``.
    """
    check_graph_session_tensors(graph, session, y=y, x=x, conv_layer=conv_layer)
    fetch_of_key = {
        INPUT_OUTPUT_GRADIENTS: gradient_tensor(graph, y, x, "x"),
        OUTPUT_LAYER_VALUES: y,
    }
    if conv_layer is not None:
        fetch_of_key[CONVOLUTION_LAYER_VALUES] = conv_layer
        fetch_of_key[CONVOLUTION_OUTPUT_GRADIENTS] = gradient_tensor(graph, y, conv_layer, "conv_layer")

    def call_model_function(
        x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Runs the graph on ``x_value_batch`` and returns the ``expected_keys``; see the factory."""
        keys = checked_expected_keys(expected_keys, KNOWN_KEYS)
        missing = [key for key in keys if key not in fetch_of_key]
        if missing:
            raise MissingTensorError(
                f"expected_keys asks for {missing}, which need conv_layer, but no conv_layer was given"
            )
        feed = feed_dict_with_input(call_model_args, x, x_value_batch)
        return session.run({key: fetch_of_key[key] for key in keys}, feed_dict=feed)

    return call_model_function
