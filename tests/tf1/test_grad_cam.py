"""Tests of :class:`saliencykit.tf1.GradCam`."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliency.tf1 as reference  # noqa: E402

import saliencykit.tf1 as saliency  # noqa: E402

from .nets import random_image  # noqa: E402


@pytest.mark.parametrize(("should_resize", "three_dims"), [(True, True), (False, False)])
def test_mask_equals_the_reference(net, should_resize, three_dims):
    image, feed = random_image(), {net.class_index: 4}
    arguments = {"should_resize": should_resize, "three_dims": three_dims}
    ours = saliency.GradCam(net.graph, net.session, net.y, net.x, net.conv).GetMask(image, feed, **arguments)
    theirs = reference.GradCam(net.graph, net.session, net.y, net.x, net.conv).GetMask(
        image, dict(feed), **arguments
    )
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_conv_layer_is_required(net):
    with pytest.raises(TypeError, match="conv_layer"):
        saliency.GradCam(net.graph, net.session, net.y, net.x)
