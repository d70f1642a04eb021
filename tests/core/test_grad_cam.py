"""Tests of saliencykit.core.grad_cam, with PAIR's saliency 0.2.1 as an oracle."""

from __future__ import annotations

import numpy as np
import pytest
from saliency.core import grad_cam as reference_grad_cam
from skimage.transform import resize

from saliencykit.core.base import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    SHAPE_ERROR_MESSAGE,
)
from saliencykit.core.grad_cam import GradCam, resize_map

from .models import ConstantOutputModel


def fixed_layer_model(layer_values, layer_gradients):
    """A model answering fixed conv values and gradients (batched as given), recording its calls."""
    return ConstantOutputModel(
        {CONVOLUTION_LAYER_VALUES: layer_values, CONVOLUTION_OUTPUT_GRADIENTS: layer_gradients}
    )


def horizontal_line_detector():
    """The reference's test pattern: a 5x5 layer detecting the two edges of a 3x3 square."""
    gradients = np.zeros([5, 5])
    gradients[(0, -1), (0, -1)] = 2
    gradients[(1, -1), 1:-1] = 3
    values = np.zeros([5, 5])
    values[:] = [1, 2, 3, 2, 1]
    values[(0, -1), :] *= -1
    values[2, :] = 0
    return values.reshape(1, 5, 5, 1), gradients.reshape(1, 5, 5, 1)


def test_known_conv_pattern_matches_hand_computed_mask():
    values, gradients = horizontal_line_detector()
    image = np.zeros([5, 5, 1])
    image[1:-1, 1:-1] = 1
    mask = GradCam().GetMask(image, fixed_layer_model(values, gradients), three_dims=False)
    expected = np.array(
        [
            [0, 0, 0, 0, 0],
            [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3],
            [0, 0, 0, 0, 0],
            [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3],
            [0, 0, 0, 0, 0],
        ]
    )
    assert mask.dtype == np.float32
    np.testing.assert_allclose(mask, expected, atol=1e-6)


def test_weights_are_spatial_mean_of_gradients_and_relu_applies():
    pattern_a = np.array([[1.0, 2.0, 0.0], [0.0, 4.0, 1.0]])
    pattern_b = np.array([[2.0, 0.0, 0.0], [6.0, 2.0, 0.0]])
    values = np.stack([pattern_a, pattern_b], axis=-1)[None]
    # Channel 0 gradients average 1, channel 1 gradients average -0.5.
    gradients = np.stack([np.full((2, 3), 1.0), np.array([[-1.0, 0, 0], [-2.0, 0, 0]])], axis=-1)[None]
    mask = GradCam().GetMask(
        np.zeros((2, 3, 3)), fixed_layer_model(values, gradients), should_resize=False, three_dims=False
    )
    np.testing.assert_allclose(mask, np.maximum(pattern_a - 0.5 * pattern_b, 0.0))


def test_three_dims_tiles_and_should_resize_false_keeps_layer_resolution():
    rng = np.random.default_rng(1)
    values = rng.random((1, 3, 4, 5))
    gradients = rng.random((1, 3, 4, 5))
    model = fixed_layer_model(values, gradients)
    flat = GradCam().GetMask(np.zeros((12, 16, 3)), model, should_resize=False, three_dims=False)
    tiled = GradCam().GetMask(np.zeros((12, 16, 3)), model, should_resize=False, three_dims=True)
    assert flat.shape == (3, 4)
    assert tiled.shape == (3, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(tiled[..., channel], flat)
    resized = GradCam().GetMask(np.zeros((12, 16, 3)), model)
    assert resized.shape == (12, 16, 3)
    assert resized.max() <= 1.0 and resized.min() >= 0.0


def test_all_negative_map_gives_zeros_not_nan():
    values = np.ones((1, 4, 4, 2))
    gradients = -np.ones((1, 4, 4, 2))
    mask = GradCam().GetMask(np.zeros((8, 8, 3)), fixed_layer_model(values, gradients))
    assert mask.shape == (8, 8, 3)
    assert np.all(mask == 0)


def test_one_dimensional_layer():
    # A sequence [L=12, features=2], a 1-D conv layer [L'=4, C=2].
    channel_0 = np.array([0.0, 1.0, 3.0, 2.0])
    channel_1 = np.array([1.0, 1.0, 0.0, 4.0])
    values = np.stack([channel_0, channel_1], axis=-1)[None]
    gradients = np.stack([np.full(4, 2.0), np.array([-1.0, 0.0, 0.0, 0.0])], axis=-1)[None]
    expected = np.maximum(2.0 * channel_0 - 0.25 * channel_1, 0.0)
    model = fixed_layer_model(values, gradients)
    sequence = np.zeros((12, 2))

    raw = GradCam().GetMask(sequence, model, should_resize=False, three_dims=False)
    np.testing.assert_allclose(raw, expected, rtol=1e-6)

    resized = GradCam().GetMask(sequence, model, three_dims=False)
    assert resized.shape == (12,)
    np.testing.assert_allclose(resized, resize(expected / expected.max(), (12,)), rtol=1e-6)
    assert GradCam().GetMask(sequence, model).shape == (12, 3)


def test_three_dimensional_layer():
    # A volume [D=8, H=6, W=4, 1], a 3-D conv layer [4, 3, 2, C=3].
    rng = np.random.default_rng(2)
    values = rng.random((1, 4, 3, 2, 3))
    gradients = rng.normal(size=(1, 4, 3, 2, 3))
    weights = gradients[0].mean(axis=(0, 1, 2))
    expected = np.maximum(np.einsum("dhwc,c->dhw", values[0], weights), 0.0)
    model = fixed_layer_model(values, gradients)
    volume = np.zeros((8, 6, 4, 1))

    raw = GradCam().GetMask(volume, model, should_resize=False, three_dims=False)
    np.testing.assert_allclose(raw, expected, rtol=1e-6, atol=1e-7)

    resized = GradCam().GetMask(volume, model, three_dims=False)
    assert resized.shape == (8, 6, 4)
    np.testing.assert_allclose(resized, resize(expected / expected.max(), (8, 6, 4)), atol=1e-6)
    assert GradCam().GetMask(volume, model).shape == (8, 6, 4, 3)


@pytest.mark.parametrize(
    "layer_shape, input_shape, dtype",
    [
        ((7, 7, 16), (224, 224, 3), np.float32),  # upsampling, the usual case
        ((5, 6, 4), (23, 17, 3), np.float64),
        ((9, 9, 8), (4, 5, 3), np.float32),  # downsampling: anti-aliased
        ((5, 5, 3), (5, 5), np.float64),  # same size, 2-D input
    ],
)
@pytest.mark.parametrize("should_resize", [True, False])
@pytest.mark.parametrize("three_dims", [True, False])
def test_parity_with_reference_on_random_inputs(layer_shape, input_shape, dtype, should_resize, three_dims):
    rng = np.random.default_rng(sum(layer_shape) * 1000 + sum(input_shape))
    values = rng.normal(size=(1,) + layer_shape).astype(dtype)
    gradients = rng.normal(size=(1,) + layer_shape).astype(dtype)
    image = rng.random(input_shape).astype(dtype)
    model = fixed_layer_model(values, gradients)
    kwargs = {"should_resize": should_resize, "three_dims": three_dims}
    ours = GradCam().GetMask(image, model, **kwargs)
    theirs = reference_grad_cam.GradCam().GetMask(image, model, **kwargs)
    assert ours.shape == theirs.shape
    assert ours.dtype == theirs.dtype
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * scale)


