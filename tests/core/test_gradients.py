"""Tests of vanilla gradients (GradientSaliency) and SmoothGrad (CoreSaliency.GetSmoothedMask)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import saliency.core as reference

from saliencykit.core import INPUT_OUTPUT_GRADIENTS, GradientSaliency, IntegratedGradients

from .models import LinearModel, MLPModel, QuadraticModel, TanhModel

# --------------------------------------------------------------------------
# Vanilla gradients.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5,), (4, 6), (8, 7, 3), (2, 3, 4, 5)], ids=str)
def test_vanilla_gradient_of_known_function_any_rank(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=shape)
    x = rng.normal(size=shape)
    model = QuadraticModel(weights)  # f = sum(w x^2), gradient 2 w x
    mask = GradientSaliency().GetMask(x, model)
    assert mask.shape == shape
    np.testing.assert_allclose(mask, 2 * weights * x, rtol=1e-12)
    assert model.batch_sizes == [1]
    assert model.batches[0].shape == (1, *shape)
    np.testing.assert_array_equal(model.batches[0][0], x)


def test_vanilla_gradient_reference_example() -> None:
    """The reference's own example: f = 5x + y^2 + sin(z) at (3, 2, 1), given as a list."""

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        x_batch = np.asarray(x_batch)
        grads = np.stack([np.full(len(x_batch), 5.0), 2 * x_batch[:, 1], np.cos(x_batch[:, 2])], axis=1)
        return {INPUT_OUTPUT_GRADIENTS: grads}

    mask = GradientSaliency().GetMask([3, 2, 1], call_model)
    np.testing.assert_allclose(mask, [5.0, 4.0, np.cos(1.0)])


def test_vanilla_gradient_passes_args_and_keys() -> None:
    model = LinearModel(np.ones(3))
    args = {"foo": "bar"}
    GradientSaliency().GetMask(np.zeros(3), model, call_model_args=args)
    assert model.num_calls == 1
    assert model.call_model_args == [args]
    assert model.expected_keys == [[INPUT_OUTPUT_GRADIENTS]]


def test_vanilla_gradient_uint8_input_becomes_float_without_wrap() -> None:
    x_uint8 = np.array([[0, 100, 200], [255, 1, 128]], dtype=np.uint8)
    weights = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])
    model = QuadraticModel(weights)
    mask = GradientSaliency().GetMask(x_uint8, model)
    assert model.batches[0].dtype.kind == "f"
    np.testing.assert_array_equal(model.batches[0][0], x_uint8.astype(np.float64))
    np.testing.assert_allclose(mask, 2 * weights * x_uint8.astype(np.float64))
    np.testing.assert_allclose(mask, GradientSaliency().GetMask(x_uint8.astype(np.float64), model))


def test_vanilla_gradient_wrong_shape_error_like_reference() -> None:
    def bad_model(x_batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: np.asarray(x_batch)[0]}

    expected = reference.base.SHAPE_ERROR_MESSAGE[INPUT_OUTPUT_GRADIENTS].format((1, 3), (3,))
    with pytest.raises(ValueError, match=re.escape(expected)):
        GradientSaliency().GetMask(np.array([3.0, 2.0, 1.0]), bad_model)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_vanilla_gradient_non_finite_gradient_is_error(bad: float) -> None:
    def bad_model(x_batch, call_model_args=None, expected_keys=None):
        grads = np.ones_like(x_batch)
        grads[0, 1] = bad
        return {INPUT_OUTPUT_GRADIENTS: grads}

    with pytest.raises(ValueError, match=INPUT_OUTPUT_GRADIENTS):
        GradientSaliency().GetMask(np.zeros(3), bad_model)


