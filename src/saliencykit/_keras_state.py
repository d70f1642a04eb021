"""The Keras models being called: the layers a guided call swaps, and what ``training=True`` calls change.

Guided backpropagation swaps the ReLUs of the model's layers for wrappers that
are guided only in the guided call's own forward pass (:func:`_guided_relus`);
``training=True`` calls save and restore the non-trainable variables they
update (:func:`_holding`). Both hold the layers per call in flight
(:class:`saliencykit._adapter.Holds`): the first call in saves, the last call
out restores, and calls of conflicting kinds wait for each other. Private to
:mod:`saliencykit.keras`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ._adapter import Holds

#: Activation functions whose backward pass guided backpropagation changes
#: when a layer holds them as its ``activation`` (``Dense(..., activation="relu")``,
#: ``Conv2D(..., activation="relu")``, ``Activation("relu")``, ``Activation(tf.nn.relu)``).
RELU_FUNCTIONS: tuple[Callable[..., Any], ...] = (
    keras.activations.relu,
    keras.activations.relu6,
    keras.ops.relu,
    keras.ops.relu6,
    tf.nn.relu,
    tf.nn.relu6,
)

_MISSING = object()


def _all_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer inside ``model``, nested models and layers included (not ``model`` itself)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


# --------------------------------------------------------------------------
# Guided backpropagation.
# --------------------------------------------------------------------------


@tf.custom_gradient
def _positive_gradient(tensor: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """Identity forward; backward lets only positive gradients through."""

    def gradient(upstream: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(upstream)

    return tf.identity(tensor), gradient


#: True while this thread (or task) runs a guided call's forward pass.
_GUIDED_NOW: contextvars.ContextVar[bool] = contextvars.ContextVar("saliencykit_keras_guided", default=False)


def _guided(function: Callable[..., tf.Tensor]) -> Callable[..., tf.Tensor]:
    """Wraps a ReLU (activation function or bound ``call``) so that its backward pass is guided.

    The wrapper is guided only inside a guided call (:data:`_GUIDED_NOW`): a
    call on the same model from another thread meanwhile gets the plain ReLU.
    The ReLU's own backward multiplies by ``(input > 0)``; clamping the gradient
    that reaches its output to ``>= 0`` makes that the guided rule.
    """

    def guided_function(inputs: tf.Tensor, *args: Any, **kwargs: Any) -> tf.Tensor:
        outputs = function(inputs, *args, **kwargs)
        return _positive_gradient(outputs) if _GUIDED_NOW.get() else outputs

    guided_function.__wrapped__ = function  # type: ignore[attr-defined]
    return guided_function


def _is_relu_activation(layer: keras.layers.Layer) -> bool:
    """Whether the layer's own ``activation`` attribute is one of :data:`RELU_FUNCTIONS`."""
    activation = vars(layer).get("activation", None)
    return activation is not None and any(activation is relu for relu in RELU_FUNCTIONS)


def _is_relu_layer(layer: keras.layers.Layer) -> bool:
    """Whether the layer is a ``keras.layers.ReLU`` without a negative slope (leaky ReLUs are not guided)."""
    return isinstance(layer, keras.layers.ReLU) and float(layer.negative_slope) == 0.0


#: The guided calls in flight on each swapped layer; the last one out restores the layer.
_SWAPS = Holds()


def _swap_in(layer: keras.layers.Layer) -> tuple[str, Any]:
    """Replaces the layer's ReLU (its ``activation``, or its ``call``) by the guided wrapper.

    Returns what :func:`_swap_out` needs: the attribute and its original value.
    """
    if _is_relu_activation(layer):
        attribute, original = "activation", layer.activation
    else:
        attribute, original = "call", vars(layer).get("call", _MISSING)
    setattr(layer, attribute, _guided(getattr(layer, attribute)))  # a bound method for "call"
    return attribute, original


