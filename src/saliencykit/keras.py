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
:func:`_guided_relus`, private, in :mod:`saliencykit._keras_state`) by
wrappers that are guided only for the guided call's own forward pass; the
model is restored when the last guided call in flight ends, even on an error.

Calls are thread-safe, also several threads on one model (through one or
several adapters): a plain-gradient call running beside a guided one gets plain
gradients. With ``training=True`` (dropout on, batch statistics), the
non-trainable variables a training-mode call updates (batch-normalisation
moving statistics; not the dropout seed generators) are restored when the last
such call ends, and calls with ``training=False`` on the same layers wait for
them (and the other way round), so they never see half-updated statistics
(:func:`_holding`, private, in :mod:`saliencykit._keras_state`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from . import _adapter
from ._adapter import Adapter, Gradients
from ._keras_randomise import randomisation_layers, randomised_copy, randomised_models
from ._keras_state import RELU_FUNCTIONS as RELU_FUNCTIONS  # the ReLUs made guided, named here as before
from ._keras_state import _all_layers, _guided_relus, _holding
from .core.base import CallModelFunction

__all__ = [
    "make_call_model_function",
    "randomisation_layers",
    "randomised_copy",
    "randomised_models",
    "select_target",
]

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"saliencykit.keras needs Keras on the TensorFlow backend, but Keras runs on "
        f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras"
    )

#: A class index, a callable, ``"predicted"``, or per-row targets (an integer array, a list/tuple).
Target = int | str | Callable[[tf.Tensor], tf.Tensor] | np.ndarray | Sequence[Any]


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
                layer_model = self.required_layer(self.layer_model)
                layer_values, outputs = layer_model(model_input, training=self.training)
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
      target: what is explained, one scalar per example: a class index
        (``outputs[:, target]``), a callable, ``"predicted"`` (each row's top
        class) or per-row targets, as :func:`select_target` takes them;
        ``call_model_args`` overrides it per call (one of these, or a dict
        with a ``"target"`` entry).
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
