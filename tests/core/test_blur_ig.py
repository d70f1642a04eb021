"""Tests of Blur IG and its fast Gaussian blur (saliencykit.core.blur_ig)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import saliency.core as reference
from scipy import ndimage
from skimage import data, transform

from saliencykit.core import INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES, BlurIG, blur_ig
from saliencykit.core.blur_ig import blur_path, gaussian_blur, gaussian_blur_matrix


class TanhModel:
    """f(x) = sum(tanh(w * x)): smooth, nonlinear, with an exact gradient; counts calls."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0) -> None:
        self.weights = np.random.default_rng(seed).normal(size=shape)
        self.batch_sizes: list[int] = []

    def value(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x * self.weights).reshape(len(x), -1).sum(axis=1)

    def __call__(self, x_batch, call_model_args=None, expected_keys=None):
        x_batch = np.asarray(x_batch, dtype=np.float64)
        self.batch_sizes.append(len(x_batch))
        gradients = self.weights * (1 - np.tanh(x_batch * self.weights) ** 2)
        return {INPUT_OUTPUT_GRADIENTS: gradients, OUTPUT_LAYER_VALUES: self.value(x_batch)}


@pytest.fixture(scope="module")
def cat_image() -> np.ndarray:
    return transform.resize(data.chelsea(), (40, 48), anti_aliasing=True)


@pytest.mark.parametrize("n", [1, 7, 64])
@pytest.mark.parametrize("sigma", [0.0, 0.01, 0.3, 1.0, 2.5, 9.99, 80.0])
def test_blur_matrix_equals_scipy_filter(n: int, sigma: float) -> None:
    vector = np.random.default_rng(1).normal(size=n)
    expected = ndimage.gaussian_filter1d(vector, sigma, mode="constant") if sigma else vector
    np.testing.assert_allclose(gaussian_blur_matrix(n, sigma) @ vector, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("sigma", [0.0, 0.5, 3.0, 17.0, 50.01])
def test_gaussian_blur_equals_reference_blur(cat_image: np.ndarray, sigma: float) -> None:
    expected = reference.blur_ig.gaussian_blur(cat_image, sigma)
    np.testing.assert_allclose(gaussian_blur(cat_image, sigma), expected, rtol=1e-12, atol=1e-13)
    gray = cat_image[..., 0]
    expected_2d = ndimage.gaussian_filter(gray, sigma, mode="constant") if sigma else gray
    np.testing.assert_allclose(gaussian_blur(gray, sigma), expected_2d, rtol=1e-12, atol=1e-13)


def test_blur_path_points_and_derivatives_match_scipy(cat_image: np.ndarray) -> None:
    sigmas = np.array([0.0, 0.1, 1.3, 7.0, 31.5])
    grad_step = 0.01
    expected_points = np.stack([reference.blur_ig.gaussian_blur(cat_image, s) for s in sigmas])
    expected_derivatives = np.stack(
        [
            (
                reference.blur_ig.gaussian_blur(cat_image, s + grad_step)
                - reference.blur_ig.gaussian_blur(cat_image, s)
            )
            / grad_step
            for s in sigmas
        ]
    )
    for dtype, tolerance in ((np.float64, 1e-10), (np.float32, 1e-5)):
        points, derivatives = blur_path(cat_image.astype(dtype), sigmas, grad_step, dtype)
        assert points.dtype == derivatives.dtype == dtype
        np.testing.assert_allclose(
            points, expected_points, rtol=0, atol=tolerance * np.abs(expected_points).max()
        )
        for ours, theirs in zip(derivatives, expected_derivatives, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=tolerance * np.abs(theirs).max() + 1e-12)


def test_float32_images_match_reference_within_float32_tolerance(cat_image: np.ndarray) -> None:
    image = cat_image.astype(np.float32)
    model = TanhModel(image.shape)
    ours = BlurIG().GetMask(image, model, max_sigma=10, steps=20, batch_size=7)
    theirs = reference.BlurIG().GetMask(image, model, max_sigma=10, steps=20)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(max_sigma=5, steps=12),
        dict(max_sigma=5, steps=12, batch_size=5),
        dict(max_sigma=20, steps=9, grad_step=0.05, batch_size=9),
        dict(max_sigma=4, steps=10, sqrt=True),
    ],
)
def test_matches_reference(cat_image: np.ndarray, kwargs: dict) -> None:
    model = TanhModel(cat_image.shape)
    ours = BlurIG().GetMask(cat_image, model, **kwargs)
    theirs = reference.BlurIG().GetMask(cat_image, model, **kwargs)
    assert ours.shape == cat_image.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * np.abs(theirs).max())


def test_sqrt_with_batches_weights_each_point_by_its_own_step(cat_image: np.ndarray) -> None:
    """FIX: the reference uses the batch's last step size for the whole batch."""
    model = TanhModel(cat_image.shape)
    kwargs = dict(max_sigma=4, steps=10, sqrt=True)
    one_by_one = BlurIG().GetMask(cat_image, model, batch_size=1, **kwargs)
    batched = BlurIG().GetMask(cat_image, model, batch_size=4, **kwargs)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-10, atol=1e-14)
    reference_batched = reference.BlurIG().GetMask(cat_image, model, batch_size=4, **kwargs)
    assert not np.allclose(reference_batched, one_by_one, rtol=1e-3)