def _swap_out(layer: keras.layers.Layer, saved: tuple[str, Any]) -> None:
    attribute, original = saved
    if original is _MISSING:
        delattr(layer, attribute)
    else:
        setattr(layer, attribute, original)


@contextlib.contextmanager
def _guided_relus(model: keras.layers.Layer) -> Iterator[int]:
    """Makes every ReLU of ``model`` guided for this thread's calls during the ``with`` block.

    Guided: the ReLU's backward pass lets through only positive gradients, and
    only where its forward input was positive (Springenberg et al. 2014). The
    ReLUs are the layers (nested ones included) whose ``activation`` is one of
    :data:`RELU_FUNCTIONS` (``Dense``/``Conv*`` with ``activation="relu"``,
    ``Activation("relu")``, relu6 too), whose activation is swapped, and the
    ``keras.layers.ReLU`` layers with ``negative_slope=0``, whose ``call`` is
    swapped. The swapped-in wrappers act only in the thread (or task) that
    runs the block; calls from other threads meanwhile get the plain ReLU.
    Concurrent blocks share the swaps, and the last one out restores every
    attribute, also when a block raises. A relu applied as a bare function
    inside a subclassed ``call`` cannot be reached and keeps its ordinary
    gradient.

    Args:
      model: a Keras layer or model; changed only inside the block.

    Yields:
      The number of ReLUs made guided.

    Raises:
      ValueError: the model has no ReLU that can be swapped.
    """

    def relus() -> list[keras.layers.Layer]:  # swapped already by a call in flight, or a ReLU
        return [
            layer
            for layer in _all_layers(model)
            if _SWAPS.users(layer) or _is_relu_activation(layer) or _is_relu_layer(layer)
        ]

    with _SWAPS.hold(relus, "guided", _swap_in, _swap_out) as swapped:
        if not swapped:
            raise ValueError(
                "guided backpropagation needs ReLU activations (layers with activation='relu' or "
                "relu6, keras.layers.Activation('relu'), keras.layers.ReLU); this model has none "
                "(a relu called as a function inside a subclassed call() cannot be swapped)"
            )
        reset = _GUIDED_NOW.set(True)
        try:
            yield len(swapped)
        finally:
            _GUIDED_NOW.reset(reset)


# --------------------------------------------------------------------------
# training=True calls: the variables they update are restored.
# --------------------------------------------------------------------------


#: The calls in flight on each layer; ``training=True`` and ``training=False`` calls exclude each other.
_TRAINING = Holds()


def _restorable_variables(layer: keras.layers.Layer) -> list[Any]:
    """The layer's own non-trainable variables, less the states of its random seed generators."""
    seeds = {
        id(value.state) for value in vars(layer).values() if isinstance(value, keras.random.SeedGenerator)
    }
    own = getattr(layer, "_non_trainable_variables", None)
    variables = list(own) if own is not None else []
    return [variable for variable in variables if id(variable) not in seeds]


def _snapshot(layer: keras.layers.Layer) -> list[tuple[Any, np.ndarray]]:
    return [(variable, np.array(variable.numpy(), copy=True)) for variable in _restorable_variables(layer)]


def _assign(layer: keras.layers.Layer, saved: list[tuple[Any, np.ndarray]]) -> None:
    for variable, value in saved:
        variable.assign(value)


def _holding(model: keras.layers.Layer, training: bool) -> contextlib.AbstractContextManager[Any]:
    """Registers a call with ``training`` on every layer of ``model`` for the block.

    Calls with ``training=True`` and ``training=False`` on a shared layer wait
    for each other; the first ``training=True`` call on a layer saves its
    non-trainable variables (:func:`_restorable_variables`) and the last one
    restores them (see :class:`saliencykit._adapter.Holds`).
    """
    layers = [model, *_all_layers(model)]
    if training:
        return _TRAINING.hold(layers, True, _snapshot, _assign)
    return _TRAINING.hold(layers, False)