@pytest.mark.parametrize("shape", [(7,), (6, 5, 3)], ids=str)
def test_vanilla_gradient_parity_with_reference(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(3).normal(size=shape)
    expected = reference.GradientSaliency().GetMask(x, MLPModel(shape))
    actual = GradientSaliency().GetMask(x, MLPModel(shape))
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------
# SmoothGrad.
# --------------------------------------------------------------------------


def _identity_gradient_model() -> QuadraticModel:
    """f = 0.5 sum(x^2): the gradient is the input itself, so masks show the noise."""
    return QuadraticModel(0.5)


def test_smoothgrad_noise_std_is_spread_times_range() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-2.0, 3.0, size=(20, 25))
    x[0, 0], x[0, 1] = -2.0, 3.0  # range exactly 5
    stdev_spread = 0.1
    expected_std = stdev_spread * 5.0
    model = _identity_gradient_model()
    GradientSaliency().GetSmoothedMask(
        x, model, stdev_spread=stdev_spread, nsamples=100, batch_size=100, seed=7
    )
    noise = np.concatenate(model.batches) - x  # 100 x 500 = 50,000 noise values
    assert noise.shape == (100, 20, 25)
    assert abs(noise.mean()) < 5 * expected_std / np.sqrt(noise.size)
    np.testing.assert_allclose(noise.std(), expected_std, rtol=0.02)
    # Independent samples: different noise for every sample.
    assert not np.allclose(noise[0], noise[1])


def test_smoothgrad_mean_of_gradient_is_input() -> None:
    """magnitude=False: mean of (x + n) tends to x with error ~ stdev / sqrt(nsamples)."""
    x = np.linspace(-1.0, 1.0, 50)
    stdev = 0.2 * 2.0
    nsamples = 400
    mask = GradientSaliency().GetSmoothedMask(
        x,
        _identity_gradient_model(),
        stdev_spread=0.2,
        nsamples=nsamples,
        magnitude=False,
        seed=3,
        batch_size=nsamples,
    )
    tolerance = 5 * stdev / np.sqrt(nsamples)
    np.testing.assert_allclose(mask, x, rtol=0, atol=tolerance)


def test_smoothgrad_magnitude_is_mean_square() -> None:
    """magnitude=True: E[(x + n)^2] = x^2 + stdev^2."""
    x = np.linspace(-1.0, 1.0, 50)
    stdev = 0.2 * 2.0
    nsamples = 400
    mask = GradientSaliency().GetSmoothedMask(
        x,
        _identity_gradient_model(),
        stdev_spread=0.2,
        nsamples=nsamples,
        magnitude=True,
        seed=4,
        batch_size=nsamples,
    )
    expected = x**2 + stdev**2
    # Var[(x + n)^2] = 4 x^2 s^2 + 2 s^4 per sample; 5 standard errors per element.
    per_element_sd = np.sqrt((4 * x**2 * stdev**2 + 2 * stdev**4) / nsamples)
    assert np.all(np.abs(mask - expected) < 5 * per_element_sd)
    # The stdev^2 shift is there (not just x^2): averaged over elements it is accurate to a few %.
    np.testing.assert_allclose(np.mean(mask - x**2), stdev**2, rtol=0.05)


def test_smoothgrad_zero_spread_is_gradient_and_its_square() -> None:
    x = np.array([[-1.5, 0.0], [2.0, 3.0]])
    method = GradientSaliency()
    model = QuadraticModel(np.array([[1.0, 2.0], [3.0, -1.0]]))
    gradient = method.GetMask(x, model)
    squared = method.GetSmoothedMask(x, model, stdev_spread=0.0, nsamples=3, seed=0)
    plain = method.GetSmoothedMask(x, model, stdev_spread=0.0, nsamples=3, magnitude=False, seed=0)
    np.testing.assert_allclose(squared, gradient**2, rtol=1e-12)
    np.testing.assert_allclose(plain, gradient, rtol=1e-12)


def test_smoothgrad_default_is_magnitude_25_samples_spread_015() -> None:
    x = np.random.default_rng(0).uniform(0.0, 1.0, size=(30, 30))
    model = _identity_gradient_model()
    mask = GradientSaliency().GetSmoothedMask(x, model, seed=0)
    assert model.num_calls == 25
    assert model.batch_sizes == [1] * 25
    assert np.all(mask >= 0)  # magnitude=True squares the masks
    noise = np.concatenate(model.batches) - x
    expected_std = 0.15 * (x.max() - x.min())
    np.testing.assert_allclose(noise.std(), expected_std, rtol=0.03)


