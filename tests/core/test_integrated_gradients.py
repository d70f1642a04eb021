"""Tests of Integrated Gradients (saliencykit.core.integrated_gradients)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import saliency.core as reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from saliencykit.core import (
    INPUT_OUTPUT_GRADIENTS,
    INTEGRATION_RULES,
    OUTPUT_LAYER_VALUES,
    IntegratedGradients,
    IntegratedGradientsOutput,
)
from saliencykit.core.base import scalar_outputs

from .models import LinearModel, MLPModel, TanhModel

ALL_RULES = list(INTEGRATION_RULES)


def _tanh_setup(shape=(6, 5, 3), seed=0):
    rng = np.random.default_rng(seed)
    model = TanhModel(rng.normal(size=shape))
    x = rng.uniform(-1.5, 1.5, size=shape)
    baseline = rng.uniform(-0.5, 0.5, size=shape)
    return model, x, baseline


# --------------------------------------------------------------------------
# Linear models: IG = (x - baseline) * w for every rule and batch size.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ALL_RULES)
@pytest.mark.parametrize("batch_size", [1, 4, 25, 100])
def test_linear_model_identity(rule: str, batch_size: int) -> None:
    rng = np.random.default_rng(1)
    shape = (5, 4, 3)
    weights = rng.normal(size=shape)
    x = rng.normal(size=shape)
    baseline = rng.normal(size=shape)
    mask = IntegratedGradients().GetMask(
        x, LinearModel(weights), x_baseline=baseline, x_steps=25, batch_size=batch_size, integration_rule=rule
    )
    assert mask.shape == shape
    np.testing.assert_allclose(mask, (x - baseline) * weights, rtol=1e-12, atol=1e-14)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
    x_steps=st.integers(min_value=2, max_value=30),
    batch_size=st.integers(min_value=1, max_value=40),
    rule=st.sampled_from(ALL_RULES),
)
def test_linear_model_identity_property(data, shape, x_steps, batch_size, rule) -> None:
    finite = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False)
    x = data.draw(hnp.arrays(np.float64, shape, elements=finite), label="x")
    baseline = data.draw(hnp.arrays(np.float64, shape, elements=finite), label="baseline")
    weights = data.draw(hnp.arrays(np.float64, shape, elements=finite), label="weights")
    model = LinearModel(weights)
    mask = IntegratedGradients().GetMask(
        x, model, x_baseline=baseline, x_steps=x_steps, batch_size=batch_size, integration_rule=rule
    )
    np.testing.assert_allclose(mask, (x - baseline) * weights, rtol=1e-10, atol=1e-10)
    assert sum(model.batch_sizes) == x_steps
    assert max(model.batch_sizes) <= batch_size
    assert model.num_calls == -(-x_steps // batch_size)


def test_linear_model_default_baseline_is_zero_and_default_steps_25() -> None:
    weights = np.array([[1.0, -2.0], [0.5, 3.0]])
    x = np.array([[2.0, 1.0], [-4.0, 0.25]])
    model = LinearModel(weights)
    mask = IntegratedGradients().GetMask(x, model)
    np.testing.assert_allclose(mask, x * weights, rtol=1e-12)
    assert model.batch_sizes == [1] * 25  # reference default: batch_size=1
    # The path starts at zero and ends at x, both included (linspace).
    np.testing.assert_array_equal(model.batches[0][0], np.zeros_like(x))
    np.testing.assert_allclose(model.batches[-1][0], x)
    np.testing.assert_allclose(model.batches[12][0], 0.5 * x)


def test_path_points_follow_the_rule() -> None:
    x = np.array([2.0, -1.0, 4.0])
    baseline = np.array([1.0, 1.0, 0.0])
    for rule in ALL_RULES:
        model = LinearModel(np.ones(3))
        IntegratedGradients().GetMask(
            x, model, x_baseline=baseline, x_steps=6, batch_size=4, integration_rule=rule
        )
        from saliencykit.core.integration import integration_points

        alphas, _ = integration_points(rule, 6)
        points = np.concatenate(model.batches)
        np.testing.assert_allclose(points, baseline + alphas[:, None] * (x - baseline), rtol=1e-14)


def test_one_dimensional_input() -> None:
    weights = np.array([3.0, -1.0, 0.5, 2.0])
    x = np.array([1.0, 2.0, 3.0, 4.0])
    mask = IntegratedGradients().GetMask(x, LinearModel(weights), x_steps=7, batch_size=3)
    assert mask.shape == (4,)
    np.testing.assert_allclose(mask, x * weights, rtol=1e-12)
    # The reference's nonlinear example: 5x + y^2 + sin(z) from (0.5, 1, 1) to (1, 2, 3).
    x = np.array([1.0, 2.0, 3.0])
    baseline = np.array([0.5, 1.0, 1.0])

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        grads = np.stack([np.full(len(x_batch), 5.0), 2 * x_batch[:, 1], np.cos(x_batch[:, 2])], axis=1)
        return {INPUT_OUTPUT_GRADIENTS: grads}

    expected = np.array([5 * 0.5, 4.0 - 1.0, np.sin(3.0) - np.sin(1.0)])
    mask = IntegratedGradients().GetMask(
        x, call_model, x_baseline=baseline, x_steps=20, integration_rule="gausslegendre"
    )
    np.testing.assert_allclose(mask, expected, rtol=1e-12)


# --------------------------------------------------------------------------
# Nonlinear models: completeness, convergence with the number of steps.
# --------------------------------------------------------------------------


def _completeness_error(model, x, baseline, **kwargs) -> float:
    mask = IntegratedGradients().GetMask(x, model, x_baseline=baseline, **kwargs)
    return abs(mask.sum() - (model.value(x[None])[0] - model.value(baseline[None])[0]))


@pytest.mark.parametrize("rule", ALL_RULES)
def test_completeness_converges_with_steps(rule: str) -> None:
    model, x, baseline = _tanh_setup()
    total = abs(model.value(x[None])[0] - model.value(baseline[None])[0])
    assert total > 0.1
    coarse = _completeness_error(model, x, baseline, x_steps=10, integration_rule=rule, batch_size=50)
    fine = _completeness_error(model, x, baseline, x_steps=200, integration_rule=rule, batch_size=50)
    assert fine < 0.02 * total
    assert fine < coarse / 10


def test_gausslegendre_beats_linspace() -> None:
    model, x, baseline = _tanh_setup()
    linspace = _completeness_error(model, x, baseline, x_steps=25, batch_size=25)
    gauss = _completeness_error(
        model, x, baseline, x_steps=25, batch_size=25, integration_rule="gausslegendre"
    )
    assert gauss < 1e-6
    assert gauss < linspace / 1000


def test_per_feature_attribution_of_separable_model() -> None:
    """For f = sum(tanh(w x)) each feature's IG is tanh(w x) - tanh(w b)."""
    model, x, baseline = _tanh_setup(shape=(10,))
    mask = IntegratedGradients().GetMask(
        x, model, x_baseline=baseline, x_steps=30, integration_rule="gausslegendre", batch_size=30
    )
    expected = np.tanh(model.weights * x) - np.tanh(model.weights * baseline)
    np.testing.assert_allclose(mask, expected, rtol=1e-8, atol=1e-10)


