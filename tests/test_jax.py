"""Tests of the JAX adapter (saliencykit.jax) on small real JAX models."""

from __future__ import annotations

import collections
import gc
import subprocess
import sys
import threading
import weakref
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import saliencykit.core as saliency  # noqa: E402
import saliencykit.jax  # noqa: E402
from saliencykit.core.grad_cam import GradCam  # noqa: E402
from saliencykit.jax import OVERRIDE_CACHE_SIZE, make_call_model_function, select_target  # noqa: E402

GRADIENTS = saliency.INPUT_OUTPUT_GRADIENTS
OUTPUTS = saliency.OUTPUT_LAYER_VALUES
LAYER_VALUES = saliency.CONVOLUTION_LAYER_VALUES
LAYER_GRADIENTS = saliency.CONVOLUTION_OUTPUT_GRADIENTS
ALL_KEYS = [GRADIENTS, LAYER_VALUES, LAYER_GRADIENTS, OUTPUTS]
N_CLASSES = 5
IMAGE_SHAPE = (8, 9, 3)
CONV_CHANNELS = 4


# --------------------------------------------------------------------------
# Models: a small MLP and a small conv net with fixed random parameters.
# --------------------------------------------------------------------------


def mlp_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_inputs = int(np.prod(IMAGE_SHAPE))
    return {
        "w1": rng.normal(0, 0.3, (n_inputs, 8)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 8).astype(np.float32),
        "w2": rng.normal(0, 0.3, (8, N_CLASSES)).astype(np.float32),
        "b2": rng.normal(0, 0.1, N_CLASSES).astype(np.float32),
    }


def mlp(params: dict, x: jax.Array) -> jax.Array:
    hidden = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
    return hidden @ params["w2"] + params["b2"]


def conv_params(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "kernel": rng.normal(0, 0.3, (3, 3, IMAGE_SHAPE[2], CONV_CHANNELS)).astype(np.float32),  # HWIO
        "bias": rng.normal(0, 0.1, CONV_CHANNELS).astype(np.float32),
        "dense": rng.normal(0, 0.5, (CONV_CHANNELS, N_CLASSES)).astype(np.float32),
        "dense_bias": rng.normal(0, 0.1, N_CLASSES).astype(np.float32),
    }


