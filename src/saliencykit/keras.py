"""Keras adapter: a ready ``call_model_function`` from a Keras 3 model (TensorFlow backend).

>>> import saliencykit.core as saliency
>>> from saliencykit.keras import make_call_model_function
>>> call = make_call_model_function(model, target=285, layer="Conv_1",
...                                 preprocess=lambda x: x / 127.5 - 1)
>>> mask = saliency.IntegratedGradients().GetMask(image, call, x_steps=25, batch_size=25)

Keras models are channel-last (``N x H x W x C``) already, the convention of
every method in :mod:`saliencykit.core`, so the NumPy batch goes to the model
as it is: no axis is moved. It is converted to the model's input dtype
(``float32`` for nearly every model) and the gradients are taken, with a plain
eager :class:`tf.GradientTape`, with respect to that converted input, so any
``preprocess`` (scaling from [0, 255], normalisation) is differentiated
through. Only the keys asked for are computed: ``OUTPUT_LAYER_VALUES`` alone is
one forward pass without a tape. The model always runs with ``training=False``
by default (dropout off, batch-normalisation statistics frozen); its weights and
``trainable`` flags are never touched, and the tape watches the input only. The
caller's NumPy batch is never written to (TensorFlow copies it).

The adapter mirrors :mod:`saliencykit.torch`: the same arguments (less the
PyTorch-only layout and device ones), the same keys, the same target rules
(:func:`select_target`) and the same errors.

Guided backpropagation (``GUIDED_INPUT_OUTPUT_GRADIENTS``) temporarily replaces
the ReLU activations of the model's layers during a call (see
:func:`_guided_relus`, private) by wrappers that are guided only for the guided
call's own forward pass; the model is restored when the last guided call in
flight ends, even on an error.

Calls are thread-safe, also several threads on one model (through one or
several adapters): a plain-gradient call running beside a guided one gets plain
gradients. With ``training=True`` (dropout on, batch statistics), the
non-trainable variables a training-mode call updates (batch-normalisation
moving statistics; not the dropout seed generators) are restored when the last
such call ends, and calls with ``training=False`` on the same layers wait for
them (and the other way round), so they never see half-updated statistics.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from . import _adapter
from ._adapter import Adapter, Gradients, Holds
from .core.base import CallModelFunction

__all__ = ["make_call_model_function", "select_target"]

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"saliencykit.keras needs Keras on the TensorFlow backend, but Keras runs on "
        f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras"
    )

#: A class index, a callable, ``"predicted"``, or per-row targets (an integer array, a list/tuple).
Target = int | str | Callable[[tf.Tensor], tf.Tensor] | np.ndarray | Sequence[Any]

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


def _concat(pieces: list[tf.Tensor]) -> tf.Tensor:
    return tf.concat([tf.cast(piece, pieces[0].dtype) for piece in pieces], axis=0)


#: The TensorFlow operations for ``"predicted"`` and per-row targets (gathers, so gradients flow).
_ROW_OPS = _adapter.RowOps(
    take_rows=lambda values, rows: tf.gather(values, rows),
    take_classes=lambda outputs, classes: tf.gather(outputs, classes, batch_dims=1),
    argmax=lambda outputs: tf.argmax(outputs, axis=1),
    concat=_concat,
)


def select_target(outputs: tf.Tensor | Sequence[tf.Tensor], target: Target) -> tf.Tensor:
    """Returns one scalar per example: ``outputs[:, target]`` or ``target(outputs)``.

    The same rules as :func:`saliencykit.torch.select_target`: a model with
    several outputs (a tuple or list) is explained through its first one;
    ``"predicted"`` is each row's own top class; per-row targets explain row
    i through its own, gathered in TensorFlow.

    Args:
      outputs: the model's output batch, ``[N, classes]`` for a class index
        (or ``[N, ...]`` for a callable), or a tuple/list whose first element is.
      target: a class index in ``[-classes, classes)``, a callable mapping the
        output batch to a tensor of shape ``[N]`` or ``[N, 1]``,
        ``"predicted"``, or per-row targets: an integer array ``[N]`` or a
        list/tuple of N of those (a callable gets the rows that share it).

    Returns:
      A tensor of shape ``[N]``.

    Raises:
      ValueError: a class index out of range, an output that is not
        ``[batch, classes]`` for an index, a callable that does not return
        one scalar per example, or per-row targets of the wrong length.
      TypeError: a target that is neither an integer nor a callable.
    """
    return _adapter.select_target(
        outputs,
        target,
        is_array=tf.is_tensor,
        flatten=lambda selected, batch: tf.reshape(selected, [batch]),
        ops=_ROW_OPS,
    )


# --------------------------------------------------------------------------
# Layers and functional graphs.
# --------------------------------------------------------------------------


def _all_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer inside ``model``, nested models and layers included (not ``model`` itself)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def _find_layer(model: keras.layers.Layer, layer: keras.layers.Layer | str) -> keras.layers.Layer:
    """Returns the layer of ``model`` given as an object or a name (nested layers included).

    Raises:
      ValueError: no such layer, or a name shared by several layers.
      TypeError: ``layer`` is neither a Keras layer nor a string.
    """
    named = [(candidate.name, candidate) for candidate in _all_layers(model)]
    return _adapter.find_layer(layer, named, keras.layers.Layer, kind="a Keras layer", member="layer")


def _graph_inputs_outputs(model: keras.layers.Layer) -> tuple[list[Any], list[Any]] | None:
    """The symbolic inputs and outputs of a functional or built Sequential model, else ``None``."""
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError, TypeError):
        return None
    return (inputs, outputs) if inputs and outputs else None


def _input_dtype(model: keras.layers.Layer) -> tf.DType:
    """The dtype the model's input expects: its ``keras.Input``'s, else Keras' float type.

    Raises:
      ValueError: a functional model with more than one input.
    """
    graph = _graph_inputs_outputs(model)
    if graph is None:
        return tf.as_dtype(keras.backend.floatx())
    inputs, _ = graph
    if len(inputs) != 1:
        raise ValueError(
            f"the model has {len(inputs)} inputs; this adapter explains single-input models "
            "(wrap the model in one that takes a single tensor)"
        )
    return tf.as_dtype(inputs[0].dtype)


def _layer_and_output_model(model: keras.layers.Layer, layer: keras.layers.Layer) -> keras.Model:
    """Builds ``keras.Model(model.inputs, [layer.output, model.output])``: one forward pass, both tensors.

    The new model shares ``model``'s layers and weights (nothing is copied).

    Raises:
      ValueError: the model is not a functional graph (a subclassed model, an
        unbuilt Sequential) or the layer's output is not reachable from the
        model's input in that graph (e.g. a layer inside a nested model).
    """
    graph = _graph_inputs_outputs(model)
    if graph is None:
        raise ValueError(
            f"layer= needs a functional or built Sequential model: a {type(model).__name__} has no "
            "symbolic graph in which the output of layer "
            f"{layer.name!r} can be reached (subclassed models compute eagerly). Build the model with "
            "keras.Input and the functional API, or call/build a Sequential model first"
        )
    inputs, outputs = graph
    model_output = outputs[0] if len(outputs) == 1 else outputs
    keras_error: Exception | None = None
    for layer_output in _symbolic_outputs(layer):
        try:
            return keras.Model(inputs[0], [layer_output, model_output])
        except ValueError as error:  # this call of the layer is not in the model's graph
            keras_error = error
    raise ValueError(
        f"the output of layer {layer.name!r} is not reachable from the model's input in its "
        "functional graph (a layer inside a nested model, or in a subclassed part of the model?); "
        "pass a layer of the outer graph (a nested model as a whole works) or rebuild the model "
        f"functionally. Keras said: {keras_error or 'the layer has no symbolic output'}"
    )


def _symbolic_outputs(layer: keras.layers.Layer) -> list[Any]:
    """The layer's symbolic output for each time it was called in a graph, first call first.

    A layer called several times (shared) has one output per call; a nested
    model's own ``output`` is its inner graph's, while the outputs of its calls
    are tensors of the outer graph, so those come first. The first output of a
    multi-output layer stands for the layer.
    """
    candidates = [node.outputs[0] for node in getattr(layer, "_inbound_nodes", []) if node.outputs]
    try:
        own_output = layer.output
    except (AttributeError, ValueError):
        own_output = None
    if isinstance(own_output, (list, tuple)):
        own_output = own_output[0] if own_output else None
    if own_output is not None and not any(own_output is candidate for candidate in candidates):
        candidates.append(own_output)
    return candidates


def _channels_last(values: np.ndarray, layer: keras.layers.Layer) -> np.ndarray:
    """Moves the channel axis of a ``data_format='channels_first'`` layer's array to the end (rank >= 3)."""
    if getattr(layer, "data_format", None) == "channels_first" and values.ndim >= 3:
        return np.moveaxis(values, 1, -1)
    return values


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


