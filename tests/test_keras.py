"""Tests of the Keras adapter, :mod:`saliencykit.keras`, on real TensorFlow / Keras 3 models.

Every expected value is computed independently: with a hand-written
``tf.GradientTape`` on the same model, or in NumPy from the weights of a tiny
dense network (guided backpropagation).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

if keras.backend.backend() != "tensorflow":  # pragma: no cover
    pytest.skip("saliencykit.keras needs Keras on the TensorFlow backend", allow_module_level=True)

import saliencykit.core as saliency  # noqa: E402
from saliencykit.core import (  # noqa: E402
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)
from saliencykit.keras import _guided_relus, make_call_model_function, select_target  # noqa: E402

from .threads import run_in_threads  # noqa: E402

CONV_KEYS = [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS]
TARGET = 1


# --------------------------------------------------------------------------
# Models and hand computations.
# --------------------------------------------------------------------------


def build_conv_net(seed: int = 0) -> keras.Model:
    """Conv2D relu -> Conv2D relu -> GlobalAveragePooling -> Dense(3), on 8x8x3 inputs."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="relu", bias_initializer="random_normal", name="conv1")(
        inputs
    )
    hidden = keras.layers.Conv2D(5, 3, activation="relu", bias_initializer="random_normal", name="conv2")(
        hidden
    )
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(3, name="logits")(hidden)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def conv_net() -> keras.Model:
    return build_conv_net()


@pytest.fixture(scope="module")
def x_batch() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)


def tape_gradient(model, x, select=lambda outputs: outputs[:, TARGET], preprocess=None) -> np.ndarray:
    """The gradient of ``select(model(preprocess(x)))`` with respect to ``x``, by hand."""
    x_tensor = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        model_input = preprocess(x_tensor) if preprocess is not None else x_tensor
        selected = select(model(model_input, training=False))
    return tape.gradient(selected, x_tensor).numpy()


def dense_weights(model: keras.Model) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (layer.kernel.numpy(), layer.bias.numpy())
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    ]


def numpy_guided_gradient(
    weights: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, target: int, cap: float = np.inf
) -> np.ndarray:
    """Guided backprop through Dense -> ReLU -> ... -> Dense, in NumPy (float64); ``cap=6`` for ReLU6."""
    pre_activations = []
    activation = x.astype(np.float64)
    for kernel, bias in weights[:-1]:
        pre_activation = activation @ kernel + bias
        pre_activations.append(pre_activation)
        activation = np.clip(pre_activation, 0, cap)
    gradient = np.broadcast_to(weights[-1][0][:, target], activation.shape).astype(np.float64)
    for (kernel, _), pre_activation in zip(reversed(weights[:-1]), reversed(pre_activations), strict=True):
        gradient = np.maximum(gradient, 0) * ((pre_activation > 0) & (pre_activation < cap))  # guided ReLU
        gradient = gradient @ kernel.T
    return gradient


def build_relu_mlp(flavour: str, seed: int = 1) -> keras.Model:
    """Input(4) -> Dense(6) -> ReLU -> Dense(5) -> ReLU -> Dense(3), the ReLUs written in ``flavour``."""
    keras.utils.set_random_seed(seed)
    init = {"bias_initializer": "random_normal"}
    big = keras.initializers.RandomNormal(stddev=4.0)  # pre-activations beyond 6 for ReLU6
    inputs = keras.Input((4,))
    if flavour == "dense_activation":
        hidden = keras.layers.Dense(6, activation="relu", **init)(inputs)
        hidden = keras.layers.Dense(5, activation="relu", **init)(hidden)
    elif flavour == "relu_layer":
        hidden = keras.layers.ReLU()(keras.layers.Dense(6, **init)(inputs))
        hidden = keras.layers.ReLU()(keras.layers.Dense(5, **init)(hidden))
    elif flavour == "activation_layer":
        hidden = keras.layers.Activation("relu")(keras.layers.Dense(6, **init)(inputs))
        hidden = keras.layers.Activation(tf.nn.relu)(keras.layers.Dense(5, **init)(hidden))
    elif flavour == "relu6":
        hidden = keras.layers.ReLU(max_value=6.0)(
            keras.layers.Dense(6, kernel_initializer=big, **init)(inputs)
        )
        hidden = keras.layers.Dense(5, activation="relu6", kernel_initializer=big, **init)(hidden)
    else:
        raise AssertionError(flavour)
    outputs = keras.layers.Dense(3, **init)(hidden)
    return keras.Model(inputs, outputs)


