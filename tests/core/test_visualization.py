"""Tests of VisualizeImageGrayscale and VisualizeImageDiverging."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import saliency.core as reference

from saliencykit.core import VisualizeImageDiverging, VisualizeImageGrayscale

VISUALIZERS = [VisualizeImageGrayscale, VisualizeImageDiverging]


def _random_map(shape=(20, 30, 3), seed=0, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


@pytest.mark.parametrize("percentile", [99, 50, 100, 90.5, 0.5])
@pytest.mark.parametrize("shape", [(20, 30, 3), (7, 5, 1), (16, 16, 4)], ids=str)
def test_grayscale_parity_with_reference(shape, percentile) -> None:
    image = _random_map(shape, seed=len(shape) + int(percentile))
    expected = reference.VisualizeImageGrayscale(image, percentile=percentile)
    actual = VisualizeImageGrayscale(image, percentile=percentile)
    assert actual.shape == shape[:2]
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("percentile", [99, 50, 100, 90.5, 0.5])
@pytest.mark.parametrize("shape", [(20, 30, 3), (7, 5, 1), (16, 16, 4)], ids=str)
def test_diverging_parity_with_reference(shape, percentile) -> None:
    image = _random_map(shape, seed=len(shape) + int(percentile))
    expected = reference.VisualizeImageDiverging(image, percentile=percentile)
    actual = VisualizeImageDiverging(image, percentile=percentile)
    assert actual.shape == shape[:2]
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)


def test_default_percentile_is_99() -> None:
    image = _random_map()
    np.testing.assert_array_equal(
        VisualizeImageGrayscale(image), VisualizeImageGrayscale(image, percentile=99)
    )
    np.testing.assert_array_equal(
        VisualizeImageDiverging(image), VisualizeImageDiverging(image, percentile=99)
    )
    np.testing.assert_allclose(VisualizeImageGrayscale(image), reference.VisualizeImageGrayscale(image))


def test_grayscale_formula_by_hand() -> None:
    """|channels| summed; min -> 0, percentile -> 1, clipped above."""
    image = np.zeros((2, 3, 2))
    image[..., 0] = [[1.0, -2.0, 3.0], [0.5, 10.0, -4.0]]
    image[..., 1] = [[1.0, 1.0, 0.0], [-0.5, 0.0, 0.0]]
    summed = np.array([[2.0, 3.0, 3.0], [1.0, 10.0, 4.0]])  # min 1; 50th percentile 3
    expected = np.clip((summed - 1.0) / (3.0 - 1.0), 0, 1)
    np.testing.assert_allclose(VisualizeImageGrayscale(image, percentile=50), expected)
    np.testing.assert_allclose(VisualizeImageGrayscale(image, percentile=100), (summed - 1.0) / 9.0)


def test_diverging_formula_by_hand() -> None:
    """Zero maps to 0.5, span to 1, -span to 0, far negatives down to -1."""
    values = np.array([[0.0, 2.0, -2.0, 1.0, -6.0, -20.0, 4.0, 2.0]])
    image = values[..., None]
    span = abs(np.percentile(values, 50))  # 0.5
    result = VisualizeImageDiverging(image, percentile=50)
    np.testing.assert_allclose(result, np.clip((values + span) / (2 * span), -1, 1))
    assert result[0, 0] == 0.5
    assert result[0, 5] == -1.0  # clipped at -1, not 0
    assert result[0, 6] == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_ranges(seed: int) -> None:
    image = _random_map(seed=seed) * 10 ** (seed - 1)
    gray = VisualizeImageGrayscale(image)
    div = VisualizeImageDiverging(image)
    assert gray.min() == 0.0 and gray.max() == 1.0
    assert np.all((gray >= 0) & (gray <= 1))
    assert np.all((div >= -1) & (div <= 1))
    assert gray.dtype == div.dtype == np.float64


def test_channel_sum_sign() -> None:
    """Grayscale uses absolute values per channel; diverging the signed sum."""
    image = np.zeros((2, 2, 2))
    image[0, 0] = [1.0, -1.0]  # signed sum 0, absolute sum 2
    image[1, 1] = [2.0, 0.0]
    gray = VisualizeImageGrayscale(image, percentile=100)
    div = VisualizeImageDiverging(image, percentile=100)
    assert gray[0, 0] == 1.0
    assert div[0, 0] == 0.5
    assert div[1, 1] == 1.0


@pytest.mark.parametrize("value", [0.0, 3.5, -2.0])
@pytest.mark.parametrize("percentile", [99, 100, 0])
def test_constant_maps_give_no_nan(value: float, percentile: float) -> None:
    image = np.full((5, 6, 3), value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero warnings either
        gray = VisualizeImageGrayscale(image, percentile=percentile)
        div = VisualizeImageDiverging(image, percentile=percentile)
    assert not np.isnan(gray).any() and not np.isnan(div).any()
    np.testing.assert_array_equal(gray, np.zeros((5, 6)))
    expected_div = 0.5 if value == 0 else (1.0 if value > 0 else 0.0)
    np.testing.assert_array_equal(div, np.full((5, 6), expected_div))


def test_all_zero_map() -> None:
    image = np.zeros((4, 4, 3))
    np.testing.assert_array_equal(VisualizeImageGrayscale(image), np.zeros((4, 4)))
    np.testing.assert_array_equal(VisualizeImageDiverging(image), np.full((4, 4), 0.5))


def test_degenerate_percentile_maps_to_limits_not_nan() -> None:
    """Mostly zeros: the percentile is 0, so the reference divides by zero."""
    image = np.zeros((10, 10, 1))
    image[0, 0, 0] = 5.0
    image[0, 1, 0] = -3.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gray = VisualizeImageGrayscale(image, percentile=50)
        div = VisualizeImageDiverging(image, percentile=50)
    assert not np.isnan(gray).any() and not np.isnan(div).any()
    assert gray[0, 0] == 1.0 and gray[0, 1] == 1.0 and gray[5, 5] == 0.0
    assert div[0, 0] == 1.0 and div[0, 1] == -1.0 and div[5, 5] == 0.5


def test_integer_and_float32_maps() -> None:
    image = np.random.default_rng(3).integers(-128, 128, size=(8, 8, 3)).astype(np.int8)
    np.testing.assert_allclose(
        VisualizeImageGrayscale(image), reference.VisualizeImageGrayscale(image.astype(np.float64))
    )
    np.testing.assert_allclose(
        VisualizeImageDiverging(image), reference.VisualizeImageDiverging(image.astype(np.float64))
    )
    image32 = _random_map(dtype=np.float32)
    np.testing.assert_allclose(
        VisualizeImageGrayscale(image32),
        reference.VisualizeImageGrayscale(image32.astype(np.float64)),
        rtol=1e-6,
    )


@pytest.mark.parametrize("visualize", VISUALIZERS)
@pytest.mark.parametrize("shape", [(5, 5), (5,), (2, 5, 5, 3), ()], ids=str)
def test_bad_rank(visualize, shape) -> None:
    with pytest.raises(ValueError, match="image_3d"):
        visualize(np.ones(shape))


@pytest.mark.parametrize("visualize", VISUALIZERS)
@pytest.mark.parametrize("percentile", [-1, 100.5, np.nan, np.inf])
def test_bad_percentile_value(visualize, percentile) -> None:
    with pytest.raises(ValueError, match="percentile"):
        visualize(_random_map(), percentile=percentile)


@pytest.mark.parametrize("visualize", VISUALIZERS)
@pytest.mark.parametrize("percentile", ["99", None, True])
def test_bad_percentile_type(visualize, percentile) -> None:
    with pytest.raises(TypeError, match="percentile"):
        visualize(_random_map(), percentile=percentile)


@pytest.mark.parametrize("visualize", VISUALIZERS)
def test_bad_values(visualize) -> None:
    image = _random_map()
    image[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN|inf"):
        visualize(image)
    with pytest.raises(TypeError, match="image_3d"):
        visualize(np.full((2, 2, 1), "a"))
    with pytest.raises(ValueError, match="empty"):
        visualize(np.ones((0, 3, 3)))