def test_completeness_along_the_blur_path(cat_image: np.ndarray) -> None:
    """sum(attribution) ~ f(x) - f(blur(x, max_sigma)), better with more steps."""
    model = TanhModel(cat_image.shape, seed=3)
    max_sigma = 6.0
    expected = model.value(cat_image[None])[0] - model.value(gaussian_blur(cat_image, max_sigma)[None])[0]
    errors = []
    for steps in (10, 100):
        attribution = BlurIG().GetMask(
            cat_image, model, max_sigma=max_sigma, steps=steps, grad_step=1e-3, batch_size=50
        )
        errors.append(abs(attribution.sum() - expected))
    assert errors[1] < 0.02 * abs(expected)
    assert errors[1] < errors[0] / 4


def test_batches_calls_and_order(cat_image: np.ndarray) -> None:
    model = TanhModel(cat_image.shape)
    BlurIG().GetMask(cat_image, model, max_sigma=3, steps=10, batch_size=4)
    assert model.batch_sizes == [4, 4, 2]


def test_two_dimensional_and_integer_images() -> None:
    gray = data.camera()[::8, ::8]  # uint8, 64 x 64
    model = TanhModel(gray.shape)
    from_uint8 = BlurIG().GetMask(gray, model, max_sigma=4, steps=8)
    from_float = BlurIG().GetMask(gray.astype(np.float64), model, max_sigma=4, steps=8)
    assert from_uint8.shape == gray.shape
    assert np.issubdtype(from_uint8.dtype, np.floating)
    np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-6 * np.abs(from_float).max())