def test_get_mask_with_details_completeness() -> None:
    shape = (4, 4, 3)
    model = MLPModel(shape, seed=2)
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=shape)
    baseline = rng.uniform(-0.2, 0.2, size=shape)
    details = IntegratedGradients().GetMaskWithDetails(
        x, model, x_baseline=baseline, x_steps=200, batch_size=50
    )
    assert isinstance(details, IntegratedGradientsOutput)
    assert details.attribution.shape == shape
    f_x = model.value(x[None])[0]
    f_b = model.value(baseline[None])[0]
    assert details.output_at_input == pytest.approx(f_x, rel=1e-12)
    assert details.output_at_baseline == pytest.approx(f_b, rel=1e-12)
    assert details.completeness_error == pytest.approx(details.attribution.sum() - (f_x - f_b), abs=1e-12)
    assert abs(details.completeness_error) < 0.01 * abs(f_x - f_b)
    # Same attribution as GetMask.
    np.testing.assert_allclose(
        details.attribution,
        IntegratedGradients().GetMask(
            x, MLPModel(shape, seed=2), x_baseline=baseline, x_steps=200, batch_size=50
        ),
        rtol=1e-12,
    )
    coarse = IntegratedGradients().GetMaskWithDetails(x, model, x_baseline=baseline, x_steps=5, batch_size=5)
    assert abs(coarse.completeness_error) > abs(details.completeness_error)