@pytest.mark.parametrize(
    ("nsamples", "batch_size", "expected_sizes"),
    [(25, 25, [25]), (25, 10, [10, 10, 5]), (25, 1, [1] * 25), (25, 100, [25]), (3, 2, [2, 1])],
)
def test_smoothgrad_batches_samples(nsamples: int, batch_size: int, expected_sizes: list[int]) -> None:
    model = _identity_gradient_model()
    GradientSaliency().GetSmoothedMask(
        np.ones((4, 3)), model, nsamples=nsamples, batch_size=batch_size, seed=0
    )
    assert model.batch_sizes == expected_sizes
    assert all(batch.shape[1:] == (4, 3) for batch in model.batches)


@pytest.mark.parametrize("magnitude", [True, False])
def test_smoothgrad_result_does_not_depend_on_batch_size(magnitude: bool) -> None:
    x = np.random.default_rng(2).normal(size=(6, 5))
    results = [
        GradientSaliency().GetSmoothedMask(
            x,
            TanhModel(np.full((6, 5), 1.3)),
            nsamples=12,
            batch_size=batch_size,
            magnitude=magnitude,
            seed=11,
        )
        for batch_size in (1, 5, 12)
    ]
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12)
    np.testing.assert_allclose(results[2], results[0], rtol=1e-12)


def test_smoothgrad_int_seed_reproducible_and_independent_of_global_state() -> None:
    x = np.random.default_rng(5).normal(size=(8, 8))
    method = GradientSaliency()
    np.random.seed(0)
    first = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=123)
    state_after = np.random.get_state()[1].copy()
    np.random.seed(999)
    second = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=123)
    np.testing.assert_array_equal(first, second)
    # A seeded call leaves the global state untouched.
    np.random.seed(0)
    method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=123)
    np.testing.assert_array_equal(np.random.get_state()[1], state_after)
    np.random.seed(0)
    np.testing.assert_array_equal(np.random.get_state()[1], state_after)
    other = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=124)
    assert not np.allclose(first, other)


def test_smoothgrad_generator_seed() -> None:
    x = np.random.default_rng(5).normal(size=(8, 8))
    method = GradientSaliency()
    first = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=np.random.default_rng(42))
    second = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=np.random.default_rng(42))
    np.testing.assert_array_equal(first, second)
    # The same generator advances: two calls draw different noise.
    generator = np.random.default_rng(42)
    a = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=generator)
    b = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=generator)
    np.testing.assert_array_equal(a, first)
    assert not np.allclose(a, b)
    # An int seed is the same stream as default_rng(seed).
    c = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=5, seed=42)
    np.testing.assert_array_equal(c, first)


def test_smoothgrad_seed_none_uses_global_state() -> None:
    x = np.random.default_rng(5).normal(size=(8, 8))
    method = GradientSaliency()
    np.random.seed(17)
    first = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=4)
    np.random.seed(17)
    second = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=4)
    third = method.GetSmoothedMask(x, _identity_gradient_model(), nsamples=4)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(second, third)