def test_one_call_with_call_model_args_and_expected_keys():
    image = np.ones((5, 5, 1))
    model = fixed_layer_model(image[None], image[None])
    GradCam().GetMask(image, model, {"foo": "bar"})
    assert model.num_calls == 1
    assert model.batches[0].shape == (1, 5, 5, 1)
    assert model.call_model_args[0] == {"foo": "bar"}
    assert model.expected_keys[0] == [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS]


def test_smoothed_mask_runs():
    values, gradients = horizontal_line_detector()
    mask = GradCam().GetSmoothedMask(
        np.zeros((5, 5, 1)), fixed_layer_model(values, gradients), nsamples=3, seed=0
    )
    assert mask.shape == (5, 5, 3)


@pytest.mark.parametrize("key", [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS])
def test_missing_batch_dimension_is_the_reference_error(key):
    values = np.zeros((1, 5, 5, 1))
    answer = {CONVOLUTION_LAYER_VALUES: values, CONVOLUTION_OUTPUT_GRADIENTS: values}
    answer[key] = values[0]
    expected = SHAPE_ERROR_MESSAGE[key].format("1", "5")
    with pytest.raises(ValueError, match=expected):
        GradCam().GetMask(np.zeros((5, 5, 1)), ConstantOutputModel(answer))


def test_values_and_gradients_of_different_shapes():
    model = fixed_layer_model(np.ones((1, 4, 4, 3)), np.ones((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="CONVOLUTION_OUTPUT_GRADIENTS must have the shape"):
        GradCam().GetMask(np.zeros((8, 8, 3)), model)


def test_layer_without_spatial_axis():
    model = fixed_layer_model(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least one spatial axis"):
        GradCam().GetMask(np.zeros((8, 8, 3)), model)


def test_layer_with_more_spatial_axes_than_the_input():
    model = fixed_layer_model(np.ones((1, 2, 2, 2, 3)), np.ones((1, 2, 2, 2, 3)))
    with pytest.raises(ValueError, match="3 spatial axes"):
        GradCam().GetMask(np.zeros((8, 8)), model)


def test_nan_from_the_model():
    values = np.ones((1, 4, 4, 2))
    gradients = values.copy()
    gradients[0, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        GradCam().GetMask(np.zeros((8, 8, 3)), fixed_layer_model(values, gradients))


@pytest.mark.parametrize(
    "input_shape, output_shape",
    [
        ((7, 7), (224, 224)),
        ((9, 9), (4, 5)),  # shrinking: anti-aliased
        ((10, 3), (4, 30)),  # one axis shrinks, the other grows
        ((6, 6), (6, 20)),  # one axis unchanged
        ((8,), (33,)),
        ((4, 5, 3), (16, 20, 12)),
        ((1, 1), (5, 5)),
        ((1200,), (1000,)),  # too large for a dense operator: skimage directly
    ],
)
def test_resize_map_equals_skimage_resize(input_shape, output_shape):
    saliency_map = np.random.default_rng(7).random(input_shape)
    np.testing.assert_allclose(
        resize_map(saliency_map, output_shape), resize(saliency_map, output_shape), rtol=0, atol=1e-14
    )


def test_resize_map_of_unchanged_shape_is_a_copy():
    saliency_map = np.random.default_rng(8).random((4, 5))
    resized = resize_map(saliency_map, (4, 5))
    np.testing.assert_array_equal(resized, saliency_map)
    assert resized is not saliency_map
