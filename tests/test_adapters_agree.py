"""The PyTorch, Keras and JAX adapters give the same answers for the same network.

One small convolutional network, ``conv 3x3 (4 channels, SAME padding) -> ReLU
-> global average pool -> dense (5 classes)``, with fixed weights drawn from a
NumPy generator, is built in each framework (and written out in NumPy, in
float64, with its exact gradients, as the reference). The same channel-last
``N x H x W x C`` NumPy batch goes through every adapter's
``make_call_model_function``; every key, and the masks of core methods built on
them, must agree to float32 precision. The Grad-CAM layer is the convolution
*after* its ReLU in every framework: ``nn.ReLU`` in PyTorch, the ``Conv2D`` with
``activation="relu"`` in Keras, ``relu(conv(x))`` as ``features_fn`` in JAX.

A framework that is not installed is skipped with the reason.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import saliencykit.core as saliency
from saliencykit.core.grad_cam import GradCam

GRADIENTS = saliency.INPUT_OUTPUT_GRADIENTS
OUTPUTS = saliency.OUTPUT_LAYER_VALUES
LAYER_VALUES = saliency.CONVOLUTION_LAYER_VALUES
LAYER_GRADIENTS = saliency.CONVOLUTION_OUTPUT_GRADIENTS
GUIDED = saliency.GUIDED_INPUT_OUTPUT_GRADIENTS
ALL_KEYS = [GRADIENTS, OUTPUTS, LAYER_VALUES, LAYER_GRADIENTS]

HEIGHT, WIDTH, IN_CHANNELS = 8, 9, 3
CONV_CHANNELS = 4
N_CLASSES = 5
TARGET = 2
OTHER_TARGET = 4
FRAMEWORKS = ("torch", "keras", "jax")

CallModelFunction = Callable[..., dict[str, np.ndarray]]


# --------------------------------------------------------------------------
# The network's weights, and the network in NumPy (float64, exact gradients).
# --------------------------------------------------------------------------


def make_weights(seed: int = 7) -> dict[str, np.ndarray]:
    """Conv kernel HWIO ``[3, 3, 3, 4]``, its bias, dense ``[4, 5]`` (in, out) and its bias."""
    rng = np.random.default_rng(seed)
    return {
        "kernel": rng.normal(0, 0.4, (3, 3, IN_CHANNELS, CONV_CHANNELS)).astype(np.float32),
        "bias": rng.normal(0, 0.2, CONV_CHANNELS).astype(np.float32),
        "dense": rng.normal(0, 0.8, (CONV_CHANNELS, N_CLASSES)).astype(np.float32),
        "dense_bias": rng.normal(0, 0.2, N_CLASSES).astype(np.float32),
    }


WEIGHTS = make_weights()


def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """3x3 cross-correlation with zero padding 1: ``[N, H, W, Cin] -> [N, H, W, Cout]``."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    height, width = x.shape[1:3]
    return sum(
        np.einsum("nhwc,ck->nhwk", padded[:, i : i + height, j : j + width], kernel[i, j])
        for i in range(3)
        for j in range(3)
    )