def conv_features(params: dict, x: jax.Array) -> jax.Array:
    """ReLU(conv3x3(x)), NHWC in, NHWC out."""
    convolved = jax.lax.conv_general_dilated(
        x, params["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jax.nn.relu(convolved + params["bias"])


def conv_head(params: dict, features: jax.Array) -> jax.Array:
    return features.mean(axis=(1, 2)) @ params["dense"] + params["dense_bias"]


def conv_net(params: dict, x: jax.Array) -> jax.Array:
    return conv_head(params, conv_features(params, x))


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((2, *IMAGE_SHAPE), dtype=np.float32)


# The references are jitted: compiling one small program is much faster than
# JAX's first eager, op-by-op run of the same computation.


def jax_gradients(model, params, images: np.ndarray, target: int) -> np.ndarray:
    """The gradient of sum(model(params, x)[:, target]) by jax.grad, by hand."""
    gradient = jax.jit(jax.grad(lambda x: model(params, x)[:, target].sum()))
    return np.asarray(gradient(jnp.asarray(images)))


def forward(model, params, images: np.ndarray) -> np.ndarray:
    return np.asarray(jax.jit(model)(params, jnp.asarray(images)))


# --------------------------------------------------------------------------
# Values.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "make_params"), [(mlp, mlp_params), (conv_net, conv_params)])
def test_input_gradients_and_outputs_match_jax(images, model, make_params) -> None:
    params = make_params()
    call = make_call_model_function(model, target=3, params=params)
    answer = call(images, expected_keys=[GRADIENTS, OUTPUTS])
    assert set(answer) == {GRADIENTS, OUTPUTS}
    np.testing.assert_allclose(
        answer[GRADIENTS], jax_gradients(model, params, images, 3), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(answer[OUTPUTS], forward(model, params, images)[:, 3], rtol=1e-5, atol=1e-6)
    assert answer[GRADIENTS].dtype == np.float32 and answer[GRADIENTS].shape == images.shape
    assert all(isinstance(value, np.ndarray) and value.flags.writeable for value in answer.values())


def test_function_without_params(images: np.ndarray) -> None:
    params = mlp_params()
    call = make_call_model_function(lambda x: mlp(params, x), target=1)
    np.testing.assert_allclose(
        call(images)[GRADIENTS], jax_gradients(mlp, params, images, 1), rtol=1e-5, atol=1e-7
    )


def test_output_values_alone_run_forward_only(images: np.ndarray) -> None:
    differentiated: list[str] = []

    @jax.custom_vjp
    def spy(x):
        return x

    def spy_forward(x):
        differentiated.append("vjp")
        return x, None

    spy.defvjp(spy_forward, lambda _, gradient: (gradient,))
    params = mlp_params()
    call = make_call_model_function(lambda p, x: mlp(p, spy(x)), target=0, params=params)
    values = call(images, expected_keys=[OUTPUTS])
    assert set(values) == {OUTPUTS} and differentiated == []
    np.testing.assert_allclose(values[OUTPUTS], forward(mlp, params, images)[:, 0], rtol=1e-5, atol=1e-6)
    call(images, expected_keys=[GRADIENTS])
    assert differentiated == ["vjp"]


def test_each_target_and_keys_combination_compiles_once(images: np.ndarray) -> None:
    traces: list[tuple[int, ...]] = []

    def counting_model(params, x):
        traces.append(x.shape)
        return mlp(params, x)

    call = make_call_model_function(counting_model, target=0, params=mlp_params())
    for _ in range(3):
        call(images)
        call(images, expected_keys=[GRADIENTS, OUTPUTS])  # the same compiled function
    assert len(traces) == 1
    call(images, expected_keys=[OUTPUTS])
    call(images, expected_keys=[OUTPUTS])
    assert len(traces) == 2
    call(images[:1])  # a new batch shape retraces once
    call(images[:1])
    assert len(traces) == 3
    call(images, call_model_args=2)
    call(images, call_model_args={"target": 2})
    call(images, call_model_args=0)  # the default target, already compiled
    assert len(traces) == 4


def test_per_call_callable_targets_do_not_accumulate(images: np.ndarray, monkeypatch) -> None:
    monkeypatch.setattr(saliencykit.jax, "OVERRIDE_CACHE_SIZE", 3)
    call = make_call_model_function(lambda x: x.reshape(len(x), -1)[:, :N_CLASSES], target=0)
    references = []
    for index in range(8):
        target = lambda outputs, index=index: outputs[:, index % N_CLASSES]  # noqa: E731
        references.append(weakref.ref(target))
        call(images, call_model_args=target)
        del target
    gc.collect()
    assert sum(reference() is not None for reference in references) == 3
    assert OVERRIDE_CACHE_SIZE >= 8  # the real bound keeps a few targets compiled


def test_linear_model_ig_is_exact() -> None:
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(2, 3, 4)).astype(np.float32)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    baseline = rng.normal(size=(2, 3, 4)).astype(np.float32)

    def linear(params, batch):
        return jnp.stack([(batch * params).sum(axis=(1, 2, 3)), batch.sum(axis=(1, 2, 3))], axis=1)

    call = make_call_model_function(linear, target=0, params=weights)
    attribution = saliency.IntegratedGradients().GetMask(
        x, call, x_baseline=baseline, x_steps=5, batch_size=5
    )
    np.testing.assert_allclose(attribution, (x - baseline) * weights, rtol=1e-5, atol=1e-6)


def test_grad_cam_keys_from_the_layer_pair(images: np.ndarray) -> None:
    params = conv_params()
    call = make_call_model_function(conv_net, target=2, params=params, layer=(conv_features, conv_head))
    answer = call(images, expected_keys=ALL_KEYS)
    layer_shape = (2, IMAGE_SHAPE[0], IMAGE_SHAPE[1], CONV_CHANNELS)
    assert answer[LAYER_VALUES].shape == layer_shape and answer[LAYER_GRADIENTS].shape == layer_shape

    features = forward(conv_features, params, images)
    feature_gradients = jax.jit(jax.grad(lambda a: conv_head(params, a)[:, 2].sum()))(features)
    np.testing.assert_allclose(answer[LAYER_VALUES], np.asarray(features), rtol=1e-6)
    np.testing.assert_allclose(answer[LAYER_GRADIENTS], np.asarray(feature_gradients), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(
        answer[GRADIENTS], jax_gradients(conv_net, params, images, 2), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(answer[OUTPUTS], forward(conv_net, params, images)[:, 2], rtol=1e-5, atol=1e-6)

    only_layer = call(images, expected_keys=[LAYER_VALUES, LAYER_GRADIENTS])
    assert set(only_layer) == {LAYER_VALUES, LAYER_GRADIENTS}
    np.testing.assert_allclose(only_layer[LAYER_GRADIENTS], answer[LAYER_GRADIENTS], rtol=1e-6)

    mask = GradCam().GetMask(images[0], call)
    assert mask.shape == IMAGE_SHAPE and 0 <= mask.min() and mask.max() <= 1


def test_call_model_args_override_the_target(images: np.ndarray) -> None:
    params = conv_params()
    call = make_call_model_function(conv_net, target=0, params=params)
    expected = jax_gradients(conv_net, params, images, 4)
    for override in (4, np.int64(4), -1, {"target": 4}, lambda outputs: outputs[:, 4]):
        np.testing.assert_allclose(
            call(images, call_model_args=override)[GRADIENTS], expected, rtol=1e-5, atol=1e-7
        )
    np.testing.assert_allclose(
        call(images, call_model_args={"other": 1})[GRADIENTS],
        jax_gradients(conv_net, params, images, 0),
        rtol=1e-5,
        atol=1e-7,
    )


def test_softmax_target_and_preprocess_are_differentiated(images: np.ndarray) -> None:
    params = conv_params()

    def probability(outputs):
        return jax.nn.softmax(outputs, axis=1)[:, 2:3]  # [batch, 1] is accepted too

    plain = make_call_model_function(conv_net, target=probability, params=params)
    scaled = make_call_model_function(
        conv_net, target=probability, params=params, preprocess=lambda x: x / 255
    )
    grad_plain = plain(images)[GRADIENTS]
    grad_scaled = scaled(images * 255)[GRADIENTS]
    np.testing.assert_allclose(grad_scaled * 255, grad_plain, rtol=1e-4, atol=1e-9)
    expected = jax.jit(jax.grad(lambda x: jax.nn.softmax(conv_net(params, x), axis=1)[:, 2].sum()))(images)
    np.testing.assert_allclose(grad_plain, np.asarray(expected), rtol=1e-5, atol=1e-9)
    # The Grad-CAM path applies preprocess before features_fn.
    layer = (conv_features, conv_head)
    scaled_layer = make_call_model_function(
        conv_net, target=probability, params=params, preprocess=lambda x: x / 255, layer=layer
    )
    answer = scaled_layer(images * 255, expected_keys=ALL_KEYS)
    np.testing.assert_allclose(answer[GRADIENTS] * 255, grad_plain, rtol=1e-4, atol=1e-9)


def test_input_dtypes(images: np.ndarray) -> None:
    params = conv_params()
    call = make_call_model_function(conv_net, target=1, params=params, preprocess=lambda x: x / 255)
    as_uint8 = (images * 255).astype(np.uint8)
    gradients = call(as_uint8)[GRADIENTS]
    assert gradients.dtype == np.float32 and gradients.shape == images.shape
    expected = jax_gradients(conv_net, params, as_uint8.astype(np.float32) / 255, 1) / 255
    np.testing.assert_allclose(gradients, expected, rtol=1e-4, atol=1e-10)
    from_float64 = call(as_uint8.astype(np.float64))[GRADIENTS]
    assert from_float64.dtype == np.float32  # x64 is off by default
    np.testing.assert_allclose(from_float64, gradients, rtol=1e-6)


def test_core_methods_run_through_the_adapter() -> None:
    image = (np.random.default_rng(4).random(IMAGE_SHAPE) * 255).astype(np.uint8)
    call = make_call_model_function(conv_net, target=0, params=conv_params(), preprocess=lambda x: x / 255)
    ig = saliency.IntegratedGradients().GetMaskWithDetails(
        image, call, x_steps=32, batch_size=32, integration_rule="gausslegendre"
    )
    assert ig.attribution.shape == image.shape
    assert abs(ig.completeness_error) < 1e-3 * max(1.0, abs(ig.output_at_input - ig.output_at_baseline))
    smooth = saliency.GradientSaliency().GetSmoothedMask(image, call, nsamples=4, batch_size=4, seed=0)
    assert smooth.shape == image.shape and np.isfinite(smooth).all()


def test_dead_relus_give_zero_gradients_without_an_error(images: np.ndarray) -> None:
    params = mlp_params()
    call = make_call_model_function(lambda p, x: jax.nn.relu(mlp(p, x) - 1e3), target=0, params=params)
    np.testing.assert_array_equal(call(images)[GRADIENTS], np.zeros_like(images))


def test_the_zero_check_looks_past_its_sample() -> None:
    # The check for all-zero gradients looks at an evenly spread sample first, then at every element.
    from saliencykit.jax import ZERO_CHECK_SAMPLE, _all_zero

    values = np.zeros(3 * ZERO_CHECK_SAMPLE + 7, dtype=np.float32)  # sampled every 4th element
    assert _all_zero(values) and _all_zero(np.zeros((0, 3)))
    values[5] = 1e-30
    assert not _all_zero(values)
    values[5], values[8] = 0.0, -2.0
    assert not _all_zero(values)


def test_a_gradient_nonzero_only_off_the_sample_is_returned_without_an_error() -> None:
    # The model reads one input element per image, which the zero check's sample does not look at.
    def one_element(x: jax.Array) -> jax.Array:
        return jnp.stack([x[:, 3, 4, 1] * 2.0] * N_CLASSES, axis=1)

    batch = np.random.default_rng(2).random((2, 64, 64, 3), dtype=np.float32)
    expected = np.zeros_like(batch)
    expected[:, 3, 4, 1] = 2.0
    np.testing.assert_array_equal(make_call_model_function(one_element, target=0)(batch)[GRADIENTS], expected)


def test_select_target() -> None:
    outputs = jnp.arange(10.0).reshape(2, 5)
    np.testing.assert_array_equal(select_target(outputs, 1), [1.0, 6.0])
    np.testing.assert_array_equal(select_target((outputs, {"state": 0}), -1), [4.0, 9.0])
    np.testing.assert_array_equal(select_target(outputs, lambda o: o.sum(axis=1)), [10.0, 35.0])


def test_importing_core_does_not_import_jax() -> None:
    code = "import sys, saliencykit.core; sys.exit('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "keys", "error", "match"),
    [
        (5, None, ValueError, "target class 5 is out of range for a model with 5 outputs"),
        (-6, [OUTPUTS], ValueError, "target class -6 is out of range"),
        (lambda outputs: outputs, None, ValueError, "one scalar per example"),
        (lambda outputs: outputs.sum(), [OUTPUTS], ValueError, "one scalar per example"),
        (0, ["NOT_A_KEY"], ValueError, "unknown expected_keys"),
        (0, [LAYER_VALUES], ValueError, "layer="),
        (0, [saliency.GUIDED_INPUT_OUTPUT_GRADIENTS], ValueError, "ReLUs inside a traced JAX function"),
    ],
)
def test_errors_in_calls(images, target, keys, error, match) -> None:
    call = make_call_model_function(conv_net, target=target, params=conv_params())
    with pytest.raises(error, match=match):
        call(images, expected_keys=keys)


def test_bad_targets(images: np.ndarray) -> None:
    with pytest.raises(TypeError, match="target must be a class index"):
        make_call_model_function(mlp, target="cat", params=mlp_params())
    with pytest.raises(TypeError, match="target must be a class index"):
        make_call_model_function(mlp, target=True, params=mlp_params())
    call = make_call_model_function(mlp, target=0, params=mlp_params())
    with pytest.raises(TypeError, match="target must be a class index"):
        call(images, call_model_args=2.5)
    with pytest.raises(ValueError, match=r"\[batch, classes\]"):
        make_call_model_function(lambda x: x.sum(axis=(1, 2, 3)), target=0)(images)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(TypeError, match="apply_fn must be a callable"):
        make_call_model_function("model", target=0)
    with pytest.raises(TypeError, match="preprocess must be callable"):
        make_call_model_function(mlp, target=0, preprocess=255)
    with pytest.raises(TypeError, match=r"pair \(features_fn, head_fn\)"):
        make_call_model_function(conv_net, target=0, layer="conv")
    with pytest.raises(ValueError, match="got 3 element"):
        make_call_model_function(conv_net, target=0, layer=(conv_features, conv_head, conv_head))
    with pytest.raises(TypeError, match="head_fn must be callable"):
        make_call_model_function(conv_net, target=0, layer=(conv_features, "head"))
    with pytest.raises(TypeError, match="params must be a pytree of arrays"):
        make_call_model_function(conv_net, target=0, params={"name": "resnet"})


def test_bad_layer_pairs_in_calls(images: np.ndarray) -> None:
    params = conv_params()

    def other_head(p, features):
        return 2 * conv_head(p, features)

    mismatched = make_call_model_function(
        conv_net, target=0, params=params, layer=(conv_features, other_head)
    )
    with pytest.raises(ValueError, match="does not reproduce apply_fn"):
        mismatched(images, expected_keys=[LAYER_VALUES, LAYER_GRADIENTS])

    def flat_features(p, x):
        return conv_features(p, x).mean(axis=(0, 1, 2))  # the batch axis is lost

    with pytest.raises(ValueError, match="channel-last array"):
        make_call_model_function(conv_net, target=0, params=params, layer=(flat_features, conv_head))(
            images, expected_keys=[LAYER_VALUES]
        )

    def constant_head(p, features):
        return jnp.zeros((features.shape[0], N_CLASSES)) + jax.lax.stop_gradient(conv_head(p, features))

    with pytest.raises(ValueError, match="Grad-CAM layer's features"):
        make_call_model_function(conv_net, target=0, params=params, layer=(conv_features, constant_head))(
            images, expected_keys=[LAYER_GRADIENTS]
        )


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (lambda p, x: conv_net(p, x.astype(jnp.int32).astype(jnp.float32)), "zero by construction"),
        (lambda p, x: conv_net(p, jnp.round(x)), "zero by construction"),
        (lambda p, x: jax.lax.stop_gradient(conv_net(p, x)), "zero by construction"),
        (jax.jit(lambda p, x: conv_net(p, jnp.floor(x))), "zero by construction"),
        (lambda p, x: conv_net(p, x).astype(jnp.int32), "dtype int32"),
        (lambda p, x: conv_net(p, x) > 0, "dtype bool"),
    ],
)
def test_models_without_gradients_are_reported(images, model, match) -> None:
    call = make_call_model_function(model, target=0, params=conv_params())
    with pytest.raises(ValueError, match="does not depend differentiably") as raised:
        call(images)
    assert raised.match(match)
    assert call(images, expected_keys=[OUTPUTS])[OUTPUTS].shape == (2,)  # the forward alone is fine


# --------------------------------------------------------------------------
# Threads and the caller's array.
# --------------------------------------------------------------------------


def test_concurrent_calls_match_serial_calls(images: np.ndarray) -> None:
    call = make_call_model_function(
        conv_net, target=0, params=conv_params(), layer=(conv_features, conv_head)
    )
    requests = [(target, keys) for target in (0, 3) for keys in ([GRADIENTS], [OUTPUTS], ALL_KEYS)]
    serial = [call(images, call_model_args=target, expected_keys=keys) for target, keys in requests]
    errors: list[BaseException] = []
    results: list[tuple[int, dict[str, np.ndarray]]] = []
    barrier = threading.Barrier(4)

    def worker(thread: int) -> None:
        try:
            barrier.wait()
            for index in np.random.default_rng(thread).permutation(len(requests)).tolist() * 3:
                target, keys = requests[index]
                results.append((index, call(images, call_model_args=target, expected_keys=keys)))
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    assert len(results) == 4 * 3 * len(requests)
    for index, answer in results:
        assert answer.keys() == serial[index].keys()
        for key, value in answer.items():
            np.testing.assert_allclose(value, serial[index][key], rtol=1e-5, atol=1e-7)


def test_a_cache_eviction_by_another_thread_does_not_break_a_call(images: np.ndarray, monkeypatch) -> None:
    """Thread A finds its target's compiled function; thread B evicts it before A marks it used."""
    monkeypatch.setattr(saliencykit.jax, "OVERRIDE_CACHE_SIZE", 1)
    found, evicted = threading.Event(), threading.Event()

    class PausingCache(collections.OrderedDict):
        def get(self, key, default=None):
            value = super().get(key, default)
            if value is not None and threading.current_thread().name == "A" and not found.is_set():
                found.set()
                evicted.wait(timeout=0.5)  # B evicts now, unless the adapter's lock keeps it out
            return value

        def popitem(self, last=True):
            item = super().popitem(last)
            evicted.set()
            return item

    call = make_call_model_function(mlp, target=0, params=mlp_params())
    call._override_cache = PausingCache()
    first, second = (lambda outputs, index=index: outputs[:, index] for index in (1, 2))
    expected = {target: call(images, call_model_args=target)[GRADIENTS] for target in (second, first)}
    evicted.clear()  # ``second`` was evicted just now; only ``first`` is cached
    results: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []

    def run(name: str, target: Any, wait: threading.Event | None) -> None:
        try:
            if wait is not None:
                wait.wait(timeout=5)
            results[name] = call(images, call_model_args=target)[GRADIENTS]
        except BaseException as error:  # noqa: BLE001 - re-raised in the main thread
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=("A", first, None), name="A"),
        threading.Thread(target=run, args=("B", second, found), name="B"),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    np.testing.assert_allclose(results["A"], expected[first], rtol=1e-6)
    np.testing.assert_allclose(results["B"], expected[second], rtol=1e-6)


def test_the_callers_batch_is_never_written(images: np.ndarray) -> None:
    batch = images * 255
    original = batch.copy()
    call = make_call_model_function(
        conv_net,
        target=1,
        params=conv_params(),
        layer=(conv_features, conv_head),
        preprocess=lambda x: x / 255,
    )
    call(batch, expected_keys=ALL_KEYS)
    call(batch, expected_keys=[OUTPUTS])
    np.testing.assert_array_equal(batch, original)