@pytest.mark.parametrize("batch_size", [None, 1, 4, 25])
@pytest.mark.parametrize("magnitude", [True, False])
def test_smoothgrad_parity_with_reference(magnitude: bool, batch_size: int | None) -> None:
    shape = (6, 5, 3)
    x = np.random.default_rng(8).uniform(-1, 1, size=shape)
    np.random.seed(2024)
    expected = reference.GradientSaliency().GetSmoothedMask(
        x, MLPModel(shape), stdev_spread=0.2, nsamples=10, magnitude=magnitude
    )
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    np.random.seed(2024)
    actual = GradientSaliency().GetSmoothedMask(
        x, MLPModel(shape), stdev_spread=0.2, nsamples=10, magnitude=magnitude, **kwargs
    )
    assert actual.shape == shape
    # The reference accumulates in float32.
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_smoothgrad_parity_with_reference_integrated_gradients() -> None:
    """SmoothGrad wraps any method: IG's keyword arguments go through to its GetMask."""
    shape = (4, 5)
    x = np.random.default_rng(9).uniform(-1, 1, size=shape)
    baseline = np.full(shape, 0.1)
    np.random.seed(7)
    expected = reference.IntegratedGradients().GetSmoothedMask(
        x, MLPModel(shape), nsamples=4, x_baseline=baseline, x_steps=10, batch_size=3
    )
    np.random.seed(7)
    model = MLPModel(shape)
    actual = IntegratedGradients().GetSmoothedMask(
        x, model, nsamples=4, x_baseline=baseline, x_steps=10, batch_size=3
    )
    assert model.batch_sizes == [3, 3, 3, 1] * 4
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_smoothgrad_uint8_input() -> None:
    x_uint8 = np.random.default_rng(4).integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    method = GradientSaliency()
    model = _identity_gradient_model()
    from_uint8 = method.GetSmoothedMask(x_uint8, model, nsamples=6, magnitude=False, seed=1)
    assert all(batch.dtype.kind == "f" for batch in model.batches)
    from_float = method.GetSmoothedMask(
        x_uint8.astype(np.float64), _identity_gradient_model(), nsamples=6, magnitude=False, seed=1
    )
    assert from_uint8.dtype.kind == "f"
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-3)
    # Noise of std 0.15 * 255 around the pixel values, both signs: no wrap-around into [0, 255].
    noise = np.concatenate(model.batches) - x_uint8
    assert noise.min() < -10 and noise.max() > 10
    np.testing.assert_allclose(noise.std(), 0.15 * (int(x_uint8.max()) - int(x_uint8.min())), rtol=0.1)


@pytest.mark.parametrize("stdev_spread", [-0.1, np.nan, np.inf])
def test_smoothgrad_bad_stdev_spread(stdev_spread: float) -> None:
    model = _identity_gradient_model()
    with pytest.raises(ValueError, match="stdev_spread"):
        GradientSaliency().GetSmoothedMask(np.ones(3), model, stdev_spread=stdev_spread, seed=0)
    assert model.num_calls == 0


def test_smoothgrad_non_number_stdev_spread() -> None:
    with pytest.raises(TypeError, match="stdev_spread"):
        GradientSaliency().GetSmoothedMask(np.ones(3), _identity_gradient_model(), stdev_spread="0.1")


@pytest.mark.parametrize(("nsamples", "error"), [(0, ValueError), (-2, ValueError), (2.5, TypeError)])
def test_smoothgrad_bad_nsamples(nsamples, error) -> None:
    model = _identity_gradient_model()
    with pytest.raises(error, match="nsamples"):
        GradientSaliency().GetSmoothedMask(np.ones(3), model, nsamples=nsamples, seed=0)
    assert model.num_calls == 0


@pytest.mark.parametrize("seed", ["1", 1.5, True, np.random.RandomState(0)], ids=repr)
def test_smoothgrad_bad_seed_type(seed) -> None:
    with pytest.raises(TypeError, match="seed"):
        GradientSaliency().GetSmoothedMask(np.ones(3), _identity_gradient_model(), seed=seed)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_smoothgrad_bad_batch_size(batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        GradientSaliency().GetSmoothedMask(
            np.ones(3), _identity_gradient_model(), batch_size=batch_size, seed=0
        )


def test_vanilla_gradient_scalar_input_like_reference() -> None:
    model = QuadraticModel(1.5)
    expected = reference.GradientSaliency().GetMask(np.float64(2.0), model)
    actual = GradientSaliency().GetMask(np.float64(2.0), QuadraticModel(1.5))
    np.testing.assert_allclose(actual, expected)