def _conv_same_transposed(gradient: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The gradient of :func:`_conv_same` with respect to its input, for an output gradient."""
    height, width = gradient.shape[1:3]
    padded = np.zeros((gradient.shape[0], height + 2, width + 2, kernel.shape[2]))
    for i, j in itertools.product(range(3), range(3)):
        padded[:, i : i + height, j : j + width] += np.einsum("nhwk,ck->nhwc", gradient, kernel[i, j])
    return padded[:, 1:-1, 1:-1]


def numpy_call_model_function(
    x_value_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None
) -> dict[str, np.ndarray]:
    """The reference: the network and its exact gradients in float64 NumPy (every key)."""
    weights = {name: value.astype(np.float64) for name, value in WEIGHTS.items()}
    target = TARGET if call_model_args is None else call_model_args
    x = np.asarray(x_value_batch, dtype=np.float64)
    pre_activation = _conv_same(x, weights["kernel"]) + weights["bias"]
    features = np.maximum(pre_activation, 0)
    outputs = features.mean(axis=(1, 2)) @ weights["dense"] + weights["dense_bias"]
    feature_gradients = np.broadcast_to(weights["dense"][:, target] / (HEIGHT * WIDTH), features.shape)
    active = pre_activation > 0
    return {
        GRADIENTS: _conv_same_transposed(feature_gradients * active, weights["kernel"]),
        OUTPUTS: outputs[:, target],
        LAYER_VALUES: features,
        LAYER_GRADIENTS: np.array(feature_gradients),
        GUIDED: _conv_same_transposed(np.maximum(feature_gradients, 0) * active, weights["kernel"]),
    }


# --------------------------------------------------------------------------
# The same network in each framework, behind its adapter.
# --------------------------------------------------------------------------


def torch_call_model_function() -> CallModelFunction:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from torch import nn

    from saliencykit.torch import make_call_model_function

    conv = nn.Conv2d(IN_CHANNELS, CONV_CHANNELS, 3, padding=1)
    dense = nn.Linear(CONV_CHANNELS, N_CLASSES)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(WEIGHTS["kernel"].transpose(3, 2, 0, 1)))  # HWIO -> OIHW
        conv.bias.copy_(torch.from_numpy(WEIGHTS["bias"]))
        dense.weight.copy_(torch.from_numpy(WEIGHTS["dense"].T))  # (in, out) -> (out, in)
        dense.bias.copy_(torch.from_numpy(WEIGHTS["dense_bias"]))
    relu = nn.ReLU()
    model = nn.Sequential(conv, relu, nn.AdaptiveAvgPool2d(1), nn.Flatten(), dense).eval()
    return make_call_model_function(model, TARGET, layer=relu)  # the adapter permutes NHWC -> NCHW


def keras_call_model_function() -> CallModelFunction:
    pytest.importorskip("tensorflow", reason="TensorFlow is not installed")
    keras = pytest.importorskip("keras", reason="Keras is not installed")
    try:
        from saliencykit.keras import make_call_model_function
    except ImportError as error:
        pytest.skip(f"saliencykit.keras is not available: {error}")

    conv = keras.layers.Conv2D(CONV_CHANNELS, 3, padding="same", activation="relu")
    dense = keras.layers.Dense(N_CLASSES)
    inputs = keras.Input((HEIGHT, WIDTH, IN_CHANNELS))
    outputs = dense(keras.layers.GlobalAveragePooling2D()(conv(inputs)))
    model = keras.Model(inputs, outputs)
    conv.set_weights([WEIGHTS["kernel"], WEIGHTS["bias"]])  # Keras kernels are HWIO already
    dense.set_weights([WEIGHTS["dense"], WEIGHTS["dense_bias"]])
    return make_call_model_function(model, TARGET, layer=conv)


def jax_call_model_function() -> CallModelFunction:
    jax = pytest.importorskip("jax", reason="JAX is not installed")
    from saliencykit.jax import make_call_model_function

    def features_fn(params: dict, x: Any) -> Any:
        convolved = jax.lax.conv_general_dilated(
            x, params["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(convolved + params["bias"])

    def head_fn(params: dict, features: Any) -> Any:
        return features.mean(axis=(1, 2)) @ params["dense"] + params["dense_bias"]

    def apply_fn(params: dict, x: Any) -> Any:
        return head_fn(params, features_fn(params, x))

    return make_call_model_function(apply_fn, TARGET, params=WEIGHTS, layer=(features_fn, head_fn))


BUILDERS = {
    "torch": torch_call_model_function,
    "keras": keras_call_model_function,
    "jax": jax_call_model_function,
}


@pytest.fixture(scope="module")
def call_model_functions() -> dict[str, CallModelFunction | str]:
    """Each framework's call_model_function, or the reason it is unavailable."""
    built: dict[str, CallModelFunction | str] = {}
    for name, build in BUILDERS.items():
        try:
            built[name] = build()
        except pytest.skip.Exception as skipped:
            built[name] = str(skipped)
    return built


def adapter(call_model_functions: dict, framework: str) -> CallModelFunction:
    """The framework's call_model_function, or a skip with the reason."""
    call = call_model_functions[framework]
    if isinstance(call, str):
        pytest.skip(call)
    return call


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(3).random((3, HEIGHT, WIDTH, IN_CHANNELS), dtype=np.float32)


def assert_float32_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Equal up to float32 rounding, relative to the size of ``expected``."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


# --------------------------------------------------------------------------
# Each adapter against the exact reference...
# --------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_keys_match_the_exact_reference(call_model_functions, images, framework) -> None:
    call = adapter(call_model_functions, framework)
    expected = numpy_call_model_function(images)
    answer = call(images, expected_keys=ALL_KEYS)
    for key in ALL_KEYS:
        assert answer[key].shape == expected[key].shape, f"{framework} {key}"
        assert_float32_close(answer[key], expected[key], f"{framework} {key}")
    forward_only = call(images, expected_keys=[OUTPUTS])
    assert_float32_close(forward_only[OUTPUTS], expected[OUTPUTS], f"{framework} forward only")
    override = call(images, call_model_args=OTHER_TARGET)
    assert_float32_close(
        override[GRADIENTS],
        numpy_call_model_function(images, OTHER_TARGET)[GRADIENTS],
        f"{framework} call_model_args target",
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_core_methods_match_the_exact_reference(call_model_functions, images, framework) -> None:
    call = adapter(call_model_functions, framework)
    image = images[0]
    for method, kwargs in [
        (saliency.IntegratedGradients(), {"x_steps": 20, "batch_size": 20}),
        (saliency.GradientSaliency(), {}),
        (GradCam(), {}),
    ]:
        assert_float32_close(
            method.GetMask(image, call, **kwargs),
            method.GetMask(image, numpy_call_model_function, **kwargs),
            f"{framework} {type(method).__name__}",
        )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_guided_gradients(call_model_functions, images, framework) -> None:
    call = adapter(call_model_functions, framework)
    if framework == "jax":
        with pytest.raises(ValueError, match="not supported by the JAX adapter"):
            call(images, expected_keys=[GUIDED])
        return
    assert_float32_close(
        call(images, expected_keys=[GUIDED])[GUIDED],
        numpy_call_model_function(images)[GUIDED],
        f"{framework} guided",
    )


# --------------------------------------------------------------------------
# ... and the adapters against each other.
# --------------------------------------------------------------------------


def test_adapters_agree_with_each_other(call_model_functions, images) -> None:
    available = {name: call for name, call in call_model_functions.items() if not isinstance(call, str)}
    missing = {name: reason for name, reason in call_model_functions.items() if isinstance(reason, str)}
    if len(available) < 2:
        pytest.skip(f"fewer than two frameworks available: {missing}")
    answers = {name: call(images, expected_keys=ALL_KEYS) for name, call in available.items()}
    masks = {
        name: saliency.IntegratedGradients().GetMask(images[1], call, x_steps=20, batch_size=10)
        for name, call in available.items()
    }
    for first, second in itertools.combinations(sorted(available), 2):
        for key in ALL_KEYS:
            assert_float32_close(answers[first][key], answers[second][key], f"{first} vs {second}: {key}")
        assert_float32_close(masks[first], masks[second], f"{first} vs {second}: IntegratedGradients")
