"""Small TF1-style graphs (``tf.compat.v1``, placeholders, sessions) shared by the tests of saliencykit.tf1.

Every graph is built inside its own ``tf.Graph()`` context, so eager mode in
the rest of the test process is untouched. Weights come from a fixed NumPy
seed. :func:`hand_call_model_function` is an independent, hand-written
``call_model_function`` on the same session: the oracle the wrappers must
agree with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from saliencykit.core import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)

v1 = tf.compat.v1

IMAGE_SHAPE = (8, 8, 3)
NUM_CLASSES = 5
DEFAULT_CLASS = 2


@dataclasses.dataclass
class ConvNet:
    """A conv2d + relu + dense classifier on 8x8x3 images and its session.

    ``y = logits[:, class_index]`` where ``class_index`` is a placeholder with
    default :data:`DEFAULT_CLASS`: feeding it selects the explained class.
    """

    graph: Any
    session: Any
    x: Any
    y: Any
    conv: Any
    logits: Any
    class_index: Any

    def close(self) -> None:
        self.session.close()


def build_conv_net(seed: int = 0, batch: int | None = None, y_rank: int = 1) -> ConvNet:
    """Builds the :class:`ConvNet` with weights drawn from ``seed``.

    Args:
      seed: NumPy seed of the weights.
      batch: the static batch dimension of ``x`` (``None``: unknown).
      y_rank: 1 for ``y = logits[:, class]`` (``[batch]``), 2 for the whole
        ``logits`` (``[batch, classes]``, a wrong ``y`` for most methods).

    The conv kernel and the dense weights are resource variables, the conv
    bias a ref variable, so both kinds are exercised.
    """
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, (batch, *IMAGE_SHAPE), name="images")
        kernel = v1.get_variable(
            "conv/kernel", initializer=rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32)
        )
        bias = v1.Variable(rng.normal(0, 0.1, 4).astype(np.float32), name="conv/bias", use_resource=False)
        conv = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=1, padding="SAME") + bias, name="conv/relu")
        weights = v1.get_variable("dense/weights", initializer=rng.normal(0, 0.2, (8 * 8 * 4, NUM_CLASSES)))
        dense_bias = v1.get_variable("dense/bias", initializer=rng.normal(0, 0.1, NUM_CLASSES))
        flat = tf.reshape(conv, (-1, 8 * 8 * 4))
        logits = tf.matmul(flat, tf.cast(weights, tf.float32)) + tf.cast(dense_bias, tf.float32)
        class_index = v1.placeholder_with_default(tf.constant(DEFAULT_CLASS), (), name="class_index")
        y = tf.gather(logits, class_index, axis=1, name="explained") if y_rank == 1 else logits
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    return ConvNet(graph, session, x, y, conv, logits, class_index)


def random_image(seed: int = 1) -> np.ndarray:
    """An 8x8x3 float32 image in [0, 1)."""
    return np.random.default_rng(seed).uniform(0, 1, IMAGE_SHAPE).astype(np.float32)


def hand_call_model_function(net: ConvNet) -> Any:
    """A hand-written ``call_model_function`` for ``net``: the oracle of the wrappers.

    Its gradient ops are built here, separately from saliencykit's.
    """
    with net.graph.as_default():
        (input_gradients,) = tf.gradients(net.y, net.x)
        (conv_gradients,) = tf.gradients(net.y, net.conv)
    tensors = {
        INPUT_OUTPUT_GRADIENTS: input_gradients,
        OUTPUT_LAYER_VALUES: net.y,
        CONVOLUTION_LAYER_VALUES: net.conv,
        CONVOLUTION_OUTPUT_GRADIENTS: conv_gradients,
    }

    def call_model_function(x_value_batch, call_model_args=None, expected_keys=None):
        feed = {net.x: x_value_batch}
        feed.update(call_model_args or {})
        values = net.session.run([tensors[key] for key in expected_keys], feed_dict=feed)
        return dict(zip(expected_keys, values, strict=True))

    return call_model_function


@dataclasses.dataclass
class TinyReluNet:
    """``y = v . relu(W2^T relu(W1^T x))`` on inputs of 3 features, float64, with its NumPy weights."""

    graph: Any
    session: Any
    x: Any
    y: Any
    first: np.ndarray
    second: np.ndarray
    readout: np.ndarray

    def close(self) -> None:
        self.session.close()


def build_tiny_relu_net(activation: str = "relu") -> TinyReluNet:
    """Builds :class:`TinyReluNet`; ``activation`` is ``"relu"`` or ``"relu6"`` for both layers.

    The readout has positive and negative entries, so negative gradients reach
    the ReLUs and guided backpropagation differs from plain gradients.
    """
    first = np.array([[1.0, -2.0, 0.5, 3.0], [2.0, 1.0, -1.0, 0.5], [-1.0, 0.5, 2.0, 1.0]])
    second = np.array([[1.0, -1.0, 0.5], [-0.5, 2.0, 1.0], [1.5, 0.5, -2.0], [0.5, -1.0, 1.0]])
    readout = np.array([1.0, -2.0, 0.5])
    function = {"relu": tf.nn.relu, "relu6": tf.nn.relu6}[activation]
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float64, (None, 3), name="features")
        first_var = v1.get_variable("first", initializer=first)
        second_var = v1.Variable(second, name="second", use_resource=False)
        hidden = function(tf.matmul(function(tf.matmul(x, first_var)), second_var))
        y = tf.linalg.matvec(hidden, tf.constant(readout))
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph)
    session.run(init)
    return TinyReluNet(graph, session, x, y, first, second, readout)


def tiny_net_gradients(
    net: TinyReluNet, features: np.ndarray, guided: bool, upper: float = np.inf
) -> np.ndarray:
    """The input gradient of :class:`TinyReluNet` at one input, by hand in NumPy.

    A ReLU (``upper=inf``) or ReLU6 (``upper=6``) passes the gradient where its
    input lies in ``(0, upper)``; guided backpropagation also zeroes negative
    gradients arriving at each ReLU's output.
    """

    def gate(pre_activation: np.ndarray) -> np.ndarray:
        return ((pre_activation > 0) & (pre_activation < upper)).astype(float)

    def keep(gradient: np.ndarray) -> np.ndarray:
        return np.maximum(gradient, 0) if guided else gradient

    first_pre = features @ net.first
    second_pre = np.clip(first_pre, 0, upper) @ net.second
    second_gradient = keep(net.readout) * gate(second_pre)
    first_gradient = keep(net.second @ second_gradient) * gate(first_pre)
    return net.first @ first_gradient
