"""Tests of Guided Integrated Gradients (saliencykit.core.guided_ig)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import saliency.core.guided_ig as reference_guided_ig

from saliencykit.core import INPUT_OUTPUT_GRADIENTS, GuidedIG, IntegratedGradients
from saliencykit.core import guided_ig as guided_ig_module
from saliencykit.core.guided_ig import guided_ig_path

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


# --------------------------------------------------------------------------
# Performance, round 2 (issue 16): a cheaper k-th smallest and reused buffers,
# the same numbers bit for bit.
# --------------------------------------------------------------------------


def _direct_guided_ig(x_input, x_baseline, grad_func, steps, fraction, max_dist) -> np.ndarray:
    """The path as this library computed it before issue 16: fresh arrays and a full
    ``np.partition`` at every iteration (the oracle of the bitwise tests below)."""
    shape = x_input.shape
    x_input, x_baseline = x_input.astype(np.float64).ravel(), x_baseline.astype(np.float64).ravel()
    attribution = np.zeros_like(x_input)
    diff_full = x_input - x_baseline
    l1_total = float(np.abs(diff_full).sum())
    if l1_total == 0:
        return attribution.reshape(shape)
    moving = np.flatnonzero(diff_full)
    diff, base, target = diff_full[moving], x_baseline[moving], x_input[moving]
    x, x_full, attr = base.copy(), x_baseline.copy(), np.zeros_like(base)
    quantile_index = int(math.floor(fraction * (len(x_input) - 1)))
    for step in range(steps):
        x_full[moving] = x
        grad = np.asarray(grad_func(x_full.reshape(shape).copy())).ravel()[moving]
        abs_grad = np.abs(grad)
        largest = np.finfo(abs_grad.dtype).max
        alpha = (step + 1.0) / steps
        alpha_min, alpha_max = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        x_max = base + diff * alpha_max
        l1_target = l1_total * (1 - (step + 1) / steps)
        x_start = x.copy()
        behind = ((x - base) / diff < alpha_min).astype(np.float64)
        x = x * (1 - behind) + (base + diff * alpha_min) * behind
        l1_current = float(np.abs(x - target).sum())
        excluded = (x == x_max).astype(np.float64)
        while not math.isclose(l1_target, l1_current, rel_tol=1e-9, abs_tol=1e-9):
            keyed = np.maximum(abs_grad, excluded.astype(abs_grad.dtype) * largest)
            threshold = (
                np.partition(keyed, quantile_index)[quantile_index] if quantile_index < len(x) else largest
            )
            selected = (keyed <= threshold).astype(np.float64) if threshold < largest else 1 - excluded
            gap_selected = float((np.abs(x - x_max) * selected).sum())
            if gap_selected <= 0:
                break
            gamma = (l1_current - l1_target) / gap_selected
            if gamma > 1.0:
                x = x * (1 - selected) + x_max * selected
                excluded = np.maximum(excluded, selected)
                l1_current -= gap_selected
            else:
                x = x + (x_max - x) * gamma * selected
                break
        attr += (x - x_start) * grad
    attribution[moving] = attr
    return attribution.reshape(shape)


@pytest.mark.parametrize(
    ("shape", "dtype", "kwargs"),
    [
        ((48, 40, 6), np.float32, dict(steps=12)),  # 11520 features: the sampled selection
        ((48, 40, 6), np.float64, dict(steps=10, fraction=0.1, max_dist=0.1)),
        ((50, 50, 4), np.float32, dict(steps=8, fraction=0.6, max_dist=1.0)),
        ((30, 30, 3), np.float64, dict(steps=15, fraction=0.25, max_dist=0.0)),
        ((7, 6, 3), np.float64, dict(steps=20, fraction=0.3, max_dist=0.05)),  # a full partition
    ],
)
def test_path_is_bitwise_the_direct_computation(shape, dtype, kwargs) -> None:
    """The buffers, the 0/1 masks in place and the sampled selection change no bit."""
    rng = np.random.default_rng(21)
    x_input = rng.random(shape)
    x_input[rng.random(shape) < 0.1] = 0.0  # some features never move
    weights = rng.normal(size=shape)

    def gradient(point: np.ndarray) -> np.ndarray:
        # Nonlinear, with exact ties (rounded values) and many gradients at zero.
        return (np.round(weights * np.cos(3 * point) * (point > 0.4), 2)).astype(dtype)

    ours = guided_ig_path(x_input, np.zeros(shape), gradient, **kwargs)
    direct = _direct_guided_ig(
        x_input, np.zeros(shape), gradient, **dict(dict(fraction=0.25, max_dist=0.02), **kwargs)
    )
    np.testing.assert_array_equal(ours, direct)


@pytest.fixture(scope="module")
def pretrained_call_model():
    """chelsea() at 224 x 224 (float32 in [0, 1]) and the gradient of EfficientNet-Lite0's logit 285."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    from skimage import data, transform

    from tests.pretrained import IMAGENET_MEAN, IMAGENET_STD, efficientnet_lite0

    net = efficientnet_lite0()
    image = transform.resize(data.chelsea(), (224, 224)).astype(np.float32)

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        x = torch.from_numpy(np.ascontiguousarray(x_batch, dtype=np.float32)).permute(0, 3, 1, 2)
        x.requires_grad_(True)
        logits = net((x - IMAGENET_MEAN) / IMAGENET_STD)
        (gradient,) = torch.autograd.grad(logits[:, 285].sum(), x)
        return {INPUT_OUTPUT_GRADIENTS: gradient.permute(0, 2, 3, 1).numpy()}

    return image, call_model


