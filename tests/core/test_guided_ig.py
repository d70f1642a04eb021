"""Tests of Guided Integrated Gradients (saliencykit.core.guided_ig)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import saliency.core.guided_ig as reference_guided_ig

from saliencykit.core import INPUT_OUTPUT_GRADIENTS, GuidedIG, IntegratedGradients

from .models import ConstantOutputModel, LinearModel, MLPModel, never_called


def mlp(input_shape: tuple[int, ...], seed: int = 0) -> MLPModel:
    """The one-hidden-layer network of these tests: 6 hidden units."""
    return MLPModel(input_shape, hidden=6, seed=seed)


def value(model: MLPModel, x: np.ndarray) -> float:
    """The model's output on one example."""
    return float(model.value(x[np.newaxis].astype(np.float64))[0])


@pytest.fixture
def reference_without_numpy2_crash(monkeypatch):
    """The reference calls np.quantile(interpolation=...), removed in NumPy 2.4: patch it here only."""
    patched_numpy = types.SimpleNamespace(
        **{name: getattr(np, name) for name in dir(np) if not name.startswith("__")}
    )
    patched_numpy.quantile = lambda a, q, interpolation="linear": np.quantile(a, q, method=interpolation)
    monkeypatch.setattr(reference_guided_ig, "np", patched_numpy)
    return reference_guided_ig.GuidedIG()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(x_steps=30),
        dict(x_steps=40, fraction=0.1, max_dist=0.1),
        dict(x_steps=15, fraction=0.5, max_dist=1.0),
        dict(x_steps=25, fraction=0.02, max_dist=0.3),
    ],
)
def test_matches_reference(reference_without_numpy2_crash, kwargs: dict) -> None:
    rng = np.random.default_rng(5)
    x_value = rng.random((6, 7, 3))
    x_value[0, :2] = 0.0  # features equal to the baseline never move
    baseline = np.zeros_like(x_value)
    model = mlp(x_value.shape)
    ours = GuidedIG().GetMask(x_value, model, x_baseline=baseline, **kwargs)
    theirs = reference_without_numpy2_crash.GetMask(x_value, model, x_baseline=baseline, **kwargs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_matches_reference_with_a_random_baseline(reference_without_numpy2_crash) -> None:
    rng = np.random.default_rng(7)
    x_value, baseline = rng.normal(size=50), rng.normal(size=50)
    model = mlp((50,), seed=2)
    ours = GuidedIG().GetMask(x_value, model, x_baseline=baseline, x_steps=20, max_dist=0.2)
    theirs = reference_without_numpy2_crash.GetMask(
        x_value, model, x_baseline=baseline, x_steps=20, max_dist=0.2
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_linear_model_gives_integrated_gradients() -> None:
    """For f = 2*x1 + x2 every path gives (x - b) * w."""
    weights = np.array([2.0, 1.0])
    x_value = np.array([3.0, -4.0])
    baseline = np.array([1.0, 1.0])
    attribution = GuidedIG().GetMask(x_value, LinearModel(weights), x_baseline=baseline, x_steps=10)
    np.testing.assert_allclose(attribution, (x_value - baseline) * weights, rtol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(max_dist=0.0), dict(fraction=1.0), dict(fraction=1.0, max_dist=1.0)])
def test_degenerate_settings_give_straight_line_ig(kwargs: dict) -> None:
    """With no allowed deviation, or all features moved at once, the path is the straight line."""
    rng = np.random.default_rng(11)
    x_value = rng.random((5, 4, 3))
    model = mlp(x_value.shape, seed=4)
    guided = GuidedIG().GetMask(x_value, model, x_steps=20, **kwargs)
    # Each step takes the gradient where the previous step ended: a left Riemann sum.
    straight = IntegratedGradients().GetMask(x_value, model, x_steps=20, integration_rule="riemann_left")
    np.testing.assert_allclose(guided, straight, rtol=1e-8, atol=1e-12)


def test_completeness_on_a_nonlinear_model() -> None:
    rng = np.random.default_rng(2)
    x_value = rng.random(40)
    model = mlp((40,), seed=9)
    attribution = GuidedIG().GetMask(x_value, model, x_steps=400)
    expected = value(model, x_value) - value(model, np.zeros(40))
    assert abs(attribution.sum() - expected) < 0.02 * abs(expected) + 1e-6


def test_one_call_per_step_and_none_when_input_is_baseline() -> None:
    model = mlp((12,))
    GuidedIG().GetMask(np.ones(12), model, x_steps=17)
    assert model.num_calls == 17
    assert not GuidedIG().GetMask(np.ones(12), model, x_baseline=np.ones(12)).any()
    assert model.num_calls == 17  # no call more


def test_integer_input_is_converted() -> None:
    x_uint8 = np.array([[200, 10], [255, 0]], dtype=np.uint8)
    model = mlp(x_uint8.shape)
    from_uint8 = GuidedIG().GetMask(x_uint8, model, x_steps=10)
    from_float = GuidedIG().GetMask(x_uint8.astype(np.float64), model, x_steps=10)
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5)