def test_get_mask_with_details_linear_model_has_zero_error() -> None:
    weights = np.arange(12.0).reshape(3, 4) - 5
    x = np.linspace(-1, 2, 12).reshape(3, 4)
    details = IntegratedGradients().GetMaskWithDetails(
        x, LinearModel(weights, offset=3.0), x_steps=3, batch_size=3
    )
    np.testing.assert_allclose(details.attribution, x * weights, rtol=1e-12)
    assert details.output_at_baseline == pytest.approx(3.0)
    assert details.completeness_error == pytest.approx(0.0, abs=1e-10)


def test_get_mask_with_details_calls() -> None:
    model, x, baseline = _tanh_setup(shape=(5,))
    IntegratedGradients().GetMaskWithDetails(x, model, x_baseline=baseline, x_steps=25, batch_size=10)
    assert model.batch_sizes[:3] == [10, 10, 5]
    assert model.expected_keys[:3] == [[INPUT_OUTPUT_GRADIENTS]] * 3
    # One more call, for f(baseline) and f(x), asking only for the output values.
    assert model.num_calls == 4
    assert model.expected_keys[3] == [OUTPUT_LAYER_VALUES]
    np.testing.assert_allclose(model.batches[3], np.stack([baseline, x]))


def test_get_mask_with_details_respects_batch_size_one() -> None:
    model, x, baseline = _tanh_setup(shape=(5,))
    IntegratedGradients().GetMaskWithDetails(x, model, x_baseline=baseline, x_steps=5, batch_size=1)
    assert max(model.batch_sizes) <= 1


def test_get_mask_with_details_accepts_column_output_values() -> None:
    model, x, baseline = _tanh_setup(shape=(5,))

    def column_model(x_batch, call_model_args=None, expected_keys=None):
        out = model(x_batch, call_model_args, expected_keys)
        out[OUTPUT_LAYER_VALUES] = out[OUTPUT_LAYER_VALUES][:, None]
        return out

    details = IntegratedGradients().GetMaskWithDetails(x, column_model, x_baseline=baseline, x_steps=5)
    assert details.output_at_input == pytest.approx(model.value(x[None])[0])


def test_get_mask_with_details_missing_output_values() -> None:
    def gradients_only(x_batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: np.ones_like(x_batch)}

    with pytest.raises(ValueError, match=OUTPUT_LAYER_VALUES):
        IntegratedGradients().GetMaskWithDetails(np.ones(3), gradients_only, x_steps=3)


@pytest.mark.parametrize("per_example_shape", [(3,), (2, 1), (1, 2)])
def test_get_mask_with_details_more_than_one_output_value(per_example_shape) -> None:
    def multi_output(x_batch, call_model_args=None, expected_keys=None):
        return {
            INPUT_OUTPUT_GRADIENTS: np.ones_like(x_batch),
            OUTPUT_LAYER_VALUES: np.ones((len(x_batch), *per_example_shape)),
        }

    with pytest.raises(ValueError, match=OUTPUT_LAYER_VALUES):
        IntegratedGradients().GetMaskWithDetails(np.ones(3), multi_output, x_steps=3)


def test_scalar_outputs() -> None:
    np.testing.assert_array_equal(scalar_outputs(np.array([1.0, 2.0])), [1.0, 2.0])
    np.testing.assert_array_equal(scalar_outputs(np.array([[1.0], [2.0]])), [1.0, 2.0])
    for bad in (np.array(1.0), np.ones((2, 2)), np.ones((2, 1, 1))):
        with pytest.raises(ValueError, match="OUTPUT_LAYER_VALUES"):
            scalar_outputs(bad)


# --------------------------------------------------------------------------
# Batching and arguments.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x_steps", "batch_size", "expected_sizes"),
    [
        (25, 10, [10, 10, 5]),
        (25, 1, [1] * 25),
        (25, 25, [25]),
        (1001, 500, [500, 500, 1]),
        (999, 1000, [999]),
        (1, 1, [1]),
        (1, 8, [1]),
    ],
)
def test_calls_under_batching(x_steps: int, batch_size: int, expected_sizes: list[int]) -> None:
    model = LinearModel(np.ones(3))
    IntegratedGradients().GetMask(np.ones(3), model, x_steps=x_steps, batch_size=batch_size)
    assert model.batch_sizes == expected_sizes