# --------------------------------------------------------------------------
# The adapter.
# --------------------------------------------------------------------------


class _KerasAdapter(Adapter):
    """The ``call_model_function`` of :func:`make_call_model_function` (see there)."""

    def __init__(
        self,
        model: keras.layers.Layer,
        target: Target,
        layer: keras.layers.Layer | str | None,
        preprocess: Callable[[tf.Tensor], tf.Tensor] | None,
        training: bool,
    ) -> None:
        self.model = model
        self.input_dtype = _input_dtype(model)
        self.layer = _find_layer(model, layer) if layer is not None else None
        super().__init__(target, has_layer=self.layer is not None)
        self.layer_model = _layer_and_output_model(model, self.layer) if self.layer is not None else None
        self.preprocess = preprocess
        self.training = training

    def convert(self, x_value_batch: Any) -> tf.Tensor:
        array = np.asarray(x_value_batch)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"x_value_batch must be a real numeric array, got dtype {array.dtype}")
        return tf.convert_to_tensor(array.astype(self.input_dtype.as_numpy_dtype, copy=False))

    def holding(self) -> contextlib.AbstractContextManager[Any]:
        return _holding(self.model, bool(self.training))

    def guided(self) -> contextlib.AbstractContextManager[Any]:
        return _guided_relus(self.model)

    def _layer_model(self) -> keras.Model:
        """The model answering (layer values, outputs) (the template asks for it only with a layer)."""
        if self.layer_model is None:
            raise ValueError(self.layer_needed)
        return self.layer_model

    def to_numpy(self, value: tf.Tensor) -> np.ndarray:
        return value.numpy()

    def layer_to_numpy(self, value: tf.Tensor) -> np.ndarray:
        return _channels_last(value.numpy(), self.layer)

    def forward(self, inputs: tf.Tensor, target: Target) -> tf.Tensor:
        return select_target(self.model(self._preprocessed(inputs), training=self.training), target)

    def gradients(
        self, inputs: tf.Tensor, target: Target, *, want_input: bool, want_layer: bool
    ) -> Gradients:
        if not self.input_dtype.is_floating:
            raise ValueError(
                f"the model's input dtype is {self.input_dtype.name}: gradients with respect to an integer "
                "input do not exist (integer-only model)"
            )
        layer_values = None
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(inputs)
            model_input = self._preprocessed(inputs)
            if want_layer:
                layer_values, outputs = self._layer_model()(model_input, training=self.training)
            else:
                outputs = self.model(model_input, training=self.training)
            selected = select_target(outputs, target)
        if not selected.dtype.is_floating:
            raise ValueError(
                f"the explained output has dtype {selected.dtype.name}: it does not depend "
                "differentiably on the input (is the model or target cast to integers?)"
            )
        sources = [inputs] * want_input + [layer_values] * want_layer
        gradients = iter(tape.gradient(selected, sources))
        input_gradients = next(gradients) if want_input else None
        layer_gradients = next(gradients) if want_layer else None
        return Gradients(selected, input_gradients, layer_values, layer_gradients)

    def _preprocessed(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.preprocess(inputs) if self.preprocess is not None else inputs


def make_call_model_function(
    model: keras.layers.Layer,
    target: Target,
    *,
    layer: keras.layers.Layer | str | None = None,
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None,
    training: bool = False,
) -> CallModelFunction:
    """Returns a ``call_model_function`` for a Keras 3 model on the TensorFlow backend.

    Args:
      model: a functional, Sequential or subclassed ``keras.Model`` (any Keras
        layer works) taking one channel-last tensor; its weights and
        ``trainable`` flags are never changed.
      target: what is explained: a class index (``outputs[:, target]``), a
        callable mapping the output batch to one scalar per example (a softmax
        probability, a regression output), ``"predicted"`` (each row's own top
        class), or per-row targets: an integer array ``[N]`` or a list/tuple
        of N ints, callables or ``"predicted"``, N the batch's length (row i
        through its own: ``outputs[i, t_i]``; a callable gets the rows that
        share it). ``call_model_args`` overrides it per call: any of these, or
        a dict with a ``"target"`` entry.
      layer: the layer (or its name, nested layers included) whose output
        Grad-CAM uses; needed only for the ``CONVOLUTION_*`` keys, which come
        back channel-last (``N x ... x C``; a ``data_format='channels_first'``
        layer's channel axis is moved to the end). The model must be a
        functional graph (functional API, or a built Sequential) in which the
        layer's output is reachable from the model's input (a layer called
        several times: its first call in that graph; a nested model as a
        whole is fine, a layer inside a nested model is not): a model
        returning both is built once, here, so a call is one forward pass.
      preprocess: applied to the input tensor before the model (e.g.
        ``lambda x: x / 127.5 - 1``), inside the tape: gradients are with
        respect to the raw NumPy batch.
      training: the ``training`` argument of every model call; the default
        ``False`` runs dropout and batch normalisation in inference mode, and
        changes no variable. ``True`` (e.g. Monte-Carlo dropout) updates the
        batch-normalisation moving statistics during a call; they are restored
        when the last such call in flight ends (see the module docstring).

    Returns:
      A thread-safe
      ``call_model_function(x_value_batch, call_model_args=None, expected_keys=None)``
      taking a NumPy batch ``[N, ...]`` (channel-last, no axis moved; cast to
      the model's input dtype) and answering, as NumPy arrays,
      ``INPUT_OUTPUT_GRADIENTS`` (the batch's shape), ``OUTPUT_LAYER_VALUES``
      (the target, shape ``[N]``), ``CONVOLUTION_LAYER_VALUES`` and
      ``CONVOLUTION_OUTPUT_GRADIENTS`` (``[N, ..., C]``) and
      ``GUIDED_INPUT_OUTPUT_GRADIENTS`` (the batch's shape; see
      the module docstring), exactly the keys asked for; ``expected_keys=None``
      means ``[INPUT_OUTPUT_GRADIENTS]``. It is an instance of the shared
      template, :class:`saliencykit._adapter.Adapter`, with its batch-scheduler
      methods ``pack_call_model_args`` and ``resolve_call_model_args``.

    Raises:
      TypeError: at construction for a model that is not a Keras layer or a
        layer of the wrong type.
      ValueError: at construction for a layer not in the model or not
        reachable in its functional graph, or a multi-input model; in calls
        for a bad target, an unknown key, a ``CONVOLUTION_*`` key without
        ``layer``, a guided call on a model without ReLUs, or a model whose
        output does not depend differentiably on its input.
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"model must be a Keras model (keras.Model or keras.layers.Layer), got {type(model).__name__}"
        )
    return _KerasAdapter(model, target, layer, preprocess, training)