class SubclassedNet(keras.Model):
    """A subclassed model: Dense relu -> Dense."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(6, activation="relu", bias_initializer="random_normal")
        self.head = keras.layers.Dense(3)

    def call(self, inputs, training=False):
        return self.head(self.hidden(inputs))


def relu_state(model: keras.Model) -> list:
    """What guided backprop swaps: each layer's activation and its own ``call`` attribute."""
    return [
        (layer.name, vars(layer).get("activation"), vars(layer).get("call"))
        for layer in model._flatten_layers()
    ]


# --------------------------------------------------------------------------
# Gradients, outputs and layers.
# --------------------------------------------------------------------------


def test_input_gradients_equal_a_hand_written_gradient_tape(conv_net, x_batch):
    call = make_call_model_function(conv_net, TARGET)
    answer = call(x_batch, expected_keys=[INPUT_OUTPUT_GRADIENTS])
    assert list(answer) == [INPUT_OUTPUT_GRADIENTS]
    gradients = answer[INPUT_OUTPUT_GRADIENTS]
    assert isinstance(gradients, np.ndarray) and gradients.shape == x_batch.shape
    assert gradients.dtype == np.float32
    np.testing.assert_allclose(gradients, tape_gradient(conv_net, x_batch), rtol=1e-6, atol=1e-7)
    assert np.abs(gradients).max() > 0


def test_default_expected_keys_are_input_gradients(conv_net, x_batch):
    answer = make_call_model_function(conv_net, TARGET)(x_batch)
    assert list(answer) == [INPUT_OUTPUT_GRADIENTS]


def test_output_layer_values_alone_run_without_a_tape(conv_net, x_batch, monkeypatch):
    call = make_call_model_function(conv_net, TARGET)

    def no_tape(*args, **kwargs):
        raise AssertionError("OUTPUT_LAYER_VALUES alone must not open a GradientTape")

    monkeypatch.setattr(tf, "GradientTape", no_tape)
    answer = call(x_batch, expected_keys=[OUTPUT_LAYER_VALUES])
    assert list(answer) == [OUTPUT_LAYER_VALUES]
    expected = conv_net(x_batch, training=False).numpy()[:, TARGET]
    assert answer[OUTPUT_LAYER_VALUES].shape == (2,)
    np.testing.assert_allclose(answer[OUTPUT_LAYER_VALUES], expected, rtol=1e-6)


