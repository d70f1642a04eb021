"""Tests of the TF1 base classes: x/y shape validation, SmoothGrad, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.tf1 as saliency  # noqa: E402

from .nets import build_conv_net, random_image, v1  # noqa: E402


@pytest.fixture
def fixed_batch_net():
    """The conv net with a static batch dimension of 5; y keeps an unknown batch dimension."""
    conv_net = build_conv_net(batch=5)
    with conv_net.graph.as_default():
        conv_net.y = v1.placeholder_with_default(conv_net.y, (None,))
    yield conv_net
    conv_net.close()


@pytest.fixture
def logits_net():
    """The conv net explaining the whole logits vector: y of shape [None, 5]."""
    conv_net = build_conv_net(y_rank=2)
    yield conv_net
    conv_net.close()


@pytest.mark.parametrize(("x_steps", "batch_size"), [(10, 5), (25, 1), (7, 3), (3, 5)])
def test_none_batch_dimensions_take_any_batches(net, x_steps, batch_size):
    method = saliency.IntegratedGradients(net.graph, net.session, net.y, net.x)
    method.validate_xy_tensor_shape(x_steps, batch_size)
    method.validate_xy_tensor_shape(None, batch_size)


def test_fixed_batch_dimension_takes_only_full_batches_of_that_size(fixed_batch_net):
    net = fixed_batch_net
    with net.graph.as_default():
        y_fixed_batch = tf.reshape(net.y, (5,))
    fixed_y = saliency.IntegratedGradients(net.graph, net.session, y_fixed_batch, net.x)
    unknown_y = saliency.IntegratedGradients(net.graph, net.session, net.y, net.x)
    fixed_y.validate_xy_tensor_shape(10, 5)
    unknown_y.validate_xy_tensor_shape(10, 5)
    with pytest.raises(
        ValueError, match=r"y must hold .* fixed shape of 2 element\(s\) .*got y of shape \[5\]"
    ):
        fixed_y.validate_xy_tensor_shape(10, 2)
    with pytest.raises(
        ValueError, match=r"x must have a first \(batch\) dimension of None or 2 .*got x of shape \[5"
    ):
        unknown_y.validate_xy_tensor_shape(10, 2)
    with pytest.raises(
        ValueError, match=r"x must have a first \(batch\) dimension of None for 7 model inputs"
    ):
        unknown_y.validate_xy_tensor_shape(7, 5)


def test_y_with_several_values_per_example_is_refused(logits_net):
    net = logits_net
    method = saliency.IntegratedGradients(net.graph, net.session, net.y, net.x)
    with pytest.raises(ValueError, match=r"y must hold one value per example.*got y of shape \[None, 5\]"):
        method.GetMask(random_image(), x_steps=4, batch_size=2)


def test_scalar_y_fits_batches_of_one_only(net):
    with net.graph.as_default():
        scalar_y = tf.reduce_sum(net.y)
    method = saliency.IntegratedGradients(net.graph, net.session, scalar_y, net.x)
    method.validate_xy_tensor_shape(25, 1)
    with pytest.raises(ValueError, match=r"y must hold .*fixed shape of 5 element\(s\).*got y of shape \[\]"):
        method.validate_xy_tensor_shape(25, 5)


def test_validation_arguments_are_checked(net):
    method = saliency.IntegratedGradients(net.graph, net.session, net.y, net.x)
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got 0"):
        method.GetMask(random_image(), batch_size=0)
    with pytest.raises(ValueError, match=r"x_steps must be an integer >= 1, got 0"):
        method.GetMask(random_image(), x_steps=0)


def test_reference_accepts_and_refuses_the_same_shapes(net, logits_net, fixed_batch_net):
    cases = [(net, 10, 5), (net, 7, 3), (logits_net, 4, 2), (logits_net, 4, 1), (fixed_batch_net, 10, 5)]
    for conv_net, x_steps, batch_size in cases:
        ours = saliency.IntegratedGradients(conv_net.graph, conv_net.session, conv_net.y, conv_net.x)
        theirs = reference.IntegratedGradients(conv_net.graph, conv_net.session, conv_net.y, conv_net.x)
        outcomes = []
        for method in (ours, theirs):
            try:
                method.validate_xy_tensor_shape(x_steps, batch_size)
                outcomes.append("ok")
            except ValueError as error:
                outcomes.append("x" if "x tensor" in str(error) or str(error).startswith("x ") else "y")
        assert outcomes[0] == outcomes[1], (conv_net.y.shape, conv_net.x.shape, x_steps, batch_size)


def test_smoothed_mask_matches_the_reference_with_the_same_global_seed(net):
    image = random_image()
    np.random.seed(7)
    ours = saliency.GradientSaliency(net.graph, net.session, net.y, net.x).GetSmoothedMask(
        image, {net.class_index: 1}, nsamples=4
    )
    np.random.seed(7)
    theirs = reference.GradientSaliency(net.graph, net.session, net.y, net.x).GetSmoothedMask(
        image, {net.class_index: 1}, nsamples=4
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def test_smoothed_mask_sends_batch_size_samples_at_once(net, fixed_batch_net):
    method = saliency.GradientSaliency(net.graph, net.session, net.y, net.x)
    one_by_one = method.GetSmoothedMask(random_image(), nsamples=6, magnitude=False, seed=3)
    batched = method.GetSmoothedMask(random_image(), nsamples=6, magnitude=False, seed=3, batch_size=3)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-7)
    fixed = saliency.GradientSaliency(
        fixed_batch_net.graph, fixed_batch_net.session, fixed_batch_net.y, fixed_batch_net.x
    )
    with pytest.raises(
        ValueError,
        match=r"x must have a first \(batch\) dimension of None or 3 for 6 model inputs \(nsamples\)",
    ):
        fixed.GetSmoothedMask(random_image(), nsamples=6, batch_size=3)


def test_smoothed_mask_refuses_unknown_arguments(net):
    method = saliency.IntegratedGradients(net.graph, net.session, net.y, net.x)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'x_stepz'"):
        method.GetSmoothedMask(random_image(), x_stepz=3)


def test_smoothed_mask_validates_shapes_like_get_mask(logits_net):
    net = logits_net
    method = saliency.BlurIG(net.graph, net.session, net.y, net.x)
    with pytest.raises(
        ValueError,
        match=r"y must hold one value per example: .* for 4 model inputs \(steps\) in batches of 1; "
        r"got y of shape \[None, 5\]",
    ):
        method.GetSmoothedMask(random_image(), nsamples=2, steps=4)


def test_subclass_with_only_get_mask_gets_smoothgrad(net):
    class DoubleInput(saliency.TF1Saliency):
        def GetMask(self, x_value, feed_dict=None, scale=2.0):  # noqa: N802
            return scale * x_value

    method = DoubleInput(net.graph, net.session, net.y, net.x)
    image = random_image()
    smoothed = method.GetSmoothedMask(image, nsamples=3, magnitude=False, seed=5, scale=3.0)
    # a seed draws float32 standard normals, scaled by the noise's standard deviation
    stdev = 0.15 * (image.max() - image.min())
    noise = np.random.default_rng(5).standard_normal((3, *image.shape), dtype=np.float32) * stdev
    np.testing.assert_allclose(smoothed, 3.0 * (image + noise).mean(axis=0), rtol=1e-5)


def test_base_class_computes_nothing(net):
    with pytest.raises(NotImplementedError):
        saliency.TF1Saliency(net.graph, net.session, net.y, net.x).GetMask(random_image())
