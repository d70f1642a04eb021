"""Tests of Guided Grad-CAM (saliencykit.core.guided_grad_cam) with a NumPy model function."""

from __future__ import annotations

import numpy as np
import pytest

from saliencykit.core import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    GUIDED_INPUT_OUTPUT_GRADIENTS,
)
from saliencykit.core.grad_cam import GradCam
from saliencykit.core.guided_grad_cam import GuidedGradCam


def fixed_answer(layer_values: np.ndarray, layer_gradients: np.ndarray, guided: np.ndarray):
    calls = []

    def call(x_batch, call_model_args=None, expected_keys=None):
        calls.append(list(expected_keys))
        answer = {
            CONVOLUTION_LAYER_VALUES: layer_values[None],
            CONVOLUTION_OUTPUT_GRADIENTS: layer_gradients[None],
            GUIDED_INPUT_OUTPUT_GRADIENTS: guided[None],
        }
        return {key: answer[key] for key in expected_keys}

    return call, calls


def test_is_guided_gradients_times_the_grad_cam_map() -> None:
    rng = np.random.default_rng(0)
    layer_values = rng.random((4, 4, 5))
    layer_gradients = rng.normal(size=(4, 4, 5))
    guided = rng.normal(size=(16, 16, 3))
    call, calls = fixed_answer(layer_values, layer_gradients, guided)
    mask = GuidedGradCam().GetMask(np.zeros((16, 16, 3)), call)
    cam = GradCam().GetMask(np.zeros((16, 16, 3)), call, three_dims=False)
    np.testing.assert_allclose(mask, guided * cam[..., None], rtol=1e-6, atol=1e-7)
    assert calls[0] == GuidedGradCam.expected_keys  # one call for all three keys


def test_hand_computed_map() -> None:
    layer_values = np.zeros((2, 2, 2))
    layer_values[0, 0] = [1.0, 0.0]
    layer_values[1, 1] = [0.0, 1.0]
    layer_gradients = np.zeros((2, 2, 2))
    layer_gradients[..., 0] = 1.0  # channel 0 weight 1, channel 1 weight 0
    guided = np.ones((2, 2, 1))
    call, _ = fixed_answer(layer_values, layer_gradients, guided)
    mask = GuidedGradCam().GetMask(np.zeros((2, 2, 1)), call)
    np.testing.assert_allclose(mask[..., 0], [[1.0, 0.0], [0.0, 0.0]])


def test_layer_with_more_spatial_axes_than_input() -> None:
    call, _ = fixed_answer(np.ones((2, 2, 2, 3)), np.ones((2, 2, 2, 3)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="spatial axes"):
        GuidedGradCam().GetMask(np.zeros((4, 4)), call)


def test_missing_guided_key_is_reported() -> None:
    def call(x_batch, call_model_args=None, expected_keys=None):
        return {
            CONVOLUTION_LAYER_VALUES: np.ones((1, 2, 2, 3)),
            CONVOLUTION_OUTPUT_GRADIENTS: np.ones((1, 2, 2, 3)),
        }

    with pytest.raises(ValueError, match="GUIDED_INPUT_OUTPUT_GRADIENTS"):
        GuidedGradCam().GetMask(np.zeros((4, 4, 3)), call)