def test_values_and_gradients_together(conv_net, x_batch):
    call = make_call_model_function(conv_net, TARGET, layer="conv2")
    answer = call(x_batch, expected_keys=[OUTPUT_LAYER_VALUES, INPUT_OUTPUT_GRADIENTS, *CONV_KEYS])
    assert set(answer) == {OUTPUT_LAYER_VALUES, INPUT_OUTPUT_GRADIENTS, *CONV_KEYS}
    np.testing.assert_allclose(answer[OUTPUT_LAYER_VALUES], conv_net(x_batch).numpy()[:, TARGET], rtol=1e-6)
    np.testing.assert_allclose(
        answer[INPUT_OUTPUT_GRADIENTS], tape_gradient(conv_net, x_batch), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("layer_argument", ["name", "object"])
def test_conv_layer_values_and_gradients_are_channel_last_and_exact(conv_net, x_batch, layer_argument):
    layer = conv_net.get_layer("conv2")
    call = make_call_model_function(conv_net, TARGET, layer=layer if layer_argument == "object" else "conv2")
    answer = call(x_batch, expected_keys=CONV_KEYS)
    assert set(answer) == set(CONV_KEYS)
    # Hand computation: the model split at conv2, both halves run under one tape.
    head = conv_net.layers[conv_net.layers.index(layer) + 1 :]
    x_tensor = tf.convert_to_tensor(x_batch)
    with tf.GradientTape() as tape:
        activations = conv_net.get_layer("conv1")(x_tensor)
        activations = layer(activations)
        tape.watch(activations)
        outputs = activations
        for head_layer in head:
            outputs = head_layer(outputs)
        selected = outputs[:, TARGET]
    expected_gradients = tape.gradient(selected, activations).numpy()
    assert answer[CONVOLUTION_LAYER_VALUES].shape == (2, 4, 4, 5)
    assert answer[CONVOLUTION_OUTPUT_GRADIENTS].shape == (2, 4, 4, 5)
    np.testing.assert_allclose(answer[CONVOLUTION_LAYER_VALUES], activations.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(answer[CONVOLUTION_OUTPUT_GRADIENTS], expected_gradients, rtol=1e-6, atol=1e-8)


def test_channels_first_layer_answers_channel_last(x_batch):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Permute((3, 1, 2))(inputs)
    conv = keras.layers.Conv2D(4, 3, activation="relu", data_format="channels_first", name="conv_cf")
    hidden = conv(hidden)
    hidden = keras.layers.GlobalAveragePooling2D(data_format="channels_first")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    answer = make_call_model_function(model, 0, layer="conv_cf")(x_batch, expected_keys=CONV_KEYS)
    channels_first_values = keras.Model(inputs, conv.output)(x_batch).numpy()
    assert channels_first_values.shape == (2, 4, 6, 6)
    assert answer[CONVOLUTION_LAYER_VALUES].shape == (2, 6, 6, 4)
    assert answer[CONVOLUTION_OUTPUT_GRADIENTS].shape == (2, 6, 6, 4)
    np.testing.assert_allclose(
        answer[CONVOLUTION_LAYER_VALUES], np.moveaxis(channels_first_values, 1, -1), rtol=1e-6, atol=1e-7
    )


def test_sequential_and_subclassed_models(x_batch):
    keras.utils.set_random_seed(4)
    sequential = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(3, 3, activation="relu", name="seq_conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    answer = make_call_model_function(sequential, 0, layer="seq_conv")(
        x_batch, expected_keys=[INPUT_OUTPUT_GRADIENTS, *CONV_KEYS]
    )
    assert answer[CONVOLUTION_LAYER_VALUES].shape == (2, 6, 6, 3)
    np.testing.assert_allclose(
        answer[INPUT_OUTPUT_GRADIENTS],
        tape_gradient(sequential, x_batch, lambda o: o[:, 0]),
        rtol=1e-6,
        atol=1e-7,
    )
    subclassed = SubclassedNet()
    x_flat = x_batch.reshape(2, -1)[:, :4]
    gradients = make_call_model_function(subclassed, 2)(x_flat)[INPUT_OUTPUT_GRADIENTS]
    np.testing.assert_allclose(gradients, tape_gradient(subclassed, x_flat, lambda o: o[:, 2]), rtol=1e-6)


def test_inputs_of_other_dtypes_are_cast_to_the_model_dtype(conv_net, x_batch):
    call = make_call_model_function(conv_net, TARGET)
    expected = tape_gradient(conv_net, x_batch)
    from_float64 = call(x_batch.astype(np.float64))[INPUT_OUTPUT_GRADIENTS]
    assert from_float64.dtype == np.float32
    np.testing.assert_allclose(from_float64, expected, rtol=1e-6, atol=1e-7)
    as_bytes = np.clip(x_batch * 50 + 100, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(
        call(as_bytes)[INPUT_OUTPUT_GRADIENTS], tape_gradient(conv_net, as_bytes), rtol=1e-6, atol=1e-7
    )


# --------------------------------------------------------------------------
# Targets and preprocessing.
# --------------------------------------------------------------------------


def test_call_model_args_override_the_target(conv_net, x_batch):
    call = make_call_model_function(conv_net, TARGET)
    for call_model_args, target in [
        (2, 2),
        ({"target": 0}, 0),
        ({"other": 1}, TARGET),
        (None, TARGET),
        (-1, 2),
    ]:
        answer = call(x_batch, call_model_args=call_model_args, expected_keys=[INPUT_OUTPUT_GRADIENTS])
        expected = tape_gradient(conv_net, x_batch, lambda outputs, t=target: outputs[:, t])
        np.testing.assert_allclose(answer[INPUT_OUTPUT_GRADIENTS], expected, rtol=1e-6, atol=1e-7)
    values = call(
        x_batch,
        call_model_args=lambda outputs: outputs[:, 0] - outputs[:, 2],
        expected_keys=[OUTPUT_LAYER_VALUES],
    )
    logits = conv_net(x_batch).numpy()
    np.testing.assert_allclose(values[OUTPUT_LAYER_VALUES], logits[:, 0] - logits[:, 2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keepdims", [False, True])
def test_callable_target_softmax_probability(conv_net, x_batch, keepdims):
    def probability(outputs):
        selected = tf.nn.softmax(outputs)[:, TARGET]
        return selected[:, None] if keepdims else selected

    call = make_call_model_function(conv_net, probability)
    answer = call(x_batch, expected_keys=[INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES])
    expected = tape_gradient(conv_net, x_batch, lambda outputs: tf.nn.softmax(outputs)[:, TARGET])
    np.testing.assert_allclose(answer[INPUT_OUTPUT_GRADIENTS], expected, rtol=1e-5, atol=1e-8)
    probabilities = tf.nn.softmax(conv_net(x_batch)).numpy()[:, TARGET]
    assert answer[OUTPUT_LAYER_VALUES].shape == (2,)
    np.testing.assert_allclose(answer[OUTPUT_LAYER_VALUES], probabilities, rtol=1e-6)


def test_preprocess_is_differentiated_through(conv_net, x_batch):
    raw = np.clip(x_batch * 60 + 128, 0, 255).astype(np.float32)
    call = make_call_model_function(conv_net, TARGET, preprocess=lambda x: x / 255.0)
    answer = call(raw, expected_keys=[INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES])
    gradient_at_scaled = tape_gradient(conv_net, raw / 255.0)
    np.testing.assert_allclose(
        answer[INPUT_OUTPUT_GRADIENTS], gradient_at_scaled / 255.0, rtol=1e-5, atol=1e-9
    )
    np.testing.assert_allclose(
        answer[OUTPUT_LAYER_VALUES], conv_net(raw / 255.0).numpy()[:, TARGET], rtol=1e-6, atol=1e-7
    )
    values_only = call(raw, expected_keys=[OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES]
    np.testing.assert_allclose(values_only, answer[OUTPUT_LAYER_VALUES], rtol=1e-6)


def test_select_target_rules():
    outputs = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_array_equal(select_target(outputs, 1).numpy(), [2.0, 5.0])
    np.testing.assert_array_equal(select_target(outputs, -1).numpy(), [3.0, 6.0])
    np.testing.assert_array_equal(select_target((outputs, outputs * 0), 0).numpy(), [1.0, 4.0])
    np.testing.assert_array_equal(
        select_target(outputs, lambda o: tf.reduce_sum(o, 1, keepdims=True)).numpy(), [6, 15]
    )
    with pytest.raises(ValueError, match="target class 3 is out of range for a model with 3 outputs"):
        select_target(outputs, 3)
    with pytest.raises(ValueError, match="target class -4 is out of range"):
        select_target(outputs, -4)
    with pytest.raises(TypeError, match="class index"):
        select_target(outputs, True)
    with pytest.raises(TypeError, match="class index"):
        select_target(outputs, 1.0)
    with pytest.raises(ValueError, match=r"one scalar per example, shape \(2,\); it returned \(2, 3\)"):
        select_target(outputs, lambda o: o)
    with pytest.raises(ValueError, match="it returned ndarray"):
        select_target(outputs, lambda o: np.zeros(2))
    with pytest.raises(ValueError, match=r"\[batch, classes\]"):
        select_target(tf.zeros((2, 3, 4)), 0)


# --------------------------------------------------------------------------
# Guided backpropagation.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["dense_activation", "relu_layer", "activation_layer", "relu6"])
def test_guided_gradients_equal_a_numpy_computation(flavour):
    model = build_relu_mlp(flavour)
    x = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    before = relu_state(model)
    call = make_call_model_function(model, 2)
    guided = call(x, expected_keys=[GUIDED_INPUT_OUTPUT_GRADIENTS])[GUIDED_INPUT_OUTPUT_GRADIENTS]
    cap = 6.0 if flavour == "relu6" else np.inf
    expected = numpy_guided_gradient(dense_weights(model), x, 2, cap)
    np.testing.assert_allclose(guided, expected, rtol=1e-5, atol=1e-6)
    # Guided backprop is not the plain gradient on these weights...
    plain = call(x)[INPUT_OUTPUT_GRADIENTS]
    assert np.abs(plain - guided).max() > 1e-3
    # ... and GuidedBackprop through the adapter gives the same mask.
    mask = saliency.GuidedBackprop().GetMask(x[0], call)
    np.testing.assert_allclose(mask, expected[0], rtol=1e-5, atol=1e-6)
    assert relu_state(model) == before


def test_guided_backprop_on_conv_net_restores_the_model(x_batch):
    model = build_conv_net(seed=5)
    call = make_call_model_function(model, TARGET, layer="conv2")
    plain_before = call(x_batch)[INPUT_OUTPUT_GRADIENTS]
    state_before = relu_state(model)
    answer = call(x_batch, expected_keys=[GUIDED_INPUT_OUTPUT_GRADIENTS, INPUT_OUTPUT_GRADIENTS, *CONV_KEYS])
    assert answer[GUIDED_INPUT_OUTPUT_GRADIENTS].shape == x_batch.shape
    np.testing.assert_array_equal(answer[INPUT_OUTPUT_GRADIENTS], plain_before)
    assert np.abs(answer[GUIDED_INPUT_OUTPUT_GRADIENTS] - plain_before).max() > 1e-4
    assert relu_state(model) == state_before
    assert model.get_layer("conv1").activation is keras.activations.relu
    np.testing.assert_array_equal(call(x_batch)[INPUT_OUTPUT_GRADIENTS], plain_before)
    mask = saliency.GuidedBackprop().GetMask(x_batch[0], call)
    np.testing.assert_allclose(mask, answer[GUIDED_INPUT_OUTPUT_GRADIENTS][0], rtol=1e-5, atol=1e-7)
    smoothed = saliency.GuidedBackprop().GetSmoothedMask(x_batch[0], call, nsamples=4, batch_size=4, seed=0)
    assert smoothed.shape == x_batch[0].shape


def test_guided_backprop_restores_the_model_after_an_error(x_batch):
    model = build_conv_net(seed=6)
    relu_model = build_relu_mlp("relu_layer")
    x = np.ones((1, 4), np.float32)
    for net, inputs in [(model, x_batch), (relu_model, x)]:
        plain_before = make_call_model_function(net, 0)(inputs)[INPUT_OUTPUT_GRADIENTS]
        state_before = relu_state(net)
        with pytest.raises(ValueError, match="out of range"):
            make_call_model_function(net, 7)(inputs, expected_keys=[GUIDED_INPUT_OUTPUT_GRADIENTS])

        def failing_preprocess(tensor):
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            make_call_model_function(net, 0, preprocess=failing_preprocess)(
                inputs, expected_keys=[GUIDED_INPUT_OUTPUT_GRADIENTS]
            )
        with pytest.raises(KeyError):
            with _guided_relus(net):
                raise KeyError("inside")
        assert relu_state(net) == state_before
        np.testing.assert_array_equal(
            make_call_model_function(net, 0)(inputs)[INPUT_OUTPUT_GRADIENTS], plain_before
        )


def test_guided_backprop_on_a_subclassed_model():
    keras.utils.set_random_seed(7)
    model = SubclassedNet()
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    model(x)
    guided = make_call_model_function(model, 1)(x, expected_keys=[GUIDED_INPUT_OUTPUT_GRADIENTS])
    weights = [(model.hidden.kernel.numpy(), model.hidden.bias.numpy()), (model.head.kernel.numpy(), None)]
    expected = numpy_guided_gradient(weights, x, 1)
    np.testing.assert_allclose(guided[GUIDED_INPUT_OUTPUT_GRADIENTS], expected, rtol=1e-5, atol=1e-6)
    assert model.hidden.activation is keras.activations.relu


def test_guided_backprop_without_relu_is_an_error():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="tanh")(inputs)
    hidden = keras.layers.ReLU(negative_slope=0.1)(hidden)  # leaky: not a ReLU for guided backprop
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    call = make_call_model_function(model, 0)
    with pytest.raises(ValueError, match="guided backpropagation needs ReLU"):
        call(np.ones((1, 4), np.float32), expected_keys=[GUIDED_INPUT_OUTPUT_GRADIENTS])


# --------------------------------------------------------------------------
# Saliency methods through the adapter.
# --------------------------------------------------------------------------


def test_core_methods_run_through_the_adapter(conv_net, x_batch):
    call = make_call_model_function(conv_net, TARGET, layer="conv2")
    x_value = x_batch[0]
    vanilla = saliency.GradientSaliency().GetMask(x_value, call)
    np.testing.assert_allclose(vanilla, tape_gradient(conv_net, x_value[None])[0], rtol=1e-6, atol=1e-7)

    integrated = saliency.IntegratedGradients()
    batched = integrated.GetMask(x_value, call, x_steps=10, batch_size=5)
    one_by_one = integrated.GetMask(x_value, call, x_steps=10, batch_size=1)
    alphas = np.linspace(0, 1, 10, dtype=np.float32)[:, None, None, None]
    path_gradients = tape_gradient(conv_net, alphas * x_value[None])
    expected = x_value * path_gradients.mean(axis=0)
    np.testing.assert_allclose(batched, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(one_by_one, batched, rtol=1e-4, atol=1e-6)

    grad_cam_class = getattr(saliency, "GradCam", None)
    if grad_cam_class is None:
        grad_cam_module = pytest.importorskip("saliencykit.core.grad_cam")
        grad_cam_class = grad_cam_module.GradCam
    grad_cam = grad_cam_class().GetMask(x_value, call)
    assert grad_cam.shape == (8, 8, 3)
    assert np.all(np.isfinite(grad_cam)) and grad_cam.min() >= 0


# --------------------------------------------------------------------------
# The model is left alone.
# --------------------------------------------------------------------------


def test_weights_trainable_flags_and_inference_mode_are_kept(x_batch):
    keras.utils.set_random_seed(8)
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    hidden = keras.layers.Dropout(0.5)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    model.get_layer("conv").trainable = False
    weights_before = [weight.numpy().copy() for weight in model.weights]
    flags_before = [layer.trainable for layer in model.layers]
    call = make_call_model_function(model, 0, layer="conv")
    keys = [INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES, GUIDED_INPUT_OUTPUT_GRADIENTS, *CONV_KEYS]
    first = call(x_batch * 10 + 3, expected_keys=keys)
    second = call(x_batch * 10 + 3, expected_keys=keys)
    for key in keys:  # dropout off, batch-norm statistics frozen: deterministic
        np.testing.assert_array_equal(first[key], second[key])
    for before, weight in zip(weights_before, model.weights, strict=True):
        np.testing.assert_array_equal(before, weight.numpy())
    assert [layer.trainable for layer in model.layers] == flags_before
    in_training = make_call_model_function(model, 0, training=True)(
        x_batch, expected_keys=[OUTPUT_LAYER_VALUES]
    )
    assert in_training[OUTPUT_LAYER_VALUES].shape == (2,)


# --------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------


def test_target_errors(conv_net, x_batch):
    with pytest.raises(ValueError, match="target class 3 is out of range for a model with 3 outputs"):
        make_call_model_function(conv_net, 3)(x_batch)
    with pytest.raises(ValueError, match="target class 5 is out of range for a model with 3 outputs"):
        make_call_model_function(conv_net, 0)(
            x_batch, call_model_args={"target": 5}, expected_keys=[OUTPUT_LAYER_VALUES]
        )
    with pytest.raises(ValueError, match="one scalar per example"):
        make_call_model_function(conv_net, lambda outputs: outputs)(x_batch)
    with pytest.raises(ValueError, match="one scalar per example"):
        make_call_model_function(conv_net, lambda outputs: tf.reduce_sum(outputs))(x_batch)
    with pytest.raises(TypeError, match="class index"):
        make_call_model_function(conv_net, "cat")(x_batch)


def test_layer_errors(conv_net, x_batch):
    with pytest.raises(ValueError, match="'conv9' is not a layer of the model; similar"):
        make_call_model_function(conv_net, 0, layer="conv9")
    foreign = keras.layers.Conv2D(2, 3, name="foreign")
    with pytest.raises(ValueError, match="'foreign' .*is not a layer of the model"):
        make_call_model_function(conv_net, 0, layer=foreign)
    with pytest.raises(TypeError, match="layer must be a Keras layer"):
        make_call_model_function(conv_net, 0, layer=3)
    with pytest.raises(ValueError, match="CONVOLUTION_\\* keys need the layer= argument"):
        make_call_model_function(conv_net, 0)(x_batch, expected_keys=[CONVOLUTION_LAYER_VALUES])

    subclassed = SubclassedNet()
    subclassed(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="functional"):
        make_call_model_function(subclassed, 0, layer=subclassed.hidden)

    inner_inputs = keras.Input((8, 8, 3))
    inner = keras.Model(inner_inputs, keras.layers.Conv2D(2, 3, name="inner_conv")(inner_inputs))
    outer_inputs = keras.Input((8, 8, 3))
    outer_outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inner(outer_inputs)))
    outer = keras.Model(outer_inputs, outer_outputs)
    with pytest.raises(ValueError, match="'inner_conv' is not reachable from the model's input"):
        make_call_model_function(outer, 0, layer="inner_conv")
    # The nested model as a whole is a layer of the outer graph.
    answer = make_call_model_function(outer, 0, layer=inner)(x_batch, expected_keys=CONV_KEYS)
    assert answer[CONVOLUTION_LAYER_VALUES].shape == (2, 6, 6, 2)


def test_model_and_key_errors(conv_net, x_batch):
    call = make_call_model_function(conv_net, 0)
    with pytest.raises(ValueError, match="unknown expected_keys \\['GRADIENTS'\\]"):
        call(x_batch, expected_keys=["GRADIENTS"])
    with pytest.raises(TypeError, match="real numeric array"):
        call(np.array([["a"]]))
    with pytest.raises(TypeError, match="must be a Keras model"):
        make_call_model_function(lambda x: x, 0)
    first, second = keras.Input((4,)), keras.Input((4,))
    two_inputs = keras.Model(
        [first, second], keras.layers.Dense(2)(keras.layers.Concatenate()([first, second]))
    )
    with pytest.raises(ValueError, match="the model has 2 inputs"):
        make_call_model_function(two_inputs, 0)


def test_not_differentiable_models_are_errors():
    x = np.ones((2, 4), np.float32)
    integer_inputs = keras.Input((4,), dtype="int32")
    as_float = keras.layers.Lambda(lambda t: keras.ops.cast(t, "float32"))(integer_inputs)
    integer_model = keras.Model(integer_inputs, keras.layers.Dense(2)(as_float))
    call = make_call_model_function(integer_model, 0)
    assert call(x, expected_keys=[OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES].shape == (2,)
    with pytest.raises(ValueError, match="input dtype is int32"):
        call(x)

    inputs = keras.Input((4,))
    rounded = keras.layers.Lambda(lambda t: keras.ops.cast(keras.ops.cast(t, "int32"), "float32"))(inputs)
    rounding_model = keras.Model(inputs, keras.layers.Dense(2)(rounded))
    with pytest.raises(ValueError, match="does not depend differentiably on the input"):
        make_call_model_function(rounding_model, 0)(x)

    stopped = keras.layers.Lambda(keras.ops.stop_gradient)(inputs)
    stopped_model = keras.Model(inputs, keras.layers.Dense(2)(stopped))
    with pytest.raises(ValueError, match="gradient is None"):
        make_call_model_function(stopped_model, 0)(x)

    int_output_model = keras.Model(inputs, keras.layers.Lambda(lambda t: keras.ops.cast(t, "int32"))(inputs))
    with pytest.raises(ValueError, match="explained output has dtype int32"):
        make_call_model_function(int_output_model, 0)(x)


def test_importing_core_does_not_import_tensorflow():
    code = (
        "import sys, saliencykit.core; "
        "bad = [name for name in ('tensorflow', 'keras') if name in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------
# State, threads and the caller's array.
# --------------------------------------------------------------------------


def build_batch_norm_net(seed: int = 9) -> keras.Model:
    """Conv2D -> BatchNormalization (non-trivial moving statistics) -> ReLU -> pooling -> dropout -> Dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    batch_norm = keras.layers.BatchNormalization(name="bn")
    hidden = keras.layers.ReLU()(batch_norm(hidden))
    hidden = keras.layers.Conv2D(5, 3, activation="relu", name="conv2")(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    hidden = keras.layers.Dropout(0.5)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    rng = np.random.default_rng(seed)
    batch_norm.moving_mean.assign(rng.uniform(-0.5, 0.5, 4).astype(np.float32))
    batch_norm.moving_variance.assign(rng.uniform(0.5, 2.0, 4).astype(np.float32))
    return model


def model_state(model: keras.Model) -> tuple[list[np.ndarray], list[bool], list]:
    """Every variable's value (moving statistics and seed states included), trainable flags, ReLUs."""
    return (
        [variable.numpy().copy() for variable in model.variables],
        [layer.trainable for layer in model._flatten_layers()],
        relu_state(model),
    )


def assert_same_state(before: tuple, model: keras.Model, skip_seeds: bool = False) -> None:
    values, trainable, relus = model_state(model)
    for variable, old, new in zip(model.variables, before[0], values, strict=True):
        if skip_seeds and "seed_generator" in variable.path:
            continue
        np.testing.assert_array_equal(old, new, err_msg=variable.path)
    assert trainable == before[1]
    assert relus == before[2]


ALL_KEYS = [INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES, GUIDED_INPUT_OUTPUT_GRADIENTS, *CONV_KEYS]


def test_calls_leave_every_layer_state_unchanged(x_batch):
    model = build_batch_norm_net()
    model.get_layer("conv").trainable = False
    before = model_state(model)
    call = make_call_model_function(model, 0, layer="conv2")
    call(x_batch, expected_keys=ALL_KEYS)
    call(x_batch, expected_keys=[OUTPUT_LAYER_VALUES])
    assert_same_state(before, model)


def test_training_true_calls_restore_the_moving_statistics(x_batch):
    model = build_batch_norm_net()
    before = model_state(model)
    call = make_call_model_function(model, 0, layer="conv2", training=True)
    call(x_batch, expected_keys=ALL_KEYS)
    call(x_batch, expected_keys=[OUTPUT_LAYER_VALUES])
    assert_same_state(before, model, skip_seeds=True)  # dropout's seed moves on: fresh masks


def test_concurrent_calls_on_one_model_match_serial_calls(x_batch):
    model = build_batch_norm_net()
    before = model_state(model)
    call = make_call_model_function(model, 1, layer="conv2")
    other_call = make_call_model_function(model, 2)  # a second adapter on the same model
    tasks = [
        lambda: call(x_batch)[INPUT_OUTPUT_GRADIENTS],
        lambda: call(x_batch, expected_keys=[GUIDED_INPUT_OUTPUT_GRADIENTS])[GUIDED_INPUT_OUTPUT_GRADIENTS],
        lambda: call(x_batch, expected_keys=CONV_KEYS)[CONVOLUTION_OUTPUT_GRADIENTS],
        lambda: saliency.IntegratedGradients().GetMask(x_batch[0], other_call, x_steps=4, batch_size=4),
    ]
    serial = [task() for task in tasks]
    assert np.abs(serial[0] - serial[1]).max() > 1e-4  # guided maps differ from plain gradients
    for index, outputs in enumerate(run_in_threads(tasks, repeats=6)):
        for output in outputs:
            np.testing.assert_allclose(output, serial[index], rtol=1e-5, atol=1e-6)
    assert_same_state(before, model)


def test_concurrent_inference_and_training_calls_do_not_mix(x_batch):
    model = build_batch_norm_net()
    inference = make_call_model_function(model, 0)
    training = make_call_model_function(model, 0, training=True)
    expected = inference(x_batch, expected_keys=[OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES]
    results = run_in_threads(
        [
            lambda: inference(x_batch, expected_keys=[OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES],
            lambda: training(x_batch)[INPUT_OUTPUT_GRADIENTS],
        ],
        repeats=6,
    )
    for output in results[0]:
        np.testing.assert_allclose(output, expected, rtol=1e-6)


def test_the_callers_batch_is_never_written(x_batch):
    model = build_batch_norm_net()
    batch = (x_batch * 50 + 100).astype(np.float32)
    original = batch.copy()
    call = make_call_model_function(model, 0, layer="conv2", preprocess=lambda x: x / 127.5 - 1)
    call(batch, expected_keys=ALL_KEYS)
    call(batch, expected_keys=[OUTPUT_LAYER_VALUES])
    np.testing.assert_array_equal(batch, original)
