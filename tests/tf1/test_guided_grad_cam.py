"""Tests of :class:`saliencykit.tf1.GuidedGradCam` (new: the reference has no TF1 Guided Grad-CAM)."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import saliencykit.tf1 as saliency  # noqa: E402

from .nets import random_image  # noqa: E402


def test_mask_is_guided_backprop_times_the_resized_grad_cam_map(net):
    image, feed = random_image(), {net.class_index: 1}
    graph_op_count = len(net.graph.get_operations())
    method = saliency.GuidedGradCam(net.graph, net.session, net.y, net.x, net.conv)
    mask = method.GetMask(image, feed)
    guided = saliency.GuidedBackprop(net.graph, net.session, net.y, net.x)
    grad_cam = saliency.GradCam(net.graph, net.session, net.y, net.x, net.conv)
    expected = guided.GetMask(image, feed) * grad_cam.GetMask(
        image, feed, should_resize=True, three_dims=True
    )
    np.testing.assert_allclose(mask, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(mask).max() > 0
    # Only the plain gradient ops of y (shared with GradCam) were added to the graph.
    assert len(net.graph.get_operations()) > graph_op_count
    method.close()
    guided.close()