@pytest.mark.parametrize(
    ("x_value", "kwargs", "error", "match"),
    [
        (np.zeros(10), {}, ValueError, "H x W"),
        (np.zeros((4, 4, 3, 2)), {}, ValueError, "H x W"),
        (np.zeros((0, 4, 3)), {}, ValueError, "empty"),
        (np.full((4, 4), np.nan), {}, ValueError, "NaN"),
        (np.zeros((4, 4)), {"max_sigma": 0}, ValueError, "max_sigma"),
        (np.zeros((4, 4)), {"steps": 0}, ValueError, "steps"),
        (np.zeros((4, 4)), {"steps": 2.5}, TypeError, "steps"),
        (np.zeros((4, 4)), {"grad_step": -0.1}, ValueError, "grad_step"),
        (np.zeros((4, 4)), {"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_input(x_value, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        BlurIG().GetMask(x_value, TanhModel(np.shape(x_value)), **kwargs)


def test_nan_gradients_are_an_error() -> None:
    def nan_model(x_batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: np.full(np.shape(x_batch), np.nan)}

    with pytest.raises(ValueError, match="non-finite.*INPUT_OUTPUT_GRADIENTS"):
        BlurIG().GetMask(np.ones((5, 5, 3)), nan_model, steps=3)


# --------------------------------------------------------------------------
# The FFT blur: exactly scipy's zero-padded, truncated Gaussian filter.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 6, 2), (4, 4, 3), (5, 7, 1), (33, 20, 2), (64, 64, 1)])
def test_fft_blur_equals_scipy_gaussian_filter(shape: tuple[int, int, int]) -> None:
    """Odd, even, tiny and non-square sizes; sigmas from none to kernels far wider than the image."""
    image = np.random.default_rng(7).normal(size=shape)
    scale = np.abs(image).max()
    for sigma in [0.0, 0.05, 0.1, 0.3, 0.7, 1.0, 2.5, 4.9, 7.0, 12.3, 17.0, 31.7, 50.0]:
        expected = ndimage.gaussian_filter(image, [sigma, sigma, 0], mode="constant")
        np.testing.assert_allclose(gaussian_blur(image, sigma), expected, rtol=0, atol=1e-13 * scale)
        expected_2d = ndimage.gaussian_filter(image[..., 0], sigma, mode="constant")
        np.testing.assert_allclose(
            gaussian_blur(image[..., 0], sigma), expected_2d, rtol=0, atol=1e-13 * scale
        )
        points, _ = blur_path(image.astype(np.float32), [sigma], 0.01, np.float32)
        np.testing.assert_allclose(points[0], expected, rtol=0, atol=1e-6 * scale)


def test_blur_path_in_any_order_matches_scipy() -> None:
    """Sigmas out of order (the padding only grows) and derivatives across radius changes."""
    image = np.random.default_rng(8).normal(size=(23, 30, 2))
    sigmas = [40.0, 0.0, 3.1, 0.12, 9.0, 0.1, 25.0]
    grad_step = 0.03  # 0.12 -> 0.15 and 0.1 -> 0.13 cross radius 0 -> 1
    points, derivatives = blur_path(image, sigmas, grad_step)
    for sigma, point, derivative in zip(sigmas, points, derivatives, strict=True):
        before = ndimage.gaussian_filter(image, [sigma, sigma, 0], mode="constant")
        after = ndimage.gaussian_filter(image, [sigma + grad_step] * 2 + [0], mode="constant")
        np.testing.assert_allclose(point, before, rtol=0, atol=1e-13 * np.abs(image).max())
        np.testing.assert_allclose(derivative, (after - before) / grad_step, rtol=0, atol=1e-11)


def test_sigma_zero_is_the_image_itself() -> None:
    image = np.random.default_rng(9).random((6, 5, 3)).astype(np.float32)
    points, derivatives = blur_path(image, [0.0, 0.05], 0.01, np.float32)
    np.testing.assert_array_equal(points[0], image)
    np.testing.assert_array_equal(points[1], image)  # radius 0: no blur at all, as in scipy
    np.testing.assert_array_equal(derivatives, 0)


@pytest.mark.parametrize("sigma", [50.3, 333.3, 4100.2, 20000.7])
def test_euler_maclaurin_normaliser_equals_the_direct_sum(sigma: float) -> None:
    radius = int(4 * sigma + 0.5)
    direct = np.exp(-0.5 / sigma**2 * np.arange(-radius, radius + 1) ** 2).sum()
    assert blur_ig._kernel_sum_euler_maclaurin(sigma, radius) == pytest.approx(direct, rel=1e-14)


def test_huge_sigma_within_the_limit_matches_scipy() -> None:
    """sigma = 15000 on a 16 x 9 image: the normaliser by Euler-Maclaurin, no 120000-tap kernel."""
    image = np.random.default_rng(10).random((16, 9, 2))
    expected = ndimage.gaussian_filter(image, [15000, 15000, 0], mode="constant")
    np.testing.assert_allclose(gaussian_blur(image, 15000), expected, rtol=1e-12)


# --------------------------------------------------------------------------
# Memory: linear in the image, bounded by batch_size; absurd arguments refused.
# --------------------------------------------------------------------------


def zero_gradients(x_batch, call_model_args=None, expected_keys=None):
    return {INPUT_OUTPUT_GRADIENTS: np.zeros_like(x_batch)}


def peak_memory(function) -> int:
    """Peak bytes allocated (NumPy's allocations included) while ``function()`` runs."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("batch_size", [1, 4])
def test_memory_is_linear_in_the_image_and_bounded_by_batch_size(batch_size: int) -> None:
    """512 x 512 x 3: the old dense blur matrices took 66 x the image (208 MB) whatever batch_size."""
    image = np.random.default_rng(11).random((512, 512, 3)).astype(np.float32)
    peak = peak_memory(lambda: BlurIG().GetMask(image, zero_gradients, steps=4, batch_size=batch_size))
    # The image's spectrum (~2x at this padding), the float64 total (2x), and per
    # path point of a call: the point, its derivative, the gradient and their product.
    assert peak <= (4 * batch_size + 12) * image.nbytes


def test_tall_thin_image_takes_little_memory() -> None:
    """4096 x 4: the old 4096 x 4096 blur matrices took gigabytes for a 64 kB image."""
    image = np.random.default_rng(12).random((4096, 4))
    peak = peak_memory(lambda: BlurIG().GetMask(image, zero_gradients, steps=2))
    assert peak <= 32 * image.nbytes + 2**20


def test_largest_accepted_blur_matches_reference(cat_image: np.ndarray) -> None:
    image = cat_image[:6, :5]
    limit = blur_ig.max_sigma_for(image.shape)
    assert limit == 6000 == blur_ig.MAX_SIGMA_PER_SIDE * 6
    model = TanhModel(image.shape)
    ours = BlurIG().GetMask(image, model, max_sigma=limit, steps=3)
    theirs = reference.BlurIG().GetMask(image, model, max_sigma=limit, steps=3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * np.abs(theirs).max())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(max_sigma=1e12), r"max_sigma must give blurs of sigma <= 224000 \(1000 x the image's longest"),
        (dict(max_sigma=224001), "max_sigma.*224000.*uniform and black"),
        (dict(max_sigma=1e12, sqrt=True), r"max_sigma.*largest sigma 1e\+06"),
        (dict(grad_step=1e9), "grad_step.*224000"),
        (dict(steps=10**10), "steps.*10000000"),
    ],
)
def test_absurd_blurs_and_steps_are_refused_clearly(kwargs: dict, match: str) -> None:
    """The old code tried to allocate terabytes (a 4e12-tap kernel, 10**10 sigmas)."""
    with pytest.raises(ValueError, match=match):
        BlurIG().GetMask(np.zeros((224, 100, 3), np.float32), zero_gradients, **kwargs)


def test_absurd_sigma_in_the_blur_functions_is_refused() -> None:
    with pytest.raises(ValueError, match="sigma must give blurs of sigma <= 4000"):
        gaussian_blur(np.zeros((4, 3)), 1e12)
    with pytest.raises(ValueError, match="sigmas must give blurs"):
        blur_path(np.zeros((4, 3, 1)), [1.0, 1e12], 0.01)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        gaussian_blur(np.zeros((4, 3)), -1.0)