def test_call_model_args_and_keys_passed_to_every_call() -> None:
    model = LinearModel(np.ones(3))
    args = {"foo": "bar"}
    IntegratedGradients().GetMask(np.ones(3), model, call_model_args=args, x_steps=50, batch_size=7)
    assert model.num_calls == 8
    assert all(a is args for a in model.call_model_args)
    assert model.expected_keys == [[INPUT_OUTPUT_GRADIENTS]] * 8


def test_batch_size_does_not_change_the_result() -> None:
    model, x, baseline = _tanh_setup()
    results = [
        IntegratedGradients().GetMask(x, model, x_baseline=baseline, x_steps=30, batch_size=b)
        for b in (1, 7, 30)
    ]
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(results[2], results[0], rtol=1e-12, atol=1e-15)


def test_baseline_shape_mismatch() -> None:
    model = LinearModel(np.ones((2, 3)))
    with pytest.raises(ValueError, match=re.escape("x_baseline")) as info:
        IntegratedGradients().GetMask(np.ones((2, 3)), model, x_baseline=np.zeros((3, 2)))
    assert "(2, 3)" in str(info.value) and "(3, 2)" in str(info.value)
    with pytest.raises(ValueError, match="x_baseline"):
        IntegratedGradients().GetMask(np.ones((2, 3)), model, x_baseline=np.zeros(6))
    with pytest.raises(ValueError, match="x_baseline"):
        IntegratedGradients().GetMaskWithDetails(np.ones((2, 3)), model, x_baseline=np.zeros((2, 3, 1)))
    assert model.num_calls == 0


@pytest.mark.parametrize(("x_steps", "error"), [(0, ValueError), (-5, ValueError), (2.5, TypeError)])
def test_bad_x_steps(x_steps, error) -> None:
    model = LinearModel(np.ones(3))
    with pytest.raises(error, match="x_steps"):
        IntegratedGradients().GetMask(np.ones(3), model, x_steps=x_steps)
    assert model.num_calls == 0


@pytest.mark.parametrize(("batch_size", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError)])
def test_bad_batch_size(batch_size, error) -> None:
    with pytest.raises(error, match="batch_size"):
        IntegratedGradients().GetMask(np.ones(3), LinearModel(np.ones(3)), batch_size=batch_size)


def test_unknown_integration_rule() -> None:
    with pytest.raises(ValueError, match="integration_rule"):
        IntegratedGradients().GetMask(np.ones(3), LinearModel(np.ones(3)), integration_rule="simpson")


def test_bad_gradient_shape_error_like_reference() -> None:
    def bad_model(x_batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: np.ones_like(x_batch)[0]}

    expected = reference.base.SHAPE_ERROR_MESSAGE[INPUT_OUTPUT_GRADIENTS].format((500, 3), (3,))
    with pytest.raises(ValueError, match=re.escape(expected)):
        IntegratedGradients().GetMask(np.ones(3), bad_model, x_steps=2001, batch_size=500)


def test_non_finite_input_rejected() -> None:
    with pytest.raises(ValueError, match="x_value"):
        IntegratedGradients().GetMask(np.array([1.0, np.nan]), LinearModel(np.ones(2)))


# --------------------------------------------------------------------------
# Integer inputs.
# --------------------------------------------------------------------------


def test_uint8_input_and_baseline_do_not_wrap_around() -> None:
    x = np.array([[10, 200, 0], [255, 3, 128]], dtype=np.uint8)
    baseline = np.array([[50, 100, 255], [0, 200, 128]], dtype=np.uint8)
    weights = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]])
    model = LinearModel(weights)
    mask = IntegratedGradients().GetMask(x, model, x_baseline=baseline, x_steps=5, batch_size=5)
    assert all(batch.dtype.kind == "f" for batch in model.batches)
    expected = (x.astype(np.float64) - baseline.astype(np.float64)) * weights
    np.testing.assert_allclose(mask, expected, rtol=1e-6)
    # Same as giving float inputs.
    nonlinear = TanhModel(weights / 100)
    from_uint8 = IntegratedGradients().GetMask(x, nonlinear, x_baseline=baseline, x_steps=9)
    from_float = IntegratedGradients().GetMask(
        x.astype(np.float64), nonlinear, x_baseline=baseline.astype(np.float64), x_steps=9
    )
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-6)