def test_get_mask_on_the_pretrained_model_is_bitwise_the_direct_computation(pretrained_call_model) -> None:
    """EfficientNet-Lite0 on chelsea (150528 features, float32 gradients), 6 steps."""
    image, call_model = pretrained_call_model
    ours = GuidedIG().GetMask(image, call_model, x_steps=6)

    def gradient(point: np.ndarray) -> np.ndarray:
        return call_model(point[None].astype(np.float32))[INPUT_OUTPUT_GRADIENTS][0]

    direct = _direct_guided_ig(image, np.zeros_like(image), gradient, 6, 0.25, 0.02)
    np.testing.assert_array_equal(ours, direct)


@pytest.mark.parametrize("n", [1, 5, 4 * 2048, 4 * 2048 + 1, 20000, 150528])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kth_smallest_equals_partition(n: int, dtype) -> None:
    rng = np.random.default_rng(n)
    largest = np.finfo(dtype).max
    cases = [
        rng.random(n).astype(dtype),
        np.abs(rng.normal(size=n)).astype(dtype) ** 3,  # heavy tail
        np.round(rng.random(n), 1).astype(dtype),  # 11 values: many ties
        np.zeros(n, dtype),
        np.where(rng.random(n) < 0.5, largest, rng.random(n)).astype(dtype),  # excluded features
        np.sort(rng.random(n)).astype(dtype)[::-1].copy(),
    ]
    positions = guided_ig_module._sample_positions(n)
    for values in cases:
        for k in sorted({0, n // 4, n // 2, n - 1}):
            expected = np.partition(values, k)[k]
            got = guided_ig_module._kth_smallest(values, k, positions)
            assert got == expected and type(got) is type(expected), (n, k)


def test_kth_smallest_falls_back_when_the_sample_misleads() -> None:
    """Sampled positions hold the largest values: the bracket misses, the whole array is partitioned."""
    n = 20000
    positions = guided_ig_module._sample_positions(n)
    values = np.random.default_rng(3).random(n)
    values[positions] = 10 + np.arange(len(positions))
    for k in [0, 5000, n - 1]:
        assert guided_ig_module._kth_smallest(values, k, positions) == np.partition(values, k)[k]


def test_the_model_inputs_are_never_overwritten() -> None:
    """The path lives in reused buffers; every input handed to the model stays as it was."""
    model = mlp((5, 4, 3), seed=8)
    x_value = np.random.default_rng(9).random((5, 4, 3))  # float64: no conversion makes a copy
    GuidedIG().GetMask(x_value, model, x_steps=6)
    seen: list[np.ndarray] = []

    def keeping_model(x_batch, call_model_args=None, expected_keys=None):
        seen.append(x_batch)  # a reference, not a copy
        return model(x_batch, call_model_args, expected_keys)

    GuidedIG().GetMask(x_value, keeping_model, x_steps=6)
    for kept, recorded in zip(seen, model.batches[:6], strict=True):
        np.testing.assert_array_equal(kept, recorded)