def test_nan_gradients_raise_instead_of_looping_forever() -> None:
    def nan_model(x_batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: np.full(np.shape(x_batch), np.nan)}

    with pytest.raises(ValueError, match="non-finite"):
        GuidedIG().GetMask(np.ones(8), nan_model, x_steps=5)


def test_zero_gradients_terminate() -> None:
    attribution = GuidedIG().GetMask(np.ones((3, 3)), LinearModel(np.zeros((3, 3))), x_steps=5)
    assert not attribution.any()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(x_steps=0), ValueError, "x_steps"),
        (dict(fraction=0.0), ValueError, "fraction"),
        (dict(fraction=1.5), ValueError, "fraction"),
        (dict(max_dist=-0.1), ValueError, "max_dist"),
        (dict(max_dist=2.0), ValueError, "max_dist"),
        (dict(max_dist=float("nan")), ValueError, "max_dist"),
        (dict(x_baseline=np.zeros(3)), ValueError, "x_baseline"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        GuidedIG().GetMask(np.ones(4), mlp((4,)), **kwargs)


def test_wrong_gradient_shape() -> None:
    bad_model = ConstantOutputModel({INPUT_OUTPUT_GRADIENTS: np.zeros((1, 3))})
    with pytest.raises(ValueError, match=r"INPUT_OUTPUT_GRADIENTS.*\(1, 4\).*\(1, 3\)"):
        GuidedIG().GetMask(np.ones(4), bad_model)


# --------------------------------------------------------------------------
# Sparse inputs and huge step counts (issue 11, items 10 and 13).
# --------------------------------------------------------------------------


def _sparse_digit(n_nonzero: int = 32, seed: int = 0) -> np.ndarray:
    """A 28 x 28 image, black but for ``n_nonzero`` pixels (an MNIST-like stroke)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((28, 28))
    image.flat[rng.choice(image.size, n_nonzero, replace=False)] = rng.uniform(0.2, 1.0, n_nonzero)
    return image


@pytest.mark.parametrize(
    "kwargs",
    [dict(x_steps=40), dict(x_steps=30, fraction=0.1, max_dist=0.2), dict(x_steps=25, fraction=0.03)],
)
def test_sparse_input_matches_reference(reference_without_numpy2_crash, kwargs: dict) -> None:
    # 32 of 784 features can move: fewer than the fraction (25% = 196) asks for, so every
    # feature that can still move is selected (the reference's quantile falls on the
    # features equal to the baseline); fraction=0.03 (23 features) still picks among them.
    x_value = _sparse_digit()
    model = mlp(x_value.shape, seed=3)
    ours = GuidedIG().GetMask(x_value, model, x_baseline=np.zeros_like(x_value), **kwargs)
    theirs = reference_without_numpy2_crash.GetMask(
        x_value, model, x_baseline=np.zeros_like(x_value), **kwargs
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    assert not ours[x_value == 0].any()


def test_sparse_input_completeness() -> None:
    x_value = _sparse_digit(seed=1)
    model = mlp(x_value.shape, seed=5)
    attribution = GuidedIG().GetMask(x_value, model, x_steps=1000)
    expected = value(model, x_value) - value(model, np.zeros_like(x_value))
    assert abs(attribution.sum() - expected) < 0.02 * abs(expected) + 1e-6


def test_huge_step_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"x_steps must be an integer <= 10000000"):
        GuidedIG().GetMask(np.ones(4), never_called, x_steps=10**10)