def test_uint8_input_default_baseline() -> None:
    x = np.array([0, 1, 127, 255], dtype=np.uint8)
    mask = IntegratedGradients().GetMask(x, LinearModel(np.array([1.0, 2.0, 3.0, 4.0])), x_steps=4)
    np.testing.assert_allclose(mask, [0.0, 2.0, 381.0, 1020.0], rtol=1e-6)


def test_float32_input_gives_float32_result() -> None:
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)

    def float32_model(x_batch, call_model_args=None, expected_keys=None):
        assert x_batch.dtype == np.float32
        return {INPUT_OUTPUT_GRADIENTS: (2 * x_batch).astype(np.float32)}

    mask = IntegratedGradients().GetMask(x, float32_model, x_steps=10, batch_size=4)
    assert mask.dtype == np.float32


# --------------------------------------------------------------------------
# Parity with the reference library.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "x_steps", "batch_size"),
    [((7,), 25, 1), ((5, 4, 3), 25, 10), ((6, 6, 3), 40, 40), ((3, 2), 13, 5), ((4,), 2, 1)],
)
def test_parity_with_reference(shape, x_steps: int, batch_size: int) -> None:
    rng = np.random.default_rng(sum(shape) + x_steps)
    x = rng.normal(size=shape)
    baseline = rng.normal(size=shape) * 0.3
    ref_model, model = MLPModel(shape, seed=5), MLPModel(shape, seed=5)
    expected = reference.IntegratedGradients().GetMask(
        x, ref_model, x_baseline=baseline, x_steps=x_steps, batch_size=batch_size
    )
    actual = IntegratedGradients().GetMask(
        x, model, x_baseline=baseline, x_steps=x_steps, batch_size=batch_size
    )
    # The reference sums the gradients in float32.
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    assert model.batch_sizes == ref_model.batch_sizes
    for ours, theirs in zip(model.batches, ref_model.batches, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=1e-15)


def test_parity_with_reference_default_arguments() -> None:
    shape = (4, 4, 3)
    x = np.random.default_rng(11).uniform(0, 1, size=shape)
    expected = reference.IntegratedGradients().GetMask(x, MLPModel(shape))
    actual = IntegratedGradients().GetMask(x, MLPModel(shape))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------
# float16 inputs and huge step counts (issue 11, item 13).
# --------------------------------------------------------------------------


def test_float16_input_is_computed_in_float32_and_stays_finite() -> None:
    # A half-precision model: float16 inputs, float16 gradients. (x - baseline) and
    # (x - baseline) * gradient overflow float16 (largest 65504): the old code returned inf.
    x = np.array([60000.0, -60000.0, 1000.0, 0.5], dtype=np.float16)
    baseline = np.array([-60000.0, 60000.0, 0.0, 0.0], dtype=np.float16)
    received = []

    def half_model(x_batch, call_model_args=None, expected_keys=None):
        received.append(x_batch.dtype)
        return {INPUT_OUTPUT_GRADIENTS: np.full(x_batch.shape, 2.0, dtype=np.float16)}

    mask = IntegratedGradients().GetMask(x, half_model, x_baseline=baseline, x_steps=5, batch_size=5)
    assert mask.dtype == np.float32
    assert np.isfinite(mask).all()
    np.testing.assert_allclose(mask, [240000.0, -240000.0, 2000.0, 1.0], rtol=1e-6)
    assert received == [np.float16]  # the model still gets its own dtype

    details = IntegratedGradients().GetMaskWithDetails(
        x, LinearModel(np.full(4, 2.0)), x_baseline=baseline, x_steps=3
    )
    np.testing.assert_allclose(details.completeness_error, 0.0, atol=1e-6)


@pytest.mark.parametrize("rule", ["linspace", "gausslegendre"])
def test_huge_x_steps_are_refused_before_allocating(rule: str) -> None:
    model = LinearModel(np.ones(3))
    with pytest.raises(
        ValueError, match=r"x_steps must be an integer <= 10000000 \(the most model evaluations"
    ):
        IntegratedGradients().GetMask(np.ones(3), model, x_steps=10**10, integration_rule=rule)
    assert model.num_calls == 0
