"""Where the original raised another exception type for the same bad input, ours is also that type.

Each case runs the original (``saliency==0.2.1``) too, so the test shows which
type it raises rather than assuming it.
"""

from __future__ import annotations

import numpy as np
import pytest
import saliency.core as reference
from saliency.metrics import pic as reference_pic

import saliencykit.core as saliency
from saliencykit import metrics


def _no_keys(x_value_batch, call_model_args=None, expected_keys=None):
    return {}


def _linear(x_value_batch, call_model_args=None, expected_keys=None):
    return {saliency.INPUT_OUTPUT_GRADIENTS: np.ones_like(x_value_batch)}


def test_a_missing_key_is_a_key_error_like_the_reference_and_a_value_error():
    x_value = np.ones((4, 4, 1), np.float32)
    with pytest.raises(KeyError):
        reference.GradientSaliency().GetMask(x_value, _no_keys)
    with pytest.raises(KeyError) as caught:
        saliency.GradientSaliency().GetMask(x_value, _no_keys)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, saliency.MissingKeyError)
    message = str(caught.value)
    assert message.startswith("call_model_function did not return the expected key 'INPUT_OUTPUT_GRADIENTS'")


@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs"),
    [
        (saliency.IntegratedGradients, reference.IntegratedGradients, {"x_steps": 2}),
        (saliency.GuidedIG, reference.GuidedIG, {"x_steps": 2}),
    ],
    ids=["ig", "guided-ig"],
)
def test_a_baseline_of_the_wrong_shape_is_an_assertion_error_like_the_reference(ours, theirs, kwargs):
    x_value = np.ones((4, 4, 1), np.float32)
    x_baseline = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(AssertionError):
        theirs().GetMask(x_value, _linear, x_baseline=x_baseline, **kwargs)
    with pytest.raises(AssertionError) as caught:
        ours().GetMask(x_value, _linear, x_baseline=x_baseline, **kwargs)
    assert isinstance(caught.value, ValueError)
    assert "x_baseline must have the shape of x_value (4, 4, 1), got (4, 4, 3)" in str(caught.value)


def test_a_pic_image_that_is_not_uint8_is_a_value_error_like_the_reference():
    image = np.zeros((8, 8, 3), np.float32)
    saliency_map = np.zeros((8, 8))
    random_mask = np.zeros((8, 8), bool)

    def pred_func(images):
        return np.ones(len(images))

    arguments = (image, saliency_map, random_mask, pred_func, [0.5])
    with pytest.raises(ValueError):
        reference_pic.compute_pic_metric(*arguments)
    with pytest.raises(ValueError) as caught:
        metrics.compute_pic_metric(*arguments)
    assert isinstance(caught.value, TypeError)
    assert "img must be a uint8 image, got dtype float32" in str(caught.value)
