"""What the TF1 wrappers check, and when: differentiability only when a gradient is asked for,
finalized graphs, and the reference library's public error-message constants.
"""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.tf1 as saliency  # noqa: E402
from saliencykit.core import (  # noqa: E402
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)

from .nets import build_conv_net, random_image, v1  # noqa: E402

#: The reference's public message constants, by the module that defines them.
REFERENCE_MESSAGES = {
    "base": ["X_SHAPE_ERROR_MESSAGE", "Y_SHAPE_ERROR_MESSAGE"],
    "utils": ["MISSING_Y_ERROR_MESSAGE", "MISSING_CONV_LAYER_ERROR_MESSAGE"],
}


@pytest.fixture
def not_differentiable(net):
    """``net`` with ``y`` replaced by ``sum(relu(stop_gradient(x)))``: computed from x, no gradient."""
    with net.graph.as_default():
        net.y = tf.reduce_sum(tf.nn.relu(tf.stop_gradient(net.x) - 0.5), axis=(1, 2, 3), name="stopped")
    return net


def test_the_reference_message_constants_exist_with_the_same_text():
    for module_name, names in REFERENCE_MESSAGES.items():
        ours, theirs = getattr(saliency, module_name), getattr(reference, module_name)
        for name in names:
            assert getattr(ours, name) == getattr(theirs, name), name
            # ``import saliency.tf1 as s; s.NAME`` works in the reference: here too.
            assert getattr(saliency, name) == getattr(reference, name), name


def test_occlusion_accepts_a_y_without_gradient_like_the_reference(not_differentiable):
    net = not_differentiable
    ops = len(net.graph.get_operations())
    ours = saliency.Occlusion(net.graph, net.session, net.y, net.x)
    assert len(net.graph.get_operations()) == ops  # forward only: no gradient op added
    theirs = reference.Occlusion(net.graph, net.session, net.y, net.x)
    image = random_image()
    np.testing.assert_allclose(ours.GetMask(image, size=4), theirs.GetMask(image, size=4), rtol=1e-5)


@pytest.mark.parametrize("method", ["GradientSaliency", "IntegratedGradients", "GuidedBackprop"])
def test_gradient_methods_refuse_a_y_without_gradient_at_the_first_gradient(not_differentiable, method):
    net = not_differentiable
    instance = getattr(saliency, method)(net.graph, net.session, net.y, net.x)  # constructs, as the reference
    with pytest.raises(
        saliency.NotDifferentiableError, match=r"does not depend differentiably on x"
    ) as raised:
        instance.GetMask(random_image())
    assert isinstance(raised.value, ValueError)
    # The reference failed there too, with session.run(None)'s TypeError: except clauses keep working.
    assert isinstance(raised.value, TypeError)


def test_the_call_model_function_raises_for_gradients_only(not_differentiable):
    net = not_differentiable
    call = saliency.create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    ops = len(net.graph.get_operations())
    values = call(random_image()[None], expected_keys=[OUTPUT_LAYER_VALUES])
    assert values[OUTPUT_LAYER_VALUES].shape == (1,)
    for _ in range(2):
        with pytest.raises(saliency.NotDifferentiableError):
            call(random_image()[None], expected_keys=[INPUT_OUTPUT_GRADIENTS])
    assert len(net.graph.get_operations()) == ops  # the failed gradient is remembered, not rebuilt


def test_finalized_graph_raises_runtime_error_only_when_a_gradient_is_needed(net):
    net.graph.finalize()
    call = saliency.create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    assert call(random_image()[None], expected_keys=[OUTPUT_LAYER_VALUES])[OUTPUT_LAYER_VALUES].shape == (1,)
    with pytest.raises(saliency.GraphFinalizedError, match=r"before calling graph.finalize") as raised:
        call(random_image()[None], expected_keys=[INPUT_OUTPUT_GRADIENTS])
    # A RuntimeError, as TensorFlow (and so the reference) raised, and a ValueError.
    assert isinstance(raised.value, RuntimeError) and isinstance(raised.value, ValueError)
    assert saliency.Occlusion(net.graph, net.session, net.y, net.x).GetMask(random_image(), size=4).shape


def test_missing_tensor_errors_start_with_the_reference_messages(net):
    call = saliency.create_tf1_call_model_function(net.graph, net.session, net.y, net.x)
    for keys, first_missing in (
        ([CONVOLUTION_LAYER_VALUES], CONVOLUTION_LAYER_VALUES),
        ([OUTPUT_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS], CONVOLUTION_OUTPUT_GRADIENTS),
    ):
        with pytest.raises(RuntimeError) as raised:
            call(random_image()[None], expected_keys=keys)
        assert str(raised.value).startswith(reference.MISSING_CONV_LAYER_ERROR_MESSAGE.format(first_missing))
        assert isinstance(raised.value, ValueError)

    # Without y, only the conv layer's values can be returned.
    without_y = saliency.create_tf1_call_model_function(net.graph, net.session, None, net.x, net.conv)
    values = without_y(random_image()[None], expected_keys=[CONVOLUTION_LAYER_VALUES])
    assert values[CONVOLUTION_LAYER_VALUES].shape == (1, 8, 8, 4)
    for key in (OUTPUT_LAYER_VALUES, INPUT_OUTPUT_GRADIENTS, CONVOLUTION_OUTPUT_GRADIENTS):
        with pytest.raises(RuntimeError) as raised:
            without_y(random_image()[None], expected_keys=[key])
        assert str(raised.value).startswith(reference.MISSING_Y_ERROR_MESSAGE.format(key))


def _message(method, x_steps, batch_size):
    with pytest.raises(ValueError) as raised:
        method.validate_xy_tensor_shape(x_steps, batch_size)
    return str(raised.value)


@pytest.mark.parametrize(
    ("batch", "y_rank", "x_steps", "batch_size"),
    [
        (None, 2, 10, 5),  # y [None, 5]: several values per example
        (None, 2, 7, 3),
        (5, 1, 10, 2),  # x's batch dimension 5, batches of 2
        (5, 1, 7, 3),
    ],
)
def test_shape_errors_start_with_the_reference_message(batch, y_rank, x_steps, batch_size):
    net = build_conv_net(batch=batch, y_rank=y_rank)
    try:
        ours = saliency.IntegratedGradients(net.graph, net.session, net.y, net.x)
        theirs = reference.IntegratedGradients(net.graph, net.session, net.y, net.x)
        expected = _message(theirs, x_steps, batch_size)
        assert expected.startswith(("Unexpected shape for y", "Unexpected outermost dimension for x"))
        assert _message(ours, x_steps, batch_size).startswith(expected)
    finally:
        net.close()


def test_y_shape_error_of_a_mask_call_starts_with_the_reference_message():
    net = build_conv_net(y_rank=2)
    try:
        with pytest.raises(ValueError) as raised:
            saliency.IntegratedGradients(net.graph, net.session, net.y, net.x).GetMask(
                random_image(), x_steps=4
            )
        assert str(raised.value).startswith(
            reference.Y_SHAPE_ERROR_MESSAGE.format("[None] or tensor with size 1", [None, 5])
        )
    finally:
        net.close()


def test_stop_gradient_gives_no_gradient(net):
    # Guards the fixture: tf.gradients through stop_gradient is None, as the tests above assume.
    with net.graph.as_default():
        (gradient,) = v1.gradients(tf.reduce_sum(tf.stop_gradient(net.x)), net.x)
    assert gradient is None
